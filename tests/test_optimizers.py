"""fnnet.optimizers against an independent NumPy implementation of the book's update rules."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet import optimizers, schedules

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


STATE_KEYS = {
    "sgd": {"step"},
    "momentum": {"step", "v"},
    "nesterov": {"step", "v"},
    "adagrad": {"step", "h"},
    "rmsprop": {"step", "h"},
    "adam": {"t", "m", "v"},
}


def _previous(name, lr, mu=0.9, d=0.99, b1=0.9, b2=0.999):
    """The update rules as they were written before schedules (a number lr, no step count)."""
    tmap = jax.tree_util.tree_map

    def update(params, grads, state):
        if name == "sgd":
            return tmap(lambda p, g: p - lr * g, params, grads), state
        if name == "momentum":
            v = tmap(lambda v, g: mu * v - lr * g, state["v"], grads)
            return tmap(lambda p, v: p + v, params, v), {"v": v}
        if name == "nesterov":
            v = tmap(lambda v, g: mu * v - lr * g, state["v"], grads)
            return tmap(lambda p, v, g: p + mu * mu * v - (1 + mu) * lr * g, params, v, grads), {"v": v}
        if name in ("adagrad", "rmsprop"):
            rule = (lambda h, g: h + g * g) if name == "adagrad" else (lambda h, g: d * h + (1 - d) * g * g)
            h = tmap(rule, state["h"], grads)
            return tmap(lambda p, g, h: p - lr * g / (jnp.sqrt(h) + EPS), params, grads, h), {"h": h}
        t = state["t"] + 1

        def step(p, g, m, v):
            tf = t.astype(jnp.result_type(p))
            lr_t = lr * jnp.sqrt(1.0 - b2**tf) / (1.0 - b1**tf)
            m = m + (1 - b1) * (g - m)
            v = v + (1 - b2) * (g * g - v)
            return p - lr_t * m / (jnp.sqrt(v) + EPS), m, v

        out = {k: step(params[k], grads[k], state["m"][k], state["v"][k]) for k in params}
        return ({k: o[0] for k, o in out.items()},
                {"t": t, "m": {k: o[1] for k, o in out.items()}, "v": {k: o[2] for k, o in out.items()}})

    def init(params):
        zeros = tmap(jnp.zeros_like, params)
        return {"sgd": {}, "momentum": {"v": zeros}, "nesterov": {"v": zeros}, "adagrad": {"h": zeros},
                "rmsprop": {"h": zeros},
                "adam": {"t": jnp.zeros((), jnp.int32), "m": zeros, "v": tmap(jnp.zeros_like, params)}}[name]

    return init, update


def _f32(tree):
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), tree)


@pytest.mark.parametrize("name,kw", CASES)
@pytest.mark.parametrize("jit", [True, False])
def test_number_lr_is_bit_identical_to_previous_rules(name, kw, jit):
    params, grads_seq = _problem(seed=2, steps=8)
    params, grads_seq = _f32(params), [_f32(g) for g in grads_seq]
    lr = kw.get("lr", 0.001 if name == "adam" else 0.01)
    extra = {"momentum": "mu", "decay_rate": "d", "beta1": "b1", "beta2": "b2"}
    init, update = _previous(name, lr, **{extra[k]: v for k, v in kw.items() if k != "lr"})
    opt = optimizers.get(name, **kw)
    new_update, old_update = (jax.jit(opt.update), jax.jit(update)) if jit else (opt.update, update)
    p_new, s_new, p_old, s_old = params, opt.init(params), params, init(params)
    for g in grads_seq:
        p_new, s_new = new_update(p_new, g, s_new)
        p_old, s_old = old_update(p_old, g, s_old)
    chex.assert_trees_all_equal(p_new, p_old)
    chex.assert_trees_all_equal({k: v for k, v in s_new.items() if k != "step"}, s_old)
    assert int(optimizers.step_count(s_new)) == len(grads_seq)


def _least_squares(seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(64, 5)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(64, 2)), jnp.float32)
    params = {"W": jnp.asarray(rng.normal(size=(5, 2)), jnp.float32), "b": jnp.zeros(2, jnp.float32)}
    grad = jax.jit(jax.grad(lambda p: jnp.mean((x @ p["W"] + p["b"] - y) ** 2)))
    return params, grad


def _train(opt, params, grad, steps, state=None):
    update = jax.jit(opt.update)
    state = opt.init(params) if state is None else state
    for _ in range(steps):
        params, state = update(params, grad(params), state)
    return params, state


@pytest.mark.parametrize("name,lr", [("sgd", 0.05), ("momentum", 0.05), ("adagrad", 0.1), ("rmsprop", 0.01),
                                     ("adam", 1e-3)])
def test_step_decay_equals_switching_by_hand(name, lr):
    """300 updates on step_decay(lr, [100, 200]) == 100 at lr, 100 at lr*0.1, 100 at lr*0.01, each
    a new optimizer continuing the previous state: bit for bit."""
    params, grad = _least_squares()
    decayed = optimizers.get(name, lr=schedules.step_decay(lr, [100, 200]))
    p_sched, s_sched = _train(decayed, params, grad, 300)
    p_hand, s_hand = params, None
    for k in range(3):
        p_hand, s_hand = _train(optimizers.get(name, lr=lr * 0.1**k), p_hand, grad, 100, s_hand)
    chex.assert_trees_all_equal(p_sched, p_hand)
    chex.assert_trees_all_equal(s_sched, s_hand)
    assert int(optimizers.step_count(s_sched)) == 300
    assert not np.array_equal(np.asarray(p_sched["W"]), np.asarray(params["W"]))


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_resume_across_a_boundary_is_exact(name):
    """The step count travels in the state: a run stopped at 150, its state saved as NumPy leaves
    and restored into a newly built optimizer, continues exactly as the uninterrupted run."""
    params, grad = _least_squares(seed=1)
    sched = schedules.linear_warmup(schedules.step_decay(0.01, [100]), 20)
    p_full, s_full = _train(optimizers.get(name, lr=sched), params, grad, 300)
    p_half, s_half = _train(optimizers.get(name, lr=sched), params, grad, 150)
    leaves, treedef = jax.tree_util.tree_flatten(s_half)
    saved = jax.tree_util.tree_unflatten(treedef, [np.asarray(x) for x in leaves])
    p_rest, s_rest = _train(optimizers.get(name, lr=sched), p_half, grad, 150, saved)
    chex.assert_trees_all_equal(p_rest, p_full)
    chex.assert_trees_all_equal(s_rest, s_full)


@pytest.mark.parametrize("name", optimizers.NAMES)
def test_state_keys_and_schedule_sees_step_zero_first(name):
    params = {"w": jnp.zeros(3)}
    opt = optimizers.get(name, lr=schedules.step_decay(1.0, [1], 0.5))
    state = opt.init(params)
    assert set(state) == STATE_KEYS[name]
    counter = "t" if name == "adam" else "step"
    assert state[counter].dtype == jnp.int32 and state[counter].shape == ()
    grads = {"w": jnp.array([1.0, -2.0, 0.5])}
    p1, s1 = jax.jit(opt.update)(params, grads, state)
    p2, s2 = jax.jit(opt.update)(p1, grads, s1)
    assert int(optimizers.step_count(s1)) == 1 and int(optimizers.step_count(s2)) == 2
    # the first update runs at lr = schedule(0) = 1.0, exactly as a number lr of 1.0
    ref = optimizers.get(name, lr=1.0)
    q1, _ = ref.update(params, grads, ref.init(params))
    chex.assert_trees_all_close(p1, q1, rtol=1e-6)
    half = optimizers.get(name, lr=0.5)
    q2, _ = half.update(q1, grads, s1)
    chex.assert_trees_all_close(p2, q2, rtol=1e-6)


def test_schedule_with_float64_params():
    with jax.enable_x64(True):
        params = {"w": jnp.ones(2, jnp.float64)}
        opt = optimizers.sgd(lr=schedules.constant(0.5))
        new, state = jax.jit(opt.update)(params, {"w": jnp.ones(2, jnp.float64)}, opt.init(params))
        assert new["w"].dtype == jnp.float64
        np.testing.assert_array_equal(np.asarray(new["w"]), [0.5, 0.5])


@pytest.mark.parametrize("name", optimizers.NAMES)
def test_bad_learning_rates(name):
    for bad in ("0.1", True, b"1"):
        with pytest.raises(TypeError, match=rf"{name}: lr must be a number or a schedule .*got {bad!r}"):
            optimizers.get(name, lr=bad)
    with pytest.raises(ValueError, match=rf"{name}: lr must be finite, got inf"):
        optimizers.get(name, lr=float("inf"))
    with pytest.raises(ValueError, match=rf"{name}: lr must be > 0"):
        optimizers.get(name, lr=-0.1)
    with pytest.raises(TypeError, match=rf"{name}: lr schedule .* fails on an int32 scalar step"):
        optimizers.get(name, lr=lambda: 0.1)
    with pytest.raises(TypeError, match=rf"{name}: lr schedule must return a floating-point scalar"):
        optimizers.get(name, lr=lambda step: jnp.ones(2))


def test_chain_and_step_count_errors():
    with pytest.raises(TypeError, match="chain: optimizer must be an Optimizer"):
        optimizers.chain(optimizers.sgd, lambda g, p: g)
    with pytest.raises(TypeError, match="chain: transform 1 must be a function"):
        optimizers.chain(optimizers.sgd(), lambda g, p: g, 0.1)
    params = {"W": jnp.ones((2, 3))}
    opt = optimizers.chain(optimizers.sgd(), lambda g, p: g)
    with pytest.raises(ValueError, match="chain.update: grads must have the structure of params"):
        opt.update(params, {"V": jnp.ones((2, 3))}, opt.init(params))
    with pytest.raises(KeyError, match="sgd.update: state must be a dict with keys \\['step'\\]"):
        opt.update(params, params, {})
    with pytest.raises(KeyError, match="step_count: state must be an optimizer state"):
        optimizers.step_count({"v": 1})
