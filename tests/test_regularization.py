"""fnnet.regularization: weight decay and clipping against hand-computed gradients and jax.grad,
and optimizers.chain applying them before the update."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet import optimizers
from fnnet import regularization as R


def _net(dtype=jnp.float32, seed=0):
    """A small Batch-Norm-style parameter dict, its data and a data loss."""
    rng = np.random.default_rng(seed)
    shapes = {"W1": (4, 5), "b1": (5,), "gamma1": (5,), "beta1": (5,), "W2": (5, 3), "b2": (3,)}
    params = {k: jnp.asarray(rng.normal(size=s), dtype) for k, s in shapes.items()}
    x = jnp.asarray(rng.normal(size=(8, 4)), dtype)
    t = jnp.arange(8) % 3

    def data_loss(p):
        h = x @ p["W1"] + p["b1"]
        h = jnp.tanh(p["gamma1"] * h + p["beta1"])
        y = h @ p["W2"] + p["b2"]
        return -jnp.mean(jax.nn.log_softmax(y)[jnp.arange(8), t])

    return params, data_loss


def test_l2_penalty_by_hand():
    params, _ = _net()
    want = 0.5 * 0.3 * sum(float(np.sum(np.asarray(params[k], np.float64) ** 2)) for k in ("W1", "W2"))
    assert float(R.l2_penalty(params, 0.3)) == pytest.approx(want, rel=1e-6)
    assert float(jax.jit(R.l2_penalty)(params, 0.3)) == pytest.approx(want, rel=1e-6)
    assert float(R.l2_penalty(params, 0.0)) == 0.0
    assert float(R.l2_penalty({"b": jnp.ones(3)}, 0.5)) == 0.0


def test_weight_decay_by_hand_and_untouched_leaves():
    params, data_loss = _net()
    grads = jax.grad(data_loss)(params)
    lam = 0.1
    got = jax.jit(R.weight_decay(lam))(grads, params)
    for k in params:
        want = np.asarray(grads[k]) + (lam * np.asarray(params[k]) if k.startswith("W") else 0.0)
        np.testing.assert_allclose(np.asarray(got[k]), want, rtol=1e-6, atol=1e-7, err_msg=k)
    for k in ("b1", "gamma1", "beta1", "b2"):
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(grads[k]))
    assert R.weight_decay(0.0)(grads, params) is grads


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.float64, 1e-13)])
def test_weight_decay_is_the_gradient_of_l2_penalty(dtype, tol):
    """weight_decay(lam) applied to grad(data loss) == jax.grad(data loss + l2_penalty(., lam))."""
    with jax.enable_x64(dtype == jnp.float64):
        params, data_loss = _net(dtype)
        lam = 0.05
        want = jax.grad(lambda p: data_loss(p) + R.l2_penalty(p, lam))(params)
        got = R.weight_decay(lam)(jax.grad(data_loss)(params), params)
        for k in params:
            assert got[k].dtype == dtype
            np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=tol, atol=tol, err_msg=k)


def test_weight_keys_in_nested_trees():
    params = {"conv": {"W": jnp.ones(2), "b": jnp.ones(2)}, "Ws": [jnp.ones(1), jnp.ones(1)],
              "x": jnp.ones(1)}
    grads = jax.tree_util.tree_map(jnp.zeros_like, params)
    got = R.weight_decay(2.0)(grads, params)
    assert got["conv"]["W"].tolist() == [2.0, 2.0] and got["conv"]["b"].tolist() == [0.0, 0.0]
    assert got["Ws"][0].tolist() == [2.0] and got["x"].tolist() == [0.0]
    assert float(R.l2_penalty(params, 1.0)) == pytest.approx(0.5 * 4)


def test_clip_by_global_norm_by_hand():
    grads = {"W": jnp.array([[3.0, 0.0], [0.0, 4.0]]), "b": jnp.array([12.0])}   # global norm 13
    got = jax.jit(R.clip_by_global_norm(6.5))(grads, grads)
    for k in grads:
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(grads[k]) * 0.5, rtol=1e-7)
    norm = np.sqrt(sum(float(jnp.sum(g**2)) for g in jax.tree_util.tree_leaves(got)))
    assert norm == pytest.approx(6.5, rel=1e-6)
    # at or under the norm, and all-zero gradients, come back bit for bit
    for max_norm in (13.0, 20.0):
        same = R.clip_by_global_norm(max_norm)(grads, grads)
        chex.assert_trees_all_equal(same, grads)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, grads)
    chex.assert_trees_all_equal(R.clip_by_global_norm(1.0)(zeros, zeros), zeros)


def test_clip_random_trees_against_numpy():
    rng = np.random.default_rng(3)
    grads = {"W1": rng.normal(size=(6, 4)), "b1": rng.normal(size=4), "W2": rng.normal(size=(4, 2))}
    norm = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
    g32 = jax.tree_util.tree_map(lambda g: jnp.asarray(g, jnp.float32), grads)
    for max_norm in (0.1 * norm, 0.9 * norm, 2.0 * norm):
        got = jax.jit(R.clip_by_global_norm(max_norm))(g32, g32)
        scale = min(1.0, max_norm / norm)
        for k in grads:
            assert got[k].dtype == jnp.float32
            np.testing.assert_allclose(np.asarray(got[k]), grads[k] * scale, rtol=1e-5, atol=1e-7)


def test_chain_applies_transforms_in_order_then_the_update():
    params, data_loss = _net()
    grads = jax.grad(data_loss)(params)
    lam, c, lr = 0.5, 0.2, 0.1
    wd, clip = R.weight_decay(lam), R.clip_by_global_norm(c)
    for transforms in ((wd,), (clip,), (wd, clip), (clip, wd)):
        opt = optimizers.chain(optimizers.sgd(lr), *transforms)
        state = opt.init(params)
        assert set(state) == {"step"}
        new, state = jax.jit(opt.update)(params, grads, state)
        g = grads
        for tr in transforms:
            g = tr(g, params)
        want, _ = optimizers.sgd(lr).update(params, g, optimizers.sgd(lr).init(params))
        chex.assert_trees_all_close(new, want, rtol=1e-6, atol=1e-7)
        assert int(state["step"]) == 1
    a = optimizers.chain(optimizers.sgd(lr), wd, clip).update(params, grads, {"step": jnp.int32(0)})[0]
    b = optimizers.chain(optimizers.sgd(lr), clip, wd).update(params, grads, {"step": jnp.int32(0)})[0]
    assert not np.allclose(np.asarray(a["W1"]), np.asarray(b["W1"]))


def test_chain_with_weight_decay_minimises_the_regularised_loss():
    """Adam on the data loss with weight decay chained == Adam on jax.grad(data + l2_penalty)."""
    params, data_loss = _net(seed=1)
    lam = 0.01
    chained = optimizers.chain(optimizers.adam(0.01), R.weight_decay(lam))
    plain = optimizers.adam(0.01)
    grad_data = jax.jit(jax.grad(data_loss))
    grad_reg = jax.jit(jax.grad(lambda p: data_loss(p) + R.l2_penalty(p, lam)))
    p1, s1, p2, s2 = params, chained.init(params), params, plain.init(params)
    p3, s3 = params, plain.init(params)
    for _ in range(50):
        p1, s1 = jax.jit(chained.update)(p1, grad_data(p1), s1)
        p2, s2 = jax.jit(plain.update)(p2, grad_reg(p2), s2)
        p3, s3 = jax.jit(plain.update)(p3, grad_data(p3), s3)
    chex.assert_trees_all_close(p1, p2, rtol=1e-4, atol=1e-5)
    # the decay holds the weights smaller than training on the data loss alone
    assert float(R.l2_penalty(p1, lam)) < float(R.l2_penalty(p3, lam))


@pytest.mark.parametrize("build,exc,match", [
    (lambda: R.weight_decay(-0.1), ValueError, "weight_decay: lam must be >= 0"),
    (lambda: R.weight_decay("0.1"), TypeError, "weight_decay: lam must be a number, got '0.1'"),
    (lambda: R.weight_decay(float("nan")), ValueError, "weight_decay: lam must be finite"),
    (lambda: R.l2_penalty({}, True), TypeError, "l2_penalty: lam must be a number, got True"),
    (lambda: R.clip_by_global_norm(0.0), ValueError, "clip_by_global_norm: max_norm must be > 0"),
    (lambda: R.clip_by_global_norm(float("inf")), ValueError, "clip_by_global_norm: max_norm must be finite"),
])
def test_bad_arguments(build, exc, match):
    with pytest.raises(exc, match=match):
        build()
