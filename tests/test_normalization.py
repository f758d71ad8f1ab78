"""batch_norm and dropout: three-way gradient checks, the book's forward rules, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import check_layer

from fnnet.layers import Layer, batch_norm, dropout
from fnnet.layers.normalization import BN_EPS, init_batch_norm


def _bn_setup(shape, seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    D = int(np.prod(shape[1:]))
    x = 2.0 * jax.random.normal(k[0], shape) + 0.5
    params = {"gamma": 1.0 + 0.3 * jax.random.normal(k[1], (D,)), "beta": 0.2 * jax.random.normal(k[2], (D,))}
    state = {"running_mean": 0.3 * jax.random.normal(k[3], (D,)),
             "running_var": 0.5 + jax.random.uniform(k[4], (D,))}
    return params, x, state


def np_batch_norm(gamma, beta, x, rm, rv, train, momentum=0.9):
    """The book's BatchNormalization.forward in NumPy (float64)."""
    shape = x.shape
    x = x.reshape(x.shape[0], -1)
    if train:
        mu = x.mean(axis=0)
        xc = x - mu
        var = np.mean(xc**2, axis=0)
        xn = xc / np.sqrt(var + 10e-7)
        rm = momentum * rm + (1 - momentum) * mu
        rv = momentum * rv + (1 - momentum) * var
    else:
        xn = (x - rm) / np.sqrt(rv + 10e-7)
    return (gamma * xn + beta).reshape(shape), rm, rv


# Batch 1 is degenerate for training-mode BN (x - mean == 0, y == beta); with batch 2, dx is of
# the order of eps (xn == +-1 exactly up to eps), so float32 vjp comparisons are all rounding noise.
@pytest.mark.parametrize(
    "shape,train",
    [((5, 4), True), ((3, 2, 2, 3), True), ((4, 3), False),
     pytest.param((3, 2), True, marks=pytest.mark.slow),
     pytest.param((2, 2, 2, 2), False, marks=pytest.mark.slow)],
)
def test_batch_norm_three_way(shape, train):
    params, x, state = _bn_setup(shape)
    err_vjp, err_num = check_layer(batch_norm, params, x, state=state, train=train)
    assert err_vjp < 1e-5 and err_num < 1e-7


@pytest.mark.parametrize("shape", [(6, 5), (4, 2, 2, 3)])
@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_matches_book_numpy(shape, train):
    params, x, state = _bn_setup(shape, seed=1)
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        s64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), state)
        y, _, new = jax.jit(batch_norm.forward, static_argnames="train")(p64, jnp.asarray(x, jnp.float64),
                                                                         s64, train=train)
        want_y, want_rm, want_rv = np_batch_norm(*(np.asarray(a, np.float64) for a in (
            params["gamma"], params["beta"], x, state["running_mean"], state["running_var"])), train)
        np.testing.assert_allclose(np.asarray(y), want_y, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.asarray(new["running_mean"]), want_rm, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(new["running_var"]), want_rv, rtol=1e-12, atol=1e-14)
    assert y.shape == x.shape


def test_batch_norm_train_normalises_and_updates_state():
    params, state = init_batch_norm(3)
    x = jnp.array([[1.0, 10.0, -2.0], [3.0, 14.0, -2.0], [5.0, 12.0, -2.0], [7.0, 8.0, -2.0]])
    y, _, new = batch_norm.forward(params, x, state, train=True)
    np.testing.assert_allclose(np.asarray(y.mean(0)), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(y.var(0))[:2], 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(y[:, 2]), 0.0, atol=1e-6)  # constant feature -> 0
    np.testing.assert_allclose(np.asarray(new["running_mean"]), 0.1 * np.array([4.0, 11.0, -2.0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(new["running_var"]), 0.1 * np.array([5.0, 5.0, 0.0]), rtol=1e-6)
    assert new["running_mean"].dtype == jnp.float32
    # inference: running stats are used and the state comes back unchanged
    y_inf, _, same = batch_norm.forward(params, x, new, train=False)
    chex.assert_trees_all_equal(same, new)
    rm, rv = np.asarray(new["running_mean"]), np.asarray(new["running_var"])
    want = (np.asarray(x) - rm) / np.sqrt(rv + BN_EPS)
    np.testing.assert_allclose(np.asarray(y_inf), want, rtol=1e-5)
    assert BN_EPS == 10e-7


def test_batch_norm_batch_of_one_is_degenerate_but_finite():
    params, x, state = _bn_setup((1, 4))
    y, cache, _ = batch_norm.forward(params, x, state, train=True)
    np.testing.assert_allclose(np.asarray(y[0]), np.asarray(params["beta"]), atol=1e-6)
    dx, grads = batch_norm.backward(cache, jnp.ones_like(y))
    np.testing.assert_allclose(np.asarray(dx), 0.0, atol=1e-6)
    assert bool(jnp.all(jnp.isfinite(grads["gamma"])))


def test_batch_norm_bad_input():
    params, state = init_batch_norm(4)
    x = jnp.ones((3, 4))
    with pytest.raises(ValueError, match="state is required"):
        batch_norm.forward(params, x, None)
    with pytest.raises(KeyError, match=r"batch_norm.forward: params is missing 'beta'"):
        batch_norm.forward({"gamma": params["gamma"]}, x, state)
    with pytest.raises(KeyError, match="state is missing 'running_var'"):
        batch_norm.forward(params, x, {"running_mean": state["running_mean"]})
    with pytest.raises(ValueError, match=r"params\['gamma'\] has shape \(4,\) but x \(shape \(3, 5\)\)"):
        batch_norm.forward(params, jnp.ones((3, 5)), state)
    with pytest.raises(ValueError, match="must be \\(N, D\\) or \\(N, C, H, W\\)"):
        batch_norm.forward(params, jnp.ones(4), state)
    with pytest.raises(ValueError, match="init_batch_norm: D must be a positive integer"):
        init_batch_norm(0)


def _dropout_with_key(key, ratio, train=True):
    """dropout with its key bound (check_layer's own `key` keyword is the seed of dy)."""
    return Layer(lambda p, x: dropout.forward(p, x, key=key, ratio=ratio, train=train), dropout.backward)


@pytest.mark.parametrize(
    "shape,train", [((2, 2, 3, 3), True), ((2, 3), False), pytest.param((4, 6), True, marks=pytest.mark.slow)]
)
def test_dropout_three_way(shape, train):
    x = jax.random.normal(jax.random.PRNGKey(3), shape)
    errs = check_layer(_dropout_with_key(jax.random.PRNGKey(7), 0.4, train), {}, x)
    assert max(errs) < 1e-7


def test_dropout_semantics():
    key = jax.random.PRNGKey(11)
    x = jax.random.normal(jax.random.PRNGKey(0), (200, 50)) + 3.0
    y, cache = dropout.forward({}, x, key=key, ratio=0.3, train=True)
    mask = jax.random.uniform(key, x.shape) > 0.3
    np.testing.assert_array_equal(np.asarray(y), np.where(np.asarray(mask), np.asarray(x), 0.0))
    kept = float(jnp.mean(mask))
    assert 0.66 < kept < 0.74
    # no rescaling in training: kept values are exactly the inputs
    np.testing.assert_array_equal(np.asarray(y)[np.asarray(mask)], np.asarray(x)[np.asarray(mask)])
    dx, grads = dropout.backward(cache, jnp.ones_like(x))
    np.testing.assert_array_equal(np.asarray(dx), np.asarray(mask, np.float32))
    assert grads == {}
    # same key, same mask (also under jit); another key, another mask
    y2, _ = jax.jit(lambda x, k: dropout.forward({}, x, key=k, ratio=0.3))(x, key)
    np.testing.assert_array_equal(np.asarray(y2), np.asarray(y))
    y3, _ = dropout.forward({}, x, key=jax.random.PRNGKey(12), ratio=0.3)
    assert not np.array_equal(np.asarray(y3), np.asarray(y))
    # inference: no key needed, x * (1 - ratio)
    yi, ci = dropout.forward({}, x, ratio=0.3, train=False)
    np.testing.assert_allclose(np.asarray(yi), 0.7 * np.asarray(x), rtol=1e-6)
    dxi, _ = dropout.backward(ci, jnp.ones_like(x))
    np.testing.assert_allclose(np.asarray(dxi), 0.7, rtol=1e-6)


def test_dropout_bad_input():
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="training mode needs a PRNG key"):
        dropout.forward({}, x, ratio=0.5, train=True)
    for bad in (1.0, -0.1, "0.5", True):
        with pytest.raises(ValueError, match="ratio must be a number in \\[0, 1\\)"):
            dropout.forward({}, x, key=jax.random.PRNGKey(0), ratio=bad)
