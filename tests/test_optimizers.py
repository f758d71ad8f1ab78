"""fnnet.optimizers against an independent NumPy implementation of the book's update rules."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet import optimizers

STEPS = 6
EPS = 1e-7


def np_reference(name, params, grads_seq, **kw):
    """The book's optimizer classes, written out in NumPy (float64), updating dicts in place."""
    p = {k: np.array(v, np.float64) for k, v in params.items()}
    lr = kw.get("lr", 0.001 if name == "adam" else 0.01)
    mu = kw.get("momentum", 0.9)
    d = kw.get("decay_rate", 0.99)
    b1, b2 = kw.get("beta1", 0.9), kw.get("beta2", 0.999)
    v = {k: np.zeros_like(x) for k, x in p.items()}
    h = {k: np.zeros_like(x) for k, x in p.items()}
    m = {k: np.zeros_like(x) for k, x in p.items()}
    it = 0
    history = []
    for grads in grads_seq:
        g = {k: np.array(x, np.float64) for k, x in grads.items()}
        it += 1
        for k in p:
            if name == "sgd":
                p[k] -= lr * g[k]
            elif name == "momentum":
                v[k] = mu * v[k] - lr * g[k]
                p[k] += v[k]
            elif name == "nesterov":
                v[k] *= mu
                v[k] -= lr * g[k]
                p[k] += mu * mu * v[k]
                p[k] -= (1 + mu) * lr * g[k]
            elif name == "adagrad":
                h[k] += g[k] * g[k]
                p[k] -= lr * g[k] / (np.sqrt(h[k]) + EPS)
            elif name == "rmsprop":
                h[k] *= d
                h[k] += (1 - d) * g[k] * g[k]
                p[k] -= lr * g[k] / (np.sqrt(h[k]) + EPS)
            elif name == "adam":
                lr_t = lr * np.sqrt(1.0 - b2**it) / (1.0 - b1**it)
                m[k] += (1 - b1) * (g[k] - m[k])
                v[k] += (1 - b2) * (g[k] ** 2 - v[k])
                p[k] -= lr_t * m[k] / (np.sqrt(v[k]) + EPS)
            else:
                raise AssertionError(name)
        history.append({k: x.copy() for k, x in p.items()})
    return history


def _problem(seed=0, steps=STEPS):
    rng = np.random.default_rng(seed)
    params = {"W1": rng.normal(size=(4, 3)), "b1": rng.normal(size=3), "W2": rng.normal(size=(3, 2))}
    grads_seq = [{k: rng.normal(size=x.shape) * (0.1 + i) for k, x in params.items()} for i in range(steps)]
    return params, grads_seq


CASES = [
    ("sgd", {}),
    ("sgd", {"lr": 0.3}),
    ("momentum", {}),
    ("momentum", {"lr": 0.05, "momentum": 0.5}),
    ("nesterov", {}),
    ("nesterov", {"lr": 0.05, "momentum": 0.7}),
    ("adagrad", {}),
    ("adagrad", {"lr": 1.5}),
    ("rmsprop", {}),
    ("rmsprop", {"lr": 0.1, "decay_rate": 0.9}),
    ("adam", {}),
    ("adam", {"lr": 0.1, "beta1": 0.8, "beta2": 0.99}),
]


def _run(opt, params, grads_seq, jit):
    update = jax.jit(opt.update) if jit else opt.update
    state = opt.init(params)
    out = []
    for g in grads_seq:
        params, state = update(params, g, state)
        out.append(params)
    return out, state


@pytest.mark.parametrize("name,kw", CASES)
def test_matches_numpy_float64(name, kw):
    params, grads_seq = _problem()
    ref = np_reference(name, params, grads_seq, **kw)
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(jnp.asarray, params)
        g64 = [jax.tree_util.tree_map(jnp.asarray, g) for g in grads_seq]
        out, _ = _run(optimizers.get(name, **kw), p64, g64, jit=True)
        for step, (got, want) in enumerate(zip(out, ref, strict=True)):
            for k in want:
                assert got[k].dtype == jnp.float64
                np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-12, atol=1e-13,
                                           err_msg=f"{name} step {step + 1} {k}")
    # the parameters really moved (the test can fail on a no-op optimizer)
    assert max(np.max(np.abs(ref[-1][k] - params[k])) for k in params) > 1e-3


@pytest.mark.parametrize("name,kw", CASES[::2])
def test_float32_jit_equals_eager_and_close_to_numpy(name, kw):
    params, grads_seq = _problem(seed=1)
    ref = np_reference(name, params, grads_seq, **kw)
    p32 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
    g32 = [jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), g) for g in grads_seq]
    opt = optimizers.get(name, **kw)
    eager, s_eager = _run(opt, p32, g32, jit=False)
    jitted, s_jit = _run(opt, p32, g32, jit=True)
    chex.assert_trees_all_close(jitted, eager, rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(s_jit, s_eager, rtol=1e-6, atol=1e-7)
    for k in params:
        assert eager[-1][k].dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(eager[-1][k]), ref[-1][k], rtol=1e-5, atol=1e-6)
    for leaf in jax.tree_util.tree_leaves(s_eager):
        assert isinstance(leaf, jax.Array)


@pytest.mark.parametrize("name", optimizers.NAMES)
def test_state_is_pytree_of_arrays_and_pure(name):
    params, grads_seq = _problem(steps=2)
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
    grads = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), grads_seq[0])
    opt = optimizers.get(name)
    state = opt.init(params)
    before_p = jax.tree_util.tree_map(np.array, params)
    before_s = jax.tree_util.tree_map(np.array, state)
    new_p, new_s = opt.update(params, grads, state)
    # inputs unchanged; state round-trips through flatten/unflatten (what checkpoints do)
    chex.assert_trees_all_equal(jax.tree_util.tree_map(np.array, params), before_p)
    chex.assert_trees_all_equal(jax.tree_util.tree_map(np.array, state), before_s)
    leaves, treedef = jax.tree_util.tree_flatten(new_s)
    assert all(isinstance(x, jax.Array) for x in leaves)
    rebuilt = jax.tree_util.tree_unflatten(treedef, [np.asarray(x) for x in leaves])
    p2a, s2a = jax.jit(opt.update)(new_p, grads, new_s)
    p2b, s2b = jax.jit(opt.update)(new_p, grads, rebuilt)
    chex.assert_trees_all_equal((p2a, s2a), (p2b, s2b))
    assert jax.tree_util.tree_structure(new_s) == jax.tree_util.tree_structure(state)


def test_any_pytree_nested():
    params = {"a": [jnp.ones(2), (jnp.zeros((2, 2)),)], "b": jnp.array(3.0)}
    grads = jax.tree_util.tree_map(lambda x: jnp.full_like(x, 0.5), params)
    for name in optimizers.NAMES:
        opt = optimizers.get(name)
        new, state = jax.jit(opt.update)(params, grads, opt.init(params))
        assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(params)
        chex.assert_trees_all_equal_shapes(new, params)
        assert float(new["b"]) < 3.0, name


def test_adam_step_counter():
    params = {"w": jnp.zeros(3)}
    opt = optimizers.adam()
    state = opt.init(params)
    assert int(state["t"]) == 0
    for _ in range(3):
        params, state = opt.update(params, {"w": jnp.ones(3)}, state)
    assert int(state["t"]) == 3
    # the first Adam step moves each coordinate by ~lr (bias-corrected, sign of g)
    p1, _ = opt.update({"w": jnp.zeros(3)}, {"w": jnp.array([1.0, -2.0, 5.0])}, opt.init({"w": jnp.zeros(3)}))
    np.testing.assert_allclose(np.asarray(p1["w"]), [-0.001, 0.001, -0.001], rtol=1e-4)


def test_mismatched_trees_raise():
    params = {"W": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    for name in optimizers.NAMES:
        opt = optimizers.get(name)
        state = opt.init(params)
        with pytest.raises(ValueError, match=rf"{name}.update: grads must have the structure"):
            opt.update(params, {"W": jnp.ones((2, 3))}, state)
        bad_shape = r"grads\['b'\] has shape \(4,\) but params\['b'\] has shape \(3,\)"
        with pytest.raises(ValueError, match=bad_shape):
            opt.update(params, {"W": jnp.ones((2, 3)), "b": jnp.ones(4)}, state)
    with pytest.raises(KeyError, match="adam.update: state must be a dict with keys"):
        optimizers.adam().update(params, params, {})


def test_get_and_bad_hyperparameters():
    assert optimizers.NAMES == ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
    assert isinstance(optimizers.get("Adam", lr=0.01), optimizers.Optimizer)
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        optimizers.get("adamw")
    with pytest.raises(TypeError, match="adam takes lr, beta1, beta2"):
        optimizers.get("adam", momentum=0.9)
    with pytest.raises(ValueError, match="sgd: lr must be > 0"):
        optimizers.sgd(lr=0.0)
    with pytest.raises(ValueError, match="momentum: momentum must be < 1"):
        optimizers.momentum(momentum=1.0)
    with pytest.raises(ValueError, match="must be finite"):
        optimizers.adam(lr=float("nan"))
    with pytest.raises(TypeError, match="rmsprop: decay_rate must be a number"):
        optimizers.rmsprop(decay_rate="x")
