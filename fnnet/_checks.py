"""Input checks for the public boundary.

Every message names the function, the argument and the shapes, so that bad input fails here
with a readable error instead of deep inside XLA. Checks on values (label ranges) run only on
concrete arrays; under `jax.jit` the shapes are still checked, because they are static.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import jax
import numpy as np

# jax.random.PRNGKey keeps the low 32 bits of a seed when 64-bit mode is off (the default), so
# seed 2**32 would silently be seed 0: seeds are refused outside 0..MAX_SEED.
MAX_SEED = 2**32 - 1
# The optimizers count steps in int32; a schedule boundary or a step count beyond it would wrap.
MAX_STEPS = 2**31 - 1


def is_concrete(x) -> bool:
    """True when `x` holds values (not a tracer inside jit/grad/vmap)."""
    return not isinstance(x, jax.core.Tracer)


def as_float(x):
    """x as a JAX array, integers and bools promoted to JAX's default float (floats kept as they are)."""
    import jax.numpy as jnp

    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.result_type(float))


def shape_of(x) -> tuple:
    return tuple(np.shape(x))


def shown(value) -> str:
    """How a message shows a value: repr, or 'an array of shape S and dtype D' for an array, whose
    repr would print every entry."""
    if hasattr(value, "shape") and hasattr(value, "dtype") and np.ndim(value) > 0:
        return f"an array of shape {shape_of(value)} and dtype {value.dtype}"
    return repr(value)


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
    """x must have one of ndims axes; one sample given where a batch is expected (an image
    (C, H, W) for (N, C, H, W)) is told to add the batch axis, with the shape that gives."""
    ndims = tuple(ndims)
    if np.ndim(x) not in ndims:
        want = " or ".join(str(n) for n in ndims)
        hint = ""
        if arg == "x" and np.ndim(x) + 1 in ndims:
            hint = f"; for one sample add a batch axis: x[None] has shape {(1,) + shape_of(x)}"
        raise ValueError(f"{fn}: {arg} must be {want}-D, got shape {shape_of(x)}{hint}")


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


def check_int(fn: str, name: str, value, low: int | None = None) -> int:
    """A Python or NumPy integer (not a bool) >= low, returned as int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{fn}: {name} must be >= {low}, got {value}")
    return int(value)


def check_seed(fn: str, seed, name: str = "seed") -> int:
    """An integer seed in 0..MAX_SEED (what a JAX PRNG key holds), returned as int."""
    seed = check_int(fn, name, seed, 0)
    if seed > MAX_SEED:
        raise ValueError(f"{fn}: {name} must be in 0..{MAX_SEED} (a JAX PRNG key holds 32 bits; a larger "
                         f"seed would silently repeat a smaller one), got {seed}")
    return seed


def check_steps(fn: str, name: str, value, low: int = 1) -> int:
    """A step count or boundary that fits the int32 step counter (low..MAX_STEPS), as int."""
    value = check_int(fn, name, value, low)
    if value > MAX_STEPS:
        raise ValueError(f"{fn}: {name} must be at most {MAX_STEPS:,} (2**31 - 1, the int32 step counter "
                         f"would wrap), got {value:,}")
    return value


def check_number(fn: str, name: str, value, *, low=None, high=None, low_open=False, high_open=False) -> None:
    """A finite real number (not a bool or a string) within its range; tracers pass unchecked."""
    if not is_concrete(value):
        return
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{fn}: {name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: {name} must be a number, got {value!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"{fn}: {name} must be finite, got {v}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{fn}: {name} must be {'>' if low_open else '>='} {low}, got {v}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{fn}: {name} must be {'<' if high_open else '<='} {high}, got {v}")


def require_nonempty(fn: str, arg: str, x) -> None:
    """A batch must hold at least one sample: a mean over 0 samples is no loss."""
    if np.ndim(x) >= 1 and shape_of(x)[0] == 0:
        raise ValueError(f"{fn}: {arg} is an empty batch (shape {shape_of(x)}); it needs at least one sample")


def check_dataset(fn: str, name: str, data, input_shape, num_classes: int | None = None):
    """Check a pair (x, t) once, before anything is compiled, and return it as NumPy arrays:
    x float32 (N,) + input_shape, t int32 labels (N,) or float32 one-hot (N, C).

    Shapes and dtypes, then values: every x finite, labels in [0, num_classes), one-hot rows of
    0s and a single 1. A bad value is reported with the index of the first bad sample, because
    inside `jax.jit` a NaN trains into NaN weights and an out-of-range label drops out of the loss
    without an error.
    """
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{fn}: {name} must be a pair (x, t), got {type(data).__name__}")
    x, t = np.asarray(data[0]), np.asarray(data[1])
    if x.ndim < 1 or t.ndim not in (1, 2):
        raise ValueError(
            f"{fn}: {name} must be x (N, ...) and t (N,) labels or (N, C) one-hot, "
            f"got x {x.shape} and t {t.shape}"
        )
    if x.shape[0] != t.shape[0]:
        raise ValueError(
            f"{fn}: {name} has {x.shape[0]} inputs but {t.shape[0]} targets (x {x.shape}, t {t.shape})"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{fn}: {name} is empty (x {x.shape})")
    per_sample = int(np.prod(x.shape[1:]))
    want = int(np.prod(input_shape))
    if per_sample != want:
        raise ValueError(
            f"{fn}: {name} has {per_sample} values per sample (x {x.shape}) but the model expects "
            f"input_shape {tuple(input_shape)} ({want} values)"
        )
    if t.ndim == 1 and not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"{fn}: {name} labels t must be integers, got dtype {t.dtype} (shape {t.shape})")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{fn}: {name} x must be numeric, got dtype {x.dtype}")
    if t.ndim == 2 and not (np.issubdtype(t.dtype, np.floating) or np.issubdtype(t.dtype, np.integer)):
        raise TypeError(f"{fn}: {name} one-hot t must be numeric, got dtype {t.dtype}")
    given_dtype = x.dtype
    x = x.astype(np.float32, copy=False).reshape((x.shape[0],) + tuple(input_shape))
    bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{fn}: {name} x[{i}] holds a non-finite value ({int(bad.sum())} samples of {x.shape[0]} do); "
            "clean or drop them before training"
        )
    _check_pixel_range(fn, name, x, given_dtype)
    if t.ndim == 2:
        if num_classes is not None and t.shape[1] != num_classes:
            raise ValueError(
                f"{fn}: {name} one-hot t has {t.shape[1]} columns (shape {t.shape}) but the model "
                f"has {num_classes} outputs"
            )
        t = t.astype(np.float32, copy=False)
        onehot = np.all((t == 0) | (t == 1), axis=1) & (t.sum(axis=1) == 1)
        if not onehot.all():
            i = int(np.argmin(onehot))
            raise ValueError(f"{fn}: {name} t[{i}] = {t[i].tolist()} is not a one-hot row (one 1, rest 0)")
    else:
        t = t.astype(np.int32, copy=False)
        if num_classes is not None:
            bad = (t < 0) | (t >= num_classes)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(
                    f"{fn}: {name} label t[{i}] = {int(t[i])} is outside [0, {num_classes}) for a model "
                    f"with {num_classes} outputs ({int(bad.sum())} labels of {t.shape[0]} are)"
                )
    return x, t


def _check_pixel_range(fn: str, name: str, x, given_dtype) -> None:
    """The networks expect images scaled to [0, 1]: integer data outside it (uint8 pixels 0..255)
    is refused, because it trains without an error but to chance accuracy; float data that looks
    like unscaled pixels (min >= 0, max > 1) gets a warning, since features may legitimately be
    larger. `x` is the finite float32 data, `given_dtype` the dtype it was passed in."""
    lo, hi = float(x.min()), float(x.max())
    if np.issubdtype(given_dtype, np.integer) or given_dtype == np.bool_:
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{fn}: {name} x holds integers {lo:g}..{hi:g} (dtype {given_dtype}); the networks expect "
                "values in [0, 1]: load with normalize=True, or pass x / 255 (as float32)"
            )
    elif lo >= 0 and hi > 1:
        warnings.warn(f"{fn}: {name} x ranges over {lo:g}..{hi:g}; images are expected in [0, 1] "
                      "(load with normalize=True, or divide by 255)", UserWarning, stacklevel=4)


def labels_of(t):
    """Labels (N,) from labels or one-hot rows (N, C)."""
    return np.argmax(t, axis=1).astype(np.int32) if np.ndim(t) == 2 else t
