"""MultiLayerNet: backprop == jax.grad == numerical (float64) with Batch Norm, weight decay, dropout."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import record
from jax.flatten_util import ravel_pytree

from fnnet import optimizers, regularization
from fnnet.models import Model, get_model
from fnnet.models import multi_layer_net as M


def rel(a, b):
    """max |a - b| / max(|a| + |b|) over all parameters together (the biases feeding Batch Norm
    have an exactly-zero gradient, so a per-leaf ratio would compare rounding noise)."""
    a, b = ravel_pytree(a)[0], ravel_pytree(b)[0]
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a) + jnp.abs(b)))


def _problem(cfg, n=7, dtype=jnp.float64, seed=0):
    key = jax.random.PRNGKey(seed)
    init_cfg = {k: v for k, v in cfg.items() if k != "weight_init_std"}
    params, state = M.init(key, 6, [5, 4], 3, weight_init_std=cfg.get("weight_init_std", "relu"),
                           dtype=dtype, **init_cfg)
    # move gamma/beta/b off their initial values so that every path is exercised
    params = {k: v + 0.1 * jax.random.normal(jax.random.fold_in(key, i), v.shape, dtype)
              for i, (k, v) in enumerate(sorted(params.items()))}
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (n, 6), dtype)
    t = jnp.arange(n) % 3
    return params, state, x, t


CONFIGS = {
    "relu": ({}, 0.0),
    "sigmoid+decay": ({"activation": "sigmoid", "weight_init_std": "sigmoid"}, 0.1),
    "batchnorm": ({"use_batchnorm": True}, 0.0),
    "dropout": ({"use_dropout": True, "dropout_ratio": 0.3}, 0.0),
    "all": ({"use_batchnorm": True, "use_dropout": True, "dropout_ratio": 0.4, "activation": "sigmoid"},
            0.05),
}


def _fn_config(cfg):
    return {k: cfg[k] for k in ("activation", "use_dropout", "dropout_ratio") if k in cfg}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_three_gradients_agree_float64(name):
    cfg, lam = CONFIGS[name]
    conf = _fn_config(cfg)
    key = jax.random.PRNGKey(5)
    with jax.enable_x64(True):
        params, state, x, t = _problem(cfg)
        loss_bp, g_bp, new_state = jax.jit(
            lambda p: M.loss_and_gradient(p, state, x, t, lam, True, key, **conf))(params)
        loss_ad, g_ad = jax.jit(jax.value_and_grad(
            lambda p: M.loss(p, state, x, t, lam, True, key, **conf)[0]))(params)
        g_num = M.numerical_gradient(params, state, x, t, lam, key=key, **conf)
        assert g_bp["W1"].dtype == jnp.float64
        assert set(g_bp) == set(params)
        chex.assert_trees_all_equal_shapes(g_bp, params)
        assert float(jnp.abs(loss_bp - loss_ad)) < 1e-12
        e_ad, e_num = rel(g_bp, g_ad), rel(g_bp, g_num)
        assert e_ad < 1e-12, f"backprop vs jax.grad: {e_ad:.3g}"
        assert e_num < 1e-7, f"backprop vs numerical: {e_num:.3g}"
        record(e_ad, e_num)
        if cfg.get("use_batchnorm"):
            # a bias followed by Batch Norm cannot change the loss
            assert float(jnp.max(jnp.abs(g_bp["b1"]))) < 1e-12
            assert float(jnp.max(jnp.abs(g_bp["gamma1"]))) > 1e-4
            assert set(new_state) == {"running_mean1", "running_var1", "running_mean2", "running_var2"}
        else:
            assert new_state == {}


def test_weight_decay_terms():
    params, state, x, t = _problem({}, dtype=jnp.float32)
    lam = 0.3
    lg = jax.jit(lambda p, lam: M.loss_and_gradient(p, state, x, t, lam))
    l0, g0, _ = lg(params, 0.0)
    l1, g1, _ = lg(params, lam)
    want = 0.5 * lam * sum(float(jnp.sum(params[f"W{i}"] ** 2)) for i in (1, 2, 3))
    assert float(l1 - l0) == pytest.approx(want, rel=1e-5)
    for k in params:
        extra = lam * params[k] if k.startswith("W") else 0.0 * params[k]
        np.testing.assert_allclose(np.asarray(g1[k] - g0[k]), np.asarray(extra), atol=1e-6)
    assert float(jax.jit(M.loss)(params, state, x, t, lam)[0]) == pytest.approx(float(l1), rel=1e-6)
    assert g1["W1"].dtype == jnp.float32 and l1.dtype == jnp.float32
    # the book's decay is fnnet.regularization's: the same penalty and the same lam*W, bit for bit
    chex.assert_trees_all_equal(g1, jax.jit(regularization.weight_decay(lam))(g0, params))
    assert float(l1) == float(jax.jit(lambda p: l0 + regularization.l2_penalty(p, lam))(params))


def test_model_has_no_weight_decay_of_its_own():
    with pytest.raises(TypeError, match=r"multi_layer_net.model: weight_decay_lambda is not a model setting; "
                                        r"add weight decay to the optimizer with optimizers.chain\(opt, "
                                        r"fnnet.regularization.weight_decay\(lam\)\)"):
        get_model("multi_layer_net", (6,), 3, weight_decay_lambda=0.1)
    with pytest.raises(TypeError, match="multi_layer_net.model: unexpected keyword argument.* hidden_sizes"):
        M.model((6,), 3, hidden_sizes=(4,))
    # the model's loss is the data loss; chaining weight_decay gives the book's gradient
    m = M.model((6,), 3, hidden_size_list=(5, 4))
    params, state, x, t = _problem({}, dtype=jnp.float32)
    lam = 0.2
    _, g_model, _ = jax.jit(m.loss_and_grad)(params, state, x, t)
    v_book, g_book, _ = jax.jit(lambda p: M.loss_and_gradient(p, state, x, t, lam))(params)
    chex.assert_trees_all_equal(jax.jit(regularization.weight_decay(lam))(g_model, params), g_book)
    opt = optimizers.chain(optimizers.sgd(0.1), regularization.weight_decay(lam))
    got, _ = jax.jit(opt.update)(params, g_model, opt.init(params))
    want, _ = jax.jit(optimizers.sgd(0.1).update)(params, g_book, optimizers.sgd(0.1).init(params))
    chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-7)


def test_init_shapes_scales_and_state():
    key = jax.random.PRNGKey(0)
    params, state = M.init(key, 400, [100, 100], 10)
    assert set(params) == {"W1", "b1", "W2", "b2", "W3", "b3"} and state == {}
    assert params["W1"].shape == (400, 100) and params["W3"].shape == (100, 10)
    assert float(jnp.std(params["W1"])) == pytest.approx(math.sqrt(2 / 400), rel=0.03)
    assert float(jnp.std(params["W2"])) == pytest.approx(math.sqrt(2 / 100), rel=0.05)
    p_sig, _ = M.init(key, 400, [100, 100], 10, activation="sigmoid", weight_init_std="xavier")
    np.testing.assert_allclose(np.asarray(p_sig["W2"]) * math.sqrt(2.0), np.asarray(params["W2"]), rtol=1e-6)
    p_f, _ = M.init(key, 400, [100, 100], 10, weight_init_std=0.01)
    np.testing.assert_allclose(np.asarray(p_f["W1"]) * math.sqrt(2 / 400) / 0.01, np.asarray(params["W1"]),
                               rtol=1e-5)
    assert not bool(jnp.any(params["b1"]))
    p_bn, s_bn = M.init(key, 20, [8, 6], 4, use_batchnorm=True)
    assert set(p_bn) == {"W1", "b1", "W2", "b2", "W3", "b3", "gamma1", "beta1", "gamma2", "beta2"}
    assert set(s_bn) == {"running_mean1", "running_var1", "running_mean2", "running_var2"}
    assert s_bn["running_mean2"].shape == (6,) and p_bn["gamma1"].shape == (8,)
    # same key, same params; another key, other params
    chex.assert_trees_all_equal(M.init(key, 400, [100, 100], 10)[0], params)
    assert not np.array_equal(np.asarray(M.init(jax.random.PRNGKey(1), 400, [100, 100], 10)[0]["W1"]),
                              np.asarray(params["W1"]))


def test_batchnorm_state_train_vs_inference():
    params, state, x, t = _problem({"use_batchnorm": True}, dtype=jnp.float32)
    y_tr, s_tr = M.predict(params, state, x, train=True)
    y_inf, s_inf = M.predict(params, state, x)
    chex.assert_trees_all_equal(s_inf, state)
    assert not np.allclose(np.asarray(s_tr["running_mean1"]), np.asarray(state["running_mean1"]))
    h1 = np.asarray(x) @ np.asarray(params["W1"]) + np.asarray(params["b1"])
    np.testing.assert_allclose(np.asarray(s_tr["running_mean1"]), 0.1 * h1.mean(0), rtol=1e-4, atol=1e-6)
    assert not np.allclose(np.asarray(y_tr), np.asarray(y_inf))
    # gradient returns the same new state as a training-mode predict
    _, s_g = M.gradient(params, state, x, t)
    chex.assert_trees_all_close(s_g, s_tr, rtol=1e-6)


def test_dropout_key_semantics():
    cfg = {"use_dropout": True, "dropout_ratio": 0.5}
    params, state, x, t = _problem(cfg, n=20, dtype=jnp.float32)
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    a, _ = M.predict(params, state, x, train=True, key=k1, **_fn_config(cfg))
    b, _ = M.predict(params, state, x, train=True, key=k1, **_fn_config(cfg))
    c, _ = M.predict(params, state, x, train=True, key=k2, **_fn_config(cfg))
    chex.assert_trees_all_equal(a, b)
    assert not np.allclose(np.asarray(a), np.asarray(c))
    d, _ = M.predict(params, state, x, **_fn_config(cfg))   # inference: deterministic, no key
    e, _ = M.predict(params, state, x, key=k2, **_fn_config(cfg))
    chex.assert_trees_all_equal(d, e)
    with pytest.raises(ValueError, match="training with dropout needs a PRNG key"):
        M.gradient(params, state, x, t, **_fn_config(cfg))


def test_bad_input():
    params, state, x, t = _problem({"use_batchnorm": True}, dtype=jnp.float32)
    with pytest.raises(KeyError, match=r"multi_layer_net.predict: params is missing 'b2'"):
        M.predict({k: v for k, v in params.items() if k != "b2"}, state, x)
    with pytest.raises(KeyError, match=r"state is missing 'running_mean1'"):
        M.predict(params, {}, x)
    with pytest.raises(ValueError, match=r"x has 5 features per sample \(shape \(7, 5\)\).*6 rows"):
        M.loss(params, state, x[:, :5], t)
    with pytest.raises(ValueError, match=r"labels in \[0, 3\], outside \[0, 3\)"):
        M.gradient(params, state, x, t.at[0].set(3))
    with pytest.raises(ValueError, match=r"t must be labels of shape \(7,\)"):
        M.loss(params, state, x, t[:5])
    with pytest.raises(TypeError, match="labels must be integers"):
        M.accuracy(params, state, x, t.astype(jnp.float32))
    with pytest.raises(ValueError, match="x must be a batch"):
        M.predict(params, state, x[0])
    with pytest.raises(ValueError, match="activation must be one of relu, sigmoid"):
        M.predict(params, state, x, activation="tanh")
    with pytest.raises(ValueError, match="weight_decay_lambda must be a finite number >= 0"):
        M.loss(params, state, x, t, -1.0)
    with pytest.raises(ValueError, match="dropout_ratio must be a number in"):
        M.init(jax.random.PRNGKey(0), 4, [3], 2, dropout_ratio=1.0)
    with pytest.raises(ValueError, match="layer sizes must be positive integers"):
        M.init(jax.random.PRNGKey(0), 4, [0], 2)
    with pytest.raises(ValueError, match="unknown spec 'glorot'"):
        M.init(jax.random.PRNGKey(0), 4, [3], 2, weight_init_std="glorot")


def test_model_view_and_learning():
    """get_model builds the Model; a few hundred Adam steps fit a small separable problem."""
    m = get_model("multi_layer_net", (1, 4, 4), 3, hidden_size_list=(16, 16), use_batchnorm=True,
                  use_dropout=True, dropout_ratio=0.1)
    assert isinstance(m, Model) and m.input_shape == (16,)
    params, state = m.init(jax.random.PRNGKey(0))
    assert "gamma2" in params and "running_var2" in state
    kx, kc = jax.random.split(jax.random.PRNGKey(3))
    centers = 2.0 * jax.random.normal(kc, (3, 1, 4, 4))
    t = jnp.arange(240) % 3
    x = centers[t] + 0.5 * jax.random.normal(kx, (240, 1, 4, 4))
    # loss_and_grad is the hand-written backprop of loss in training mode
    key = jax.random.PRNGKey(9)
    got, ref = jax.jit(lambda p, s: (
        m.loss_and_grad(p, s, x, t, key),
        M.loss_and_gradient(p, s, x.reshape(240, -1), t, 0.0, True, key, use_dropout=True,
                            dropout_ratio=0.1),
    ))(params, state)
    chex.assert_trees_all_close(got, ref, rtol=1e-6, atol=1e-7)

    opt = optimizers.chain(optimizers.adam(lr=0.01), regularization.weight_decay(1e-4))

    @jax.jit
    def step(carry, k):
        params, state, opt_state = carry
        value, grads, state = m.loss_and_grad(params, state, x, t, k)
        params, opt_state = opt.update(params, grads, opt_state)
        return (params, state, opt_state), value

    carry = (params, state, opt.init(params))
    losses = []
    for k in jax.random.split(jax.random.PRNGKey(1), 60):
        carry, v = step(carry, k)
        losses.append(float(v))
    params, state, _ = carry
    assert losses[-1] < 0.3 * losses[0]
    scores, same = jax.jit(m.apply)(params, state, x)
    chex.assert_trees_all_equal(same, state)
    assert float(jnp.mean(jnp.argmax(scores, 1) == t)) > 0.95
