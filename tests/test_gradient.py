"""Numerical differentiation and gradient descent of chapter 4."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from fnnet.gradient import gradient_descent, numerical_diff, numerical_gradient


def function_1(x):
    return 0.01 * x**2 + 0.1 * x


def function_2(x):
    return x[0] ** 2 + x[1] ** 2


def function_2_numpy(x):
    return np.sum(x**2)


def test_numerical_diff_book_values():
    assert abs(numerical_diff(function_1, 5.0) - 0.2) < 1e-10
    assert abs(numerical_diff(function_1, 10.0) - 0.3) < 1e-10


def test_numerical_gradient_book_values_float64():
    for x, g in [([3.0, 4.0], [6.0, 8.0]), ([0.0, 2.0], [0.0, 4.0]), ([3.0, 0.0], [6.0, 0.0])]:
        got = numerical_gradient(function_2, np.array(x))
        assert isinstance(got, np.ndarray) and got.dtype == np.float64
        chex.assert_trees_all_close(got, np.array(g), atol=1e-8)


def test_numerical_gradient_float32_and_x64_scope():
    got = numerical_gradient(function_2, jnp.array([3.0, 4.0]))
    chex.assert_type(got, jnp.float32)
    chex.assert_trees_all_close(got, jnp.array([6.0, 8.0]), atol=2e-2)
    with jax.enable_x64(True):
        got64 = numerical_gradient(function_2, jnp.array([3.0, 4.0], jnp.float64))
        chex.assert_type(got64, jnp.float64)
        chex.assert_trees_all_close(got64, jnp.array([6.0, 8.0]), atol=1e-8)


def test_numerical_gradient_never_mutates_input():
    for f in (function_2, function_2_numpy):
        x = np.array([3.0, 4.0])
        before = x.copy()
        numerical_gradient(f, x)
        np.testing.assert_array_equal(x, before)
    w = np.arange(12.0).reshape(3, 4)
    before = w.copy()
    g = numerical_gradient(lambda a: jnp.sum(a**3), w)
    np.testing.assert_array_equal(w, before)
    chex.assert_trees_all_close(g, 3 * before**2, rtol=1e-7, atol=1e-6)


def test_numerical_gradient_of_numpy_written_function():
    chex.assert_trees_all_close(numerical_gradient(function_2_numpy, np.array([3.0, 4.0])),
                                np.array([6.0, 8.0]), atol=1e-8)


def test_numerical_gradient_on_a_pytree():
    params = {"a": jnp.array([1.0, -2.0]), "b": jnp.array(3.0), "c": {"d": jnp.ones((2, 2))}}

    def f(p):
        return jnp.sum(p["a"] ** 2) * p["b"] + jnp.sum(p["c"]["d"] * jnp.array([[1.0, 2.0], [3.0, 4.0]]))

    got = numerical_gradient(f, params)
    chex.assert_trees_all_equal_shapes(got, params)
    chex.assert_trees_all_close(got, jax.grad(f)(params), rtol=5e-3, atol=5e-3)
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda v: v.astype(jnp.float64), params)
        chex.assert_trees_all_close(numerical_gradient(f, p64), jax.grad(f)(p64), atol=1e-8)


def test_gradient_descent_reaches_the_minimum():
    x = gradient_descent(function_2, np.array([-3.0, 4.0]), lr=0.1, step_num=100)
    chex.assert_trees_all_close(x, np.zeros(2), atol=1e-8)
    np.testing.assert_allclose(x, [-6.11110793e-10, 8.14814391e-10], rtol=1e-6)
    x32 = gradient_descent(function_2, jnp.array([-3.0, 4.0]), lr=0.1, step_num=100)
    chex.assert_trees_all_close(x32, jnp.zeros(2), atol=1e-6)


def test_gradient_descent_history_and_learning_rates():
    x, history = gradient_descent(function_2, np.array([-3.0, 4.0]), lr=0.1, step_num=20, return_history=True)
    chex.assert_shape(history, (20, 2))
    np.testing.assert_array_equal(history[0], [-3.0, 4.0])
    norms = np.linalg.norm(history, axis=1)
    assert np.all(np.diff(norms) < 0)
    np.testing.assert_allclose(x, np.array([-3.0, 4.0]) * 0.8**20, rtol=1e-6)
    too_large = gradient_descent(function_2, np.array([-3.0, 4.0]), lr=10.0, step_num=100)
    assert np.linalg.norm(too_large) > 1e6 or not np.all(np.isfinite(too_large))
    too_small = gradient_descent(function_2, np.array([-3.0, 4.0]), lr=1e-10, step_num=100)
    np.testing.assert_allclose(too_small, [-3.0, 4.0], rtol=1e-6)


def test_gradient_descent_with_numpy_written_function():
    x = gradient_descent(function_2_numpy, np.array([-3.0, 4.0]), lr=0.1, step_num=100)
    chex.assert_trees_all_close(x, np.zeros(2), atol=1e-8)
