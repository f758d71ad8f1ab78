"""Numerical differentiation (chapter 4).

Central differences with h = 1e-4. `numerical_gradient` accepts an array of any shape or a
pytree of arrays and never changes its input: each perturbed copy is a new array, and the
2 * size evaluations run as a jitted, batched `lax.map` instead of a Python loop.

`f` should be written with jax.numpy (every fnnet function is); a book-style `f` written with
NumPy cannot be traced and is evaluated in a plain Python loop instead. Input given the book's
way, as NumPy float64 arrays or Python floats, is differentiated in float64 (h = 1e-4 is
chosen for float64; in float32 the rounding error of f dominates) and comes back as NumPy.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fnnet._checks import as_float

__all__ = ["numerical_diff", "numerical_gradient", "gradient_descent"]

H = 1e-4

_UNTRACEABLE = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError)


def _is_host_float64(leaf) -> bool:
    if isinstance(leaf, float):
        return True
    return isinstance(leaf, (np.ndarray, np.floating)) and leaf.dtype == np.float64


def _host_precision(leaves):
    """float64 for input given as NumPy float64 / Python floats (the book's way), else as is."""
    host = bool(leaves) and all(map(_is_host_float64, leaves))
    if host and not jax.config.jax_enable_x64:
        return True, jax.enable_x64(True)
    return host, contextlib.nullcontext()


def numerical_diff(f, x, h: float = H):
    """(f(x + h) - f(x - h)) / 2h for a scalar function of a scalar."""
    host, precision = _host_precision([x])
    with precision:
        d = (f(x + h) - f(x - h)) / (2 * h)
        return float(d) if host else d


def numerical_gradient(f, x, h: float = H):
    """Gradient of scalar `f` at `x` (array or pytree of arrays) by central differences.

    Returns the structure and shapes of `x`; `x` itself is never modified.
    """
    leaves, treedef = jax.tree_util.tree_flatten(x)
    host, precision = _host_precision(leaves)
    with precision:
        leaves = [as_float(leaf) for leaf in leaves]
        try:
            grads = [_leaf_gradient(f, leaves, treedef, i, h) for i in range(len(leaves))]
        except _UNTRACEABLE:
            grads = [_leaf_gradient_eager(f, leaves, treedef, i, h) for i in range(len(leaves))]
        if host:
            grads = [np.asarray(g) for g in grads]
    return jax.tree_util.tree_unflatten(treedef, grads)


def _leaf_gradient(f, leaves, treedef, i, h):
    leaf = leaves[i]
    size = max(leaf.size, 1)

    @jax.jit
    def run(leaves):
        flat = leaves[i].ravel()

        def f_at(j, delta):
            moved = flat.at[j].add(delta).reshape(leaf.shape)
            return f(jax.tree_util.tree_unflatten(treedef, leaves[:i] + [moved] + leaves[i + 1:]))

        def diff(j):
            return (f_at(j, h) - f_at(j, -h)) / (2 * h)

        batch = max(1, min(size, 64, (1 << 22) // size))
        if leaf.size <= batch:
            return jax.vmap(diff)(jnp.arange(leaf.size))
        # Whole batches only (the last one repeats the final index), so one body is compiled.
        n = -(-size // batch)
        idx = jnp.minimum(jnp.arange(n * batch), size - 1).reshape(n, batch)
        return lax.map(jax.vmap(diff), idx).reshape(-1)[:size]

    return run(leaves).reshape(leaf.shape).astype(leaf.dtype)


def _leaf_gradient_eager(f, leaves, treedef, i, h):
    """The book's loop, for an `f` that jax cannot trace; works on NumPy copies."""
    host = [np.array(leaf) for leaf in leaves]
    flat = host[i].reshape(-1)
    grad = np.zeros_like(flat)
    for j in range(flat.size):
        values = []
        for delta in (h, -h):
            moved = flat.copy()
            moved[j] += delta
            args = host[:i] + [moved.reshape(host[i].shape)] + host[i + 1:]
            values.append(float(f(jax.tree_util.tree_unflatten(treedef, args))))
        grad[j] = (values[0] - values[1]) / (2 * h)
    return jnp.asarray(grad.reshape(host[i].shape))


def gradient_descent(f, init_x, lr: float = 0.01, step_num: int = 100, return_history: bool = False):
    """Repeat x -= lr * numerical_gradient(f, x); returns x (and the (step_num, ...) history of x).

    The history holds x before each step, as the book's `gradient_descent` records it.
    """
    host, precision = _host_precision([init_x])
    with precision:
        x = as_float(init_x)
        step = jax.jit(lambda x: x - lr * numerical_gradient(f, x))
        history = []
        for _ in range(step_num):
            history.append(x)
            try:
                x = step(x)
            except _UNTRACEABLE:
                step = lambda x: x - lr * numerical_gradient(f, x)  # noqa: E731
                x = step(x)
        out = (x, jnp.stack(history)) if return_history else x
        if host:
            out = jax.tree_util.tree_map(np.asarray, out)
    return out
