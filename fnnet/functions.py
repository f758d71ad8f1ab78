"""Activations, softmax and losses (chapters 2 to 4), as pure jnp functions.

`cross_entropy_error` keeps the book's 1e-7 delta on probabilities; `softmax_cross_entropy`
works on logits through log-softmax, has no delta and is what the SoftmaxWithLoss layer uses,
so that its exact gradient is (softmax(x) - t) / N. Integer inputs are promoted to floats.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnnet._checks import as_float, check_targets, require_nonempty, shape_of

__all__ = [
    "step_function", "sigmoid", "relu", "tanh", "identity_function", "softmax", "log_softmax",
    "mean_squared_error", "cross_entropy_error", "softmax_cross_entropy", "to_one_hot",
]


def step_function(x):
    """1 where x > 0, else 0, as int32 like the book's `np.array(x > 0, dtype=int)`."""
    return (jnp.asarray(x) > 0).astype(jnp.int32)


def sigmoid(x):
    """1 / (1 + exp(-x)), elementwise; stable for large |x|."""
    return jax.nn.sigmoid(as_float(x))


def relu(x):
    """max(0, x), elementwise; keeps the input's dtype."""
    return jnp.maximum(0, jnp.asarray(x))


def tanh(x):
    """Hyperbolic tangent, elementwise."""
    return jnp.tanh(as_float(x))


def identity_function(x):
    """The output activation of regression: x unchanged."""
    return jnp.asarray(x)


def softmax(x):
    """Softmax over the last axis (1-D or batched); subtracts the max so large inputs stay finite."""
    x = as_float(x)
    e = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True))
    return e / jnp.sum(e, axis=-1, keepdims=True)


def log_softmax(x):
    """log(softmax(x)) over the last axis, computed without forming softmax."""
    x = as_float(x)
    shifted = x - jnp.max(x, axis=-1, keepdims=True)
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


def mean_squared_error(y, t):
    """0.5 * sum((y - t)^2), the book's definition (summed, not averaged); y and t of one shape."""
    y, t = as_float(y), jnp.asarray(t)
    if y.shape != t.shape:
        raise ValueError(f"mean_squared_error: y shape {y.shape} and t shape {t.shape} differ")
    return 0.5 * jnp.sum((y - t) ** 2)


def to_one_hot(t, classes: int, dtype=jnp.float32):
    """Integer labels (...,) -> one-hot (..., classes)."""
    return jax.nn.one_hot(jnp.asarray(t), classes, dtype=dtype)


def _as_batch(fn, y, t):
    """(y, t) as (N, C) scores and (N, C) targets; one sample (C,) becomes a batch of 1."""
    y, t = as_float(y), jnp.asarray(t)
    if y.ndim not in (1, 2):
        raise ValueError(f"{fn}: y must be 1-D (classes,) or 2-D (N, classes), got shape {shape_of(y)}")
    if y.ndim == 1:
        y = y[None, :]
        if t.ndim == 1 and t.shape[0] == y.shape[1]:
            t = t[None, :]
        elif t.ndim == 0:
            t = t.reshape(1)
    require_nonempty(fn, "y", y)
    check_targets(fn, t, y.shape[0], y.shape[1])
    if t.shape == y.shape:
        return y, t.astype(y.dtype)
    return y, to_one_hot(t, y.shape[1], y.dtype)


def cross_entropy_error(y, t):
    """-sum(t * log(y + 1e-7)) / N for probabilities y (C,) or (N, C); t one-hot or integer labels.

    Labels outside [0, C) raise a ValueError when t holds values. Under `jax.jit` t is a tracer
    with no values to check, and such a label becomes an all-zero one-hot row that adds nothing
    to the loss: check labels before jit (as `fnnet.training.fit` and the CLI do)."""
    y, t = _as_batch("cross_entropy_error", y, t)
    return -jnp.sum(t * jnp.log(y + 1e-7)) / y.shape[0]


def softmax_cross_entropy(logits, t):
    """Mean cross-entropy of softmax(logits) against t, computed stably from the logits."""
    x, t = _as_batch("softmax_cross_entropy", logits, t)
    return -jnp.sum(t * log_softmax(x)) / x.shape[0]
