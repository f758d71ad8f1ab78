"""Input checks for the public boundary.

Every message names the function, the argument and the shapes, so that bad input fails here
with a readable error instead of deep inside XLA. Checks on values (label ranges) run only on
concrete arrays; under `jax.jit` the shapes are still checked, because they are static.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import jax
import numpy as np


def is_concrete(x) -> bool:
    """True when `x` holds values (not a tracer inside jit/grad/vmap)."""
    return not isinstance(x, jax.core.Tracer)


def shape_of(x) -> tuple:
    return tuple(np.shape(x))


def require_keys(fn: str, params: Mapping, keys: Iterable[str], arg: str = "params") -> None:
    """Raise KeyError naming the missing keys of a params dict."""
    if not isinstance(params, Mapping):
        raise TypeError(f"{fn}: {arg} must be a dict of arrays, got {type(params).__name__}")
    missing = [k for k in keys if k not in params]
    if missing:
        raise KeyError(
            f"{fn}: {arg} is missing {', '.join(repr(k) for k in missing)} "
            f"(has {sorted(params)})"
        )


def require_ndim(fn: str, arg: str, x, ndims: Iterable[int]) -> None:
    ndims = tuple(ndims)
    if np.ndim(x) not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{fn}: {arg} must be {want}-D, got shape {shape_of(x)}")


def require_float(fn: str, arg: str, x) -> None:
    dtype = np.result_type(getattr(x, "dtype", x))
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(
            f"{fn}: {arg} must be a floating-point array, got dtype {dtype} (shape {shape_of(x)})"
        )


def require_images(fn: str, x, w, w_arg: str = "params['W']") -> None:
    """x (N, C, H, W) must have the C channels that the filters `w` (FN, C, FH, FW) expect."""
    require_ndim(fn, w_arg, w, (4,))
    require_ndim(fn, "x", x, (4,))
    c = shape_of(w)[1]
    if shape_of(x)[1] != c:
        raise ValueError(
            f"{fn}: x has {shape_of(x)[1]} channels (shape {shape_of(x)}) but {w_arg} expects {c} "
            f"(shape {shape_of(w)}, (FN, C, FH, FW))"
        )


def require_features(fn: str, x, w, x_arg: str = "x", w_arg: str = "params['W']") -> None:
    """x (N, ...) flattened per sample must have as many features as `w` has rows."""
    if np.ndim(x) < 1:
        raise ValueError(f"{fn}: {x_arg} must have at least 1 dimension, got shape {shape_of(x)}")
    if np.ndim(w) != 2:
        raise ValueError(f"{fn}: {w_arg} must be 2-D (in, out), got shape {shape_of(w)}")
    feats = int(np.prod(shape_of(x)[1:])) if np.ndim(x) > 1 else shape_of(x)[0]
    if feats != shape_of(w)[0]:
        raise ValueError(
            f"{fn}: {x_arg} has {feats} features per sample (shape {shape_of(x)}) "
            f"but {w_arg} has {shape_of(w)[0]} rows (shape {shape_of(w)})"
        )


def check_targets(fn: str, t, batch: int, classes: int, arg: str = "t") -> None:
    """t is either int labels (N,) in [0, classes) or one-hot/soft targets (N, classes)."""
    ts = shape_of(t)
    if ts == (batch, classes):
        return
    if ts == (batch,) or (batch == 1 and ts == ()):
        dtype = np.result_type(getattr(t, "dtype", t))
        if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_)):
            raise TypeError(f"{fn}: {arg} as labels must be integers, got dtype {dtype} (shape {ts})")
        if is_concrete(t):
            tv = np.asarray(t)
            if tv.size and (tv.min() < 0 or tv.max() >= classes):
                raise ValueError(
                    f"{fn}: {arg} has labels in [{tv.min()}, {tv.max()}], outside [0, {classes}) "
                    f"for {classes} classes (shape {ts})"
                )
        return
    raise ValueError(
        f"{fn}: {arg} must be labels of shape ({batch},) or one-hot of shape ({batch}, {classes}), "
        f"got shape {ts}"
    )
