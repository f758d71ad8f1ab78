"""Regularisation applied to the gradients before the optimizer's update (chapter 6).

    opt = optimizers.chain(optimizers.sgd(0.01), weight_decay(0.1), clip_by_global_norm(5.0))

A transform is a pure, jit-compatible function `(grads, params) -> grads` over pytrees of the
same structure. The weight arrays are the leaves whose dict key starts with 'W' (the book's
W1, W2, ...); biases and Batch Norm's gamma and beta are not decayed, as in the book.

- weight_decay(lam):          g_W += lam * W, the gradient of l2_penalty(params, lam)
- clip_by_global_norm(c):     every g *= min(1, c / ||all g||_2)
- l2_penalty(params, lam):    0.5 * lam * sum(W**2), the term the book adds to its loss
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from fnnet._checks import check_number, is_concrete

__all__ = ["weight_decay", "clip_by_global_norm", "l2_penalty", "is_weight"]

Transform = Callable


def is_weight(path) -> bool:
    """True for a leaf (given by its key path) whose nearest dict key starts with 'W'."""
    for entry in reversed(path):
        if isinstance(entry, jax.tree_util.DictKey):
            return isinstance(entry.key, str) and entry.key.startswith("W")
    return False


def _is_zero(fn, lam) -> bool:
    """Check lam (a number >= 0, or traced); True when it is a concrete 0 (nothing to add)."""
    check_number(fn, "lam", lam, low=0.0)
    return is_concrete(lam) and float(lam) == 0.0


def l2_penalty(params, lam) -> jax.Array:
    """0.5 * lam * sum(W**2) over the weight arrays of `params` (a scalar; 0 when lam is 0)."""
    if _is_zero("l2_penalty", lam):
        return jnp.zeros((), jnp.float32)
    squares = [jnp.sum(w**2) for path, w in jax.tree_util.tree_leaves_with_path(params) if is_weight(path)]
    return 0.5 * lam * sum(squares) if squares else jnp.zeros((), jnp.float32)


def weight_decay(lam) -> Transform:
    """(grads, params) -> grads with lam * W added to the gradient of every weight array W
    (lam = 0 gives the gradients back untouched)."""
    if _is_zero("weight_decay", lam):
        return lambda grads, params: grads

    def transform(grads, params):
        return jax.tree_util.tree_map_with_path(
            lambda path, g, p: g + lam * p if is_weight(path) else g, grads, params
        )

    return transform


def clip_by_global_norm(max_norm) -> Transform:
    """(grads, params) -> grads scaled by min(1, max_norm / global_norm), the global norm being
    sqrt(sum of g**2 over every leaf). Gradients within the norm come back unchanged."""
    check_number("clip_by_global_norm", "max_norm", max_norm, low=0.0, low_open=True)

    def transform(grads, params):
        leaves = jax.tree_util.tree_leaves(grads)
        if not leaves:
            return grads
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in leaves))
        scale = jnp.minimum(1.0, max_norm / norm)
        return jax.tree_util.tree_map(lambda g: g * scale.astype(g.dtype), grads)

    return transform
