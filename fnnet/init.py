"""Weight initialisation (chapter 6): the standard deviation of the Gaussian for a weight matrix.

    weight_std(0.01, n_in)        -> 0.01
    weight_std('xavier', n_in)    -> sqrt(1 / n_in)   (also 'sigmoid'; Xavier/Glorot, for sigmoid/tanh)
    weight_std('he', n_in)        -> sqrt(2 / n_in)   (also 'relu'; He, for ReLU)

`n_in` is the number of inputs of one unit: rows of an affine W, or C * FH * FW for a filter.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp

from fnnet._checks import shown

__all__ = ["SPECS", "weight_std", "normal"]

SPECS = ("xavier", "sigmoid", "he", "relu")


def weight_std(spec, n_in: int) -> float:
    """Resolve `spec` (a positive float, or one of SPECS, case-insensitive) to a std for `n_in` inputs."""
    if isinstance(n_in, bool) or not isinstance(n_in, numbers.Integral) or n_in < 1:
        raise ValueError(f"weight_std: n_in must be a positive integer, got {shown(n_in)}")
    if isinstance(spec, str):
        s = spec.lower()
        if s in ("xavier", "sigmoid"):
            return math.sqrt(1.0 / n_in)
        if s in ("he", "relu"):
            return math.sqrt(2.0 / n_in)
        raise ValueError(
            f"weight_std: unknown spec {spec!r}; use a positive number or one of {', '.join(SPECS)}"
        )
    if isinstance(spec, bool) or not isinstance(spec, numbers.Real):
        raise TypeError(f"weight_std: spec must be a number or one of {', '.join(SPECS)}, got {shown(spec)}")
    std = float(spec)
    if not math.isfinite(std) or std <= 0:
        raise ValueError(f"weight_std: spec as a number must be positive and finite, got {std}")
    return std


def normal(key, shape, spec, n_in: int | None = None, dtype=jnp.float32):
    """weight_std(spec, n_in) * N(0, 1) of `shape`; n_in defaults to prod(shape[1:]) for 4-D
    filters (FN, C, FH, FW) and shape[0] otherwise."""
    if n_in is None:
        n_in = math.prod(shape[1:]) if len(shape) == 4 else shape[0]
    return weight_std(spec, n_in) * jax.random.normal(key, shape, dtype)
