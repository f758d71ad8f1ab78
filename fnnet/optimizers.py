"""Optimizers of chapter 6 as pairs of pure functions (no optax).

    opt = adam(lr=0.001)
    state = opt.init(params)                          # a pytree of arrays
    params, state = opt.update(params, grads, state)  # new params and new state

`params` and `grads` are any pytree (usually the book's dict {'W1': ..., 'b1': ...}) with the
same structure and leaf shapes. Nothing is mutated; both functions are jit-compatible, and the
state is a dict of arrays (a pytree), so checkpoints can save it. The update rules are the
book's, with eps = 1e-7:

- SGD:      p -= lr*g
- Momentum: v = mu*v - lr*g;  p += v
- Nesterov: v = mu*v - lr*g;  p += mu*mu*v - (1+mu)*lr*g
- AdaGrad:  h += g*g;  p -= lr*g / (sqrt(h) + eps)
- RMSprop:  h = d*h + (1-d)*g*g;  p -= lr*g / (sqrt(h) + eps)
- Adam:     t += 1;  lr_t = lr*sqrt(1-b2^t) / (1-b1^t);  m += (1-b1)*(g-m);  v += (1-b2)*(g*g-v);
            p -= lr_t*m / (sqrt(v) + eps)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Optimizer", "NAMES", "EPS", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "get"]

EPS = 1e-7

NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")


class Optimizer(NamedTuple):
    init: Callable
    update: Callable


_tmap = jax.tree_util.tree_map


def _check_number(fn, name, value, *, low=None, high=None, low_open=False, high_open=False):
    """Hyperparameters must be finite real numbers within their range (checked when concrete)."""
    if isinstance(value, jax.core.Tracer):
        return
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{fn}: {name} must be finite, got {v}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{fn}: {name} must be {'>' if low_open else '>='} {low}, got {v}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{fn}: {name} must be {'<' if high_open else '<='} {high}, got {v}")


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


def sgd(lr: float = 0.01) -> Optimizer:
    """Stochastic gradient descent: p -= lr*g. The state is an empty dict."""
    _check_number("sgd", "lr", lr, low=0.0, low_open=True)

    def init(params):
        return {}

    def update(params, grads, state):
        _check_trees("sgd.update", params, grads)
        return _tmap(lambda p, g: p - lr * g, params, grads), state

    return Optimizer(init, update)


def momentum(lr: float = 0.01, momentum: float = 0.9) -> Optimizer:
    """Momentum: v = mu*v - lr*g; p += v. State {'v'}: velocities, zeros at first."""
    _check_number("momentum", "lr", lr, low=0.0, low_open=True)
    _check_number("momentum", "momentum", momentum, low=0.0, high=1.0, high_open=True)
    mu = momentum

    def init(params):
        return {"v": _zeros(params)}

    def update(params, grads, state):
        _check_trees("momentum.update", params, grads)
        _check_state("momentum.update", state, ("v",))
        v = _tmap(lambda v, g: mu * v - lr * g, state["v"], grads)
        return _tmap(lambda p, v: p + v, params, v), {"v": v}

    return Optimizer(init, update)


def nesterov(lr: float = 0.01, momentum: float = 0.9) -> Optimizer:
    """Nesterov's accelerated gradient, in the book's form:
    v = mu*v - lr*g; p += mu*mu*v - (1+mu)*lr*g. State {'v'}."""
    _check_number("nesterov", "lr", lr, low=0.0, low_open=True)
    _check_number("nesterov", "momentum", momentum, low=0.0, high=1.0, high_open=True)
    mu = momentum

    def init(params):
        return {"v": _zeros(params)}

    def update(params, grads, state):
        _check_trees("nesterov.update", params, grads)
        _check_state("nesterov.update", state, ("v",))
        v = _tmap(lambda v, g: mu * v - lr * g, state["v"], grads)
        new = _tmap(lambda p, v, g: p + mu * mu * v - (1 + mu) * lr * g, params, v, grads)
        return new, {"v": v}

    return Optimizer(init, update)


def adagrad(lr: float = 0.01) -> Optimizer:
    """AdaGrad: h += g*g; p -= lr*g / (sqrt(h) + eps). State {'h'}: sums of squared gradients."""
    _check_number("adagrad", "lr", lr, low=0.0, low_open=True)

    def init(params):
        return {"h": _zeros(params)}

    def update(params, grads, state):
        _check_trees("adagrad.update", params, grads)
        _check_state("adagrad.update", state, ("h",))
        h = _tmap(lambda h, g: h + g * g, state["h"], grads)
        new = _tmap(lambda p, g, h: p - lr * g / (jnp.sqrt(h) + EPS), params, grads, h)
        return new, {"h": h}

    return Optimizer(init, update)


def rmsprop(lr: float = 0.01, decay_rate: float = 0.99) -> Optimizer:
    """RMSprop: h = d*h + (1-d)*g*g; p -= lr*g / (sqrt(h) + eps). State {'h'}."""
    _check_number("rmsprop", "lr", lr, low=0.0, low_open=True)
    _check_number("rmsprop", "decay_rate", decay_rate, low=0.0, high=1.0)
    d = decay_rate

    def init(params):
        return {"h": _zeros(params)}

    def update(params, grads, state):
        _check_trees("rmsprop.update", params, grads)
        _check_state("rmsprop.update", state, ("h",))
        h = _tmap(lambda h, g: d * h + (1 - d) * g * g, state["h"], grads)
        new = _tmap(lambda p, g, h: p - lr * g / (jnp.sqrt(h) + EPS), params, grads, h)
        return new, {"h": h}

    return Optimizer(init, update)


def adam(lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> Optimizer:
    """Adam as in the book (bias correction folded into lr_t).

    State {'t': int32 step count, 'm': first moments, 'v': second moments}.
    """
    _check_number("adam", "lr", lr, low=0.0, low_open=True)
    _check_number("adam", "beta1", beta1, low=0.0, high=1.0, high_open=True)
    _check_number("adam", "beta2", beta2, low=0.0, high=1.0, high_open=True)

    def init(params):
        return {"t": jnp.zeros((), jnp.int32), "m": _zeros(params), "v": _zeros(params)}

    def update(params, grads, state):
        _check_trees("adam.update", params, grads)
        _check_state("adam.update", state, ("t", "m", "v"))
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
