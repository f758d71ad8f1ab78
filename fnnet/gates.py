"""Logic gates as perceptrons (chapter 2): y = 1 if w . x + b > 0 else 0."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["perceptron", "AND", "NAND", "OR", "XOR"]


def perceptron(x, w, b):
    """1 if x . w + b > 0 else 0 (int32); x is one input pair (2,) or a batch (N, 2)."""
    return (jnp.dot(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)) + b > 0).astype(jnp.int32)


def _pair(x1, x2):
    return jnp.stack([jnp.asarray(x1, jnp.float32), jnp.asarray(x2, jnp.float32)], axis=-1)


def AND(x1, x2):
    """AND of 0/1 inputs (scalars or arrays of one shape): w = (0.5, 0.5), b = -0.7."""
    return perceptron(_pair(x1, x2), [0.5, 0.5], -0.7)


def NAND(x1, x2):
    """NAND of 0/1 inputs (scalars or arrays of one shape): w = (-0.5, -0.5), b = 0.7."""
    return perceptron(_pair(x1, x2), [-0.5, -0.5], 0.7)


def OR(x1, x2):
    """OR of 0/1 inputs (scalars or arrays of one shape): w = (0.5, 0.5), b = -0.2."""
    return perceptron(_pair(x1, x2), [0.5, 0.5], -0.2)


def XOR(x1, x2):
    """Not linearly separable: two layers of perceptrons, AND(NAND, OR)."""
    return AND(NAND(x1, x2), OR(x1, x2))
