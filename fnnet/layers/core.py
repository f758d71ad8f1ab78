"""Layers of chapter 5 as pure forward/backward pairs.

The one form every layer in fnnet follows:

    y, cache = layer.forward(params, x, ...)     # params: dict of arrays ({} if none)
    dx, grads = layer.backward(cache, dy)        # grads: dict with the keys of params

`cache` is a pytree of arrays holding whatever backward needs (no Python ints or shapes, so
that it can cross a `jax.jit` boundary); nothing is stored anywhere else. Layers with
several inputs (`mul`, `add`) take them as extra positional arguments and return their
gradients as a tuple in place of `dx`. Layers with running state (batch_norm)
take it as an argument and return the new state as a third value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp

from fnnet._checks import (
    check_targets,
    require_features,
    require_keys,
    require_ndim,
    require_nonempty,
    shape_of,
)
from fnnet.functions import log_softmax, softmax, to_one_hot
from fnnet.functions import sigmoid as _sigmoid

__all__ = ["Layer", "mul", "add", "relu", "sigmoid", "affine", "softmax_with_loss"]


class Layer(NamedTuple):
    forward: Callable
    backward: Callable


def _same_shape(fn, x, y):
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"{fn}: x shape {x.shape} and y shape {y.shape} differ (no broadcasting)")
    return x, y


def _mul_forward(params, x, y):
    x, y = _same_shape("mul.forward", x, y)
    return x * y, (x, y)


def _mul_backward(cache, dout):
    x, y = cache
    return (dout * y, dout * x), {}


mul = Layer(_mul_forward, _mul_backward)
"""out = x * y (same shapes); dx = dout * y, dy = dout * x."""


def _add_forward(params, x, y):
    x, y = _same_shape("add.forward", x, y)
    return x + y, None


def _add_backward(cache, dout):
    return (dout, dout), {}


add = Layer(_add_forward, _add_backward)
"""out = x + y (same shapes); both inputs receive dout unchanged."""


def _relu_forward(params, x):
    x = jnp.asarray(x)
    mask = x > 0
    return jnp.where(mask, x, 0), mask


def _relu_backward(mask, dy):
    return jnp.where(mask, dy, 0), {}


relu = Layer(_relu_forward, _relu_backward)
"""y = max(0, x); the cache is the mask x > 0."""


def _sigmoid_forward(params, x):
    out = _sigmoid(jnp.asarray(x))
    return out, out


def _sigmoid_backward(out, dy):
    return dy * (1.0 - out) * out, {}


sigmoid = Layer(_sigmoid_forward, _sigmoid_backward)
"""y = 1 / (1 + exp(-x)); dx = dy * y * (1 - y)."""


def _affine_forward(params, x):
    require_keys("affine.forward", params, ("W", "b"))
    x = jnp.asarray(x)
    require_nonempty("affine.forward", "x", x)
    require_features("affine.forward", x, params["W"])
    if shape_of(params["b"]) != shape_of(params["W"])[1:]:
        raise ValueError(
            f"affine.forward: params['b'] must have shape {shape_of(params['W'])[1:]} to match "
            f"params['W'] of shape {shape_of(params['W'])}, got shape {shape_of(params['b'])}"
        )
    x2 = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
    y = x2 @ params["W"] + params["b"]
    return (y if x.ndim > 1 else y[0]), (x, params["W"])


def _affine_backward(cache, dy):
    x, W = cache
    x2 = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
    dy2 = dy.reshape(x2.shape[0], -1)
    dx = (dy2 @ W.T).reshape(x.shape)
    return dx, {"W": x2.T @ dy2, "b": jnp.sum(dy2, axis=0)}


affine = Layer(_affine_forward, _affine_backward)
"""y = x.reshape(N, -1) @ W + b for x of any rank (N, ...); dx comes back in x's shape."""


def _softmax_with_loss_forward(params, x, t):
    x, t = jnp.asarray(x), jnp.asarray(t)
    require_ndim("softmax_with_loss.forward", "x", x, (2,))
    require_nonempty("softmax_with_loss.forward", "x", x)
    check_targets("softmax_with_loss.forward", t, x.shape[0], x.shape[1])
    if t.shape == x.shape:
        t1 = t.astype(x.dtype)
    else:
        t1 = to_one_hot(t.reshape(-1), x.shape[1], x.dtype)
    loss = -jnp.sum(t1 * log_softmax(x)) / x.shape[0]
    return loss, (softmax(x), t1)


def _softmax_with_loss_backward(cache, dout=1.0):
    y, t1 = cache
    return dout * (y - t1) / y.shape[0], {}


softmax_with_loss = Layer(_softmax_with_loss_forward, _softmax_with_loss_backward)
"""Mean cross-entropy of softmax(x) (N, C) against labels (N,) or one-hot t (N, C);
computed from log-softmax, so dx = (softmax(x) - t) / N is its exact gradient."""
