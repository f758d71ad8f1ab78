"""Optimizers of chapter 6 as pairs of pure functions (no optax).

    opt = adam(lr=0.001)
    state = opt.init(params)                          # a pytree of arrays
    params, state = opt.update(params, grads, state)  # new params and new state

`params` and `grads` are any pytree (usually the book's dict {'W1': ..., 'b1': ...}) with the
same structure and leaf shapes. Nothing is mutated; both functions are jit-compatible, and the
state is a dict of arrays (a pytree), so checkpoints can save it.

`lr` is a number or a schedule (`fnnet.schedules`, a function step -> lr). The state counts the
updates taken (an int32 scalar: 'step', or Adam's 't'), so a checkpoint carries the position in
the schedule; the update numbered `step` (0 first) uses lr = schedule(step). With a number the
arithmetic is the book's with that number. `chain(opt, *transforms)` applies gradient transforms
(`fnnet.regularization`: weight decay, clipping) before the update. State keys:

- sgd: {'step'};  momentum, nesterov: {'step', 'v'};  adagrad, rmsprop: {'step', 'h'};
  adam: {'t', 'm', 'v'} ('t' is its step count)

The update rules are the book's, with eps = 1e-7:

- SGD:      p -= lr*g
- Momentum: v = mu*v - lr*g;  p += v
- Nesterov: v = mu*v - lr*g;  p += mu*mu*v - (1+mu)*lr*g
- AdaGrad:  h += g*g;  p -= lr*g / (sqrt(h) + eps)
- RMSprop:  h = d*h + (1-d)*g*g;  p -= lr*g / (sqrt(h) + eps)
- Adam:     t += 1;  lr_t = lr*sqrt(1-b2^t) / (1-b1^t);  m += (1-b1)*(g-m);  v += (1-b2)*(g*g-v);
            p -= lr_t*m / (sqrt(v) + eps)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fnnet._checks import check_number
from fnnet._docs import document_fields
from fnnet.schedules import as_schedule

__all__ = ["Optimizer", "NAMES", "EPS", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "get",
           "chain", "step_count"]

EPS = 1e-7

NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")


class Optimizer(NamedTuple):
    """An optimizer as two pure functions, in place of the book's class whose `update(params, grads)`
    changes params and its own attributes: the state goes in and comes out.

        state = opt.init(params)
        params, state = opt.update(params, grads, state)

    `sgd`, `momentum`, `nesterov`, `adagrad`, `rmsprop`, `adam`, `get` and `chain` return one.
    """

    init: Callable
    update: Callable


document_fields(
    Optimizer,
    init="init(params) -> state: the state before the first update (zeros, step 0).",
    update="update(params, grads, state) -> (new params, new state); grads shaped like params.",
)


_tmap = jax.tree_util.tree_map


def _check_trees(fn, params, grads):
    """params and grads must share tree structure and leaf shapes (static, so also under jit)."""
    ps, gs = jax.tree_util.tree_structure(params), jax.tree_util.tree_structure(grads)
    if ps != gs:
        raise ValueError(f"{fn}: grads must have the structure of params; params is {ps}, grads is {gs}")
    for (path, p), g in zip(
        jax.tree_util.tree_leaves_with_path(params), jax.tree_util.tree_leaves(grads), strict=True
    ):
        if jnp.shape(p) != jnp.shape(g):
            where = jax.tree_util.keystr(path)
            raise ValueError(
                f"{fn}: grads{where} has shape {jnp.shape(g)} but params{where} has shape {jnp.shape(p)}"
            )


def _check_state(fn, state, keys):
    if not isinstance(state, dict) or any(k not in state for k in keys):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise KeyError(f"{fn}: state must be a dict with keys {list(keys)} from init(params), got {got}")


def _zeros(params):
    return _tmap(lambda p: jnp.zeros_like(p), params)


def _lr_at(fn, lr):
    """A function step -> learning rate: the schedule, or for a number that number itself (so a
    fixed rate costs nothing and computes what the book's formula computes)."""
    schedule = as_schedule(lr, fn, "lr")
    return schedule if callable(lr) else (lambda step: lr)


def _count():
    return jnp.zeros((), jnp.int32)


def sgd(lr=0.01) -> Optimizer:
    """Stochastic gradient descent: p -= lr*g. State {'step'}."""
    lr_at = _lr_at("sgd", lr)

    def init(params):
        return {"step": _count()}

    def update(params, grads, state):
        _check_trees("sgd.update", params, grads)
        _check_state("sgd.update", state, ("step",))
        lr = lr_at(state["step"])
        return _tmap(lambda p, g: p - lr * g, params, grads), {"step": state["step"] + 1}

    return Optimizer(init, update)


def momentum(lr=0.01, momentum: float = 0.9) -> Optimizer:
    """Momentum: v = mu*v - lr*g; p += v. State {'step', 'v'}: v the velocities, zeros at first."""
    lr_at = _lr_at("momentum", lr)
    check_number("momentum", "momentum", momentum, low=0.0, high=1.0, high_open=True)
    mu = momentum

    def init(params):
        return {"step": _count(), "v": _zeros(params)}

    def update(params, grads, state):
        _check_trees("momentum.update", params, grads)
        _check_state("momentum.update", state, ("step", "v"))
        lr = lr_at(state["step"])
        v = _tmap(lambda v, g: mu * v - lr * g, state["v"], grads)
        return _tmap(lambda p, v: p + v, params, v), {"step": state["step"] + 1, "v": v}

    return Optimizer(init, update)


def nesterov(lr=0.01, momentum: float = 0.9) -> Optimizer:
    """Nesterov's accelerated gradient, in the book's form:
    v = mu*v - lr*g; p += mu*mu*v - (1+mu)*lr*g. State {'step', 'v'}."""
    lr_at = _lr_at("nesterov", lr)
    check_number("nesterov", "momentum", momentum, low=0.0, high=1.0, high_open=True)
    mu = momentum

    def init(params):
        return {"step": _count(), "v": _zeros(params)}

    def update(params, grads, state):
        _check_trees("nesterov.update", params, grads)
        _check_state("nesterov.update", state, ("step", "v"))
        lr = lr_at(state["step"])
        v = _tmap(lambda v, g: mu * v - lr * g, state["v"], grads)
        new = _tmap(lambda p, v, g: p + mu * mu * v - (1 + mu) * lr * g, params, v, grads)
        return new, {"step": state["step"] + 1, "v": v}

    return Optimizer(init, update)


def adagrad(lr=0.01) -> Optimizer:
    """AdaGrad: h += g*g; p -= lr*g / (sqrt(h) + eps). State {'step', 'h'}: h the sums of squared
    gradients."""
    lr_at = _lr_at("adagrad", lr)

    def init(params):
        return {"step": _count(), "h": _zeros(params)}

    def update(params, grads, state):
        _check_trees("adagrad.update", params, grads)
        _check_state("adagrad.update", state, ("step", "h"))
        lr = lr_at(state["step"])
        h = _tmap(lambda h, g: h + g * g, state["h"], grads)
        new = _tmap(lambda p, g, h: p - lr * g / (jnp.sqrt(h) + EPS), params, grads, h)
        return new, {"step": state["step"] + 1, "h": h}

    return Optimizer(init, update)


def rmsprop(lr=0.01, decay_rate: float = 0.99) -> Optimizer:
    """RMSprop: h = d*h + (1-d)*g*g; p -= lr*g / (sqrt(h) + eps). State {'step', 'h'}."""
    lr_at = _lr_at("rmsprop", lr)
    check_number("rmsprop", "decay_rate", decay_rate, low=0.0, high=1.0)
    d = decay_rate

    def init(params):
        return {"step": _count(), "h": _zeros(params)}

    def update(params, grads, state):
        _check_trees("rmsprop.update", params, grads)
        _check_state("rmsprop.update", state, ("step", "h"))
        lr = lr_at(state["step"])
        h = _tmap(lambda h, g: d * h + (1 - d) * g * g, state["h"], grads)
        new = _tmap(lambda p, g, h: p - lr * g / (jnp.sqrt(h) + EPS), params, grads, h)
        return new, {"step": state["step"] + 1, "h": h}

    return Optimizer(init, update)


def adam(lr=0.001, beta1: float = 0.9, beta2: float = 0.999) -> Optimizer:
    """Adam as in the book (bias correction folded into lr_t).

    State {'t': int32 step count, 'm': first moments, 'v': second moments}; the update numbered
    t (0 first) uses lr = schedule(t) and the bias correction of t + 1.
    """
    lr_at = _lr_at("adam", lr)
    check_number("adam", "beta1", beta1, low=0.0, high=1.0, high_open=True)
    check_number("adam", "beta2", beta2, low=0.0, high=1.0, high_open=True)

    def init(params):
        return {"t": _count(), "m": _zeros(params), "v": _zeros(params)}

    def update(params, grads, state):
        _check_trees("adam.update", params, grads)
        _check_state("adam.update", state, ("t", "m", "v"))
        lr = lr_at(state["t"])
        t = state["t"] + 1

        def step(p, g, m, v):
            tf = t.astype(jnp.result_type(p))
            lr_t = lr * jnp.sqrt(1.0 - beta2**tf) / (1.0 - beta1**tf)
            m = m + (1 - beta1) * (g - m)
            v = v + (1 - beta2) * (g * g - v)
            return p - lr_t * m / (jnp.sqrt(v) + EPS), m, v

        out = _tmap(step, params, grads, state["m"], state["v"])
        treedef = jax.tree_util.tree_structure(params)
        triples = treedef.flatten_up_to(out)
        new_p, m, v = (treedef.unflatten([tr[i] for tr in triples]) for i in range(3))
        return new_p, {"t": t, "m": m, "v": v}

    return Optimizer(init, update)


def chain(optimizer: Optimizer, *transforms: Callable) -> Optimizer:
    """`optimizer` whose update first passes the gradients through each transform
    `(grads, params) -> grads`, in order (e.g. fnnet.regularization.weight_decay, then
    clip_by_global_norm). init and the state are the optimizer's own."""
    if not isinstance(optimizer, Optimizer):
        got = type(optimizer).__name__
        raise TypeError(f"chain: optimizer must be an Optimizer (init, update), got {got}")
    for i, tr in enumerate(transforms):
        if not callable(tr):
            raise TypeError(f"chain: transform {i} must be a function (grads, params) -> grads, got {tr!r}")

    def update(params, grads, state):
        _check_trees("chain.update", params, grads)
        for tr in transforms:
            grads = tr(grads, params)
        return optimizer.update(params, grads, state)

    return Optimizer(optimizer.init, update)


def step_count(state) -> jax.Array:
    """The number of updates an optimizer state has taken (its 'step', or Adam's 't')."""
    if isinstance(state, dict):
        for key in ("step", "t"):
            if key in state:
                return state[key]
    got = sorted(state) if isinstance(state, dict) else type(state).__name__
    raise KeyError(f"step_count: state must be an optimizer state with 'step' or 't', got {got}")


_FACTORIES = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adam": adam,
}


def get(name: str, **kw) -> Optimizer:
    """The optimizer called `name` (one of NAMES, case-insensitive) built with keyword arguments `kw`."""
    if not isinstance(name, str) or name.lower() not in _FACTORIES:
        raise ValueError(f"optimizers.get: unknown optimizer {name!r}; choose one of {', '.join(NAMES)}")
    factory = _FACTORIES[name.lower()]
    try:
        return factory(**kw)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            import inspect

            allowed = ", ".join(inspect.signature(factory).parameters)
            raise TypeError(f"optimizers.get: {name} takes {allowed}; got {sorted(kw)}") from None
        raise
