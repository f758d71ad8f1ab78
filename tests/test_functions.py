"""Activations, softmax and losses of chapters 3 and 4."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet import functions as F

Y_BOOK = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]
T_BOOK = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]


def test_step_function_values_and_dtype():
    y = F.step_function(jnp.array([-1.0, 0.0, 0.5, 2.0]))
    chex.assert_trees_all_equal(y, jnp.array([0, 0, 1, 1], jnp.int32))


def test_activations_match_definitions():
    x = jnp.linspace(-5.0, 5.0, 11)
    chex.assert_trees_all_close(F.sigmoid(x), 1 / (1 + jnp.exp(-x)), rtol=1e-6)
    chex.assert_trees_all_equal(F.relu(x), jnp.where(x > 0, x, 0.0))
    chex.assert_trees_all_close(F.tanh(x), jnp.tanh(x))
    chex.assert_trees_all_equal(F.identity_function(x), x)
    chex.assert_trees_all_close(F.sigmoid(jnp.array([1, 2])), F.sigmoid(jnp.array([1.0, 2.0])))
    chex.assert_type(F.sigmoid(jnp.array([1, 2])), jnp.float32)


def test_sigmoid_is_stable_for_large_inputs():
    y = F.sigmoid(jnp.array([-1000.0, 1000.0]))
    chex.assert_tree_all_finite(y)
    chex.assert_trees_all_close(y, jnp.array([0.0, 1.0]))


def test_softmax_large_inputs_finite_and_normalised_1d():
    y = F.softmax(jnp.array([1010.0, 1000.0, 990.0]))
    chex.assert_tree_all_finite(y)
    chex.assert_trees_all_close(jnp.sum(y), 1.0, rtol=1e-6)
    chex.assert_trees_all_close(y, jnp.array([9.999546e-01, 4.539787e-05, 2.061060e-09]), rtol=1e-5)


def test_softmax_large_inputs_finite_and_normalised_batched():
    x = jnp.array([[1010.0, 1000.0, 990.0], [0.3, 2.9, 4.0], [-1000.0, -1000.0, -1000.0]])
    y = F.softmax(x)
    chex.assert_shape(y, (3, 3))
    chex.assert_tree_all_finite(y)
    chex.assert_trees_all_close(jnp.sum(y, axis=1), jnp.ones(3), rtol=1e-6)
    chex.assert_trees_all_close(y[0], F.softmax(x[0]))
    chex.assert_trees_all_close(y[2], jnp.full(3, 1 / 3))
    chex.assert_trees_all_close(y[1], jnp.array([0.01821127, 0.24519181, 0.73659691]), rtol=1e-5)


def test_log_softmax_equals_log_of_softmax():
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 6)) * 5
    chex.assert_trees_all_close(F.log_softmax(x), jnp.log(F.softmax(x)), atol=1e-5)


def test_mean_squared_error_book_example():
    chex.assert_trees_all_close(F.mean_squared_error(jnp.array(Y_BOOK), jnp.array(T_BOOK)), 0.0975, rtol=1e-5)


def test_cross_entropy_error_book_example_labels_equal_one_hot():
    y = jnp.array(Y_BOOK)
    one_hot = F.cross_entropy_error(y, jnp.array(T_BOOK))
    label = F.cross_entropy_error(y, 2)
    chex.assert_trees_all_close(one_hot, -np.log(0.6 + 1e-7), rtol=1e-6)
    chex.assert_trees_all_equal(label, one_hot)
    chex.assert_trees_all_close(F.cross_entropy_error(y, 7), -np.log(0.1 + 1e-7), rtol=1e-6)


def test_cross_entropy_error_batched_labels_equal_one_hot_and_mean():
    key1, key2 = jax.random.split(jax.random.PRNGKey(1))
    y = F.softmax(jax.random.normal(key1, (5, 4)))
    t = jax.random.randint(key2, (5,), 0, 4)
    by_label = F.cross_entropy_error(y, t)
    chex.assert_trees_all_close(by_label, F.cross_entropy_error(y, jax.nn.one_hot(t, 4)), rtol=1e-6)
    per_sample = [F.cross_entropy_error(y[i], t[i]) for i in range(5)]
    chex.assert_trees_all_close(by_label, np.mean(per_sample), rtol=1e-6)


def test_softmax_cross_entropy_matches_cross_entropy_of_softmax():
    key1, key2 = jax.random.split(jax.random.PRNGKey(2))
    x = jax.random.normal(key1, (6, 5)) * 3
    t = jax.random.randint(key2, (6,), 0, 5)
    ref = F.cross_entropy_error(F.softmax(x), t)  # differs only by the 1e-7 delta
    chex.assert_trees_all_close(F.softmax_cross_entropy(x, t), ref, rtol=1e-4)
    chex.assert_trees_all_close(F.softmax_cross_entropy(x, jax.nn.one_hot(t, 5)), ref, rtol=1e-4)
    one = F.cross_entropy_error(F.softmax(x[0]), t[0])
    chex.assert_trees_all_close(F.softmax_cross_entropy(x[0], t[0]), one, rtol=1e-4)


def test_softmax_cross_entropy_is_finite_where_softmax_underflows():
    x = jnp.array([[1000.0, 0.0, -1000.0]])
    loss = F.softmax_cross_entropy(x, jnp.array([2]))
    chex.assert_tree_all_finite(loss)
    chex.assert_trees_all_close(loss, 2000.0, rtol=1e-6)


def test_to_one_hot():
    chex.assert_trees_all_equal(F.to_one_hot(jnp.array([2, 0]), 3), jnp.array([[0.0, 0, 1], [1, 0, 0]]))


@pytest.mark.parametrize("fn", [F.cross_entropy_error, F.softmax_cross_entropy])
def test_labels_out_of_range_raise(fn):
    name = fn.__name__
    msg = rf"{name}: t has labels in \[0, 3\], outside \[0, 3\).*shape \(2,\)"
    with pytest.raises(ValueError, match=msg):
        fn(jnp.ones((2, 3)) / 3, jnp.array([0, 3]))
    with pytest.raises(ValueError, match=rf"{name}: t has labels in \[-1, -1\].*shape \(1,\)"):
        fn(jnp.ones(3) / 3, -1)


@pytest.mark.parametrize("fn", [F.cross_entropy_error, F.softmax_cross_entropy])
def test_target_shape_mismatch_raises(fn):
    msg = rf"{fn.__name__}: t must be labels of shape \(2,\) .*got shape \(3,\)"
    with pytest.raises(ValueError, match=msg):
        fn(jnp.ones((2, 3)) / 3, jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match=rf"{fn.__name__}: y must be 1-D .*got shape \(2, 3, 4\)"):
        fn(jnp.ones((2, 3, 4)), jnp.array([0, 1]))


def test_mean_squared_error_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"mean_squared_error: y shape \(3,\) and t shape \(4,\)"):
        F.mean_squared_error(jnp.ones(3), jnp.ones(4))
