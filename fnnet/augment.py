"""Keyed, jit-compatible data augmentation for image batches (N, C, H, W).

`augment(key, x)` applies to every image its own random affine map: a rotation of up to
`max_degrees` about the image centre and a shift of up to `max_shift` pixels in each direction,
resampled bilinearly (`jax.scipy.ndimage.map_coordinates`, order 1) with zeros outside. The
same key gives the same batch bit for bit. Use it as `fit(..., augment=augment)`, or build
other ranges with `make_augment(max_shift, max_degrees)`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

from fnnet._checks import require_ndim

__all__ = ["affine_warp", "make_augment", "augment"]


def affine_warp(x, angle, shift):
    """Rotate each image of x (N, C, H, W) by angle (N,) radians about its centre, then shift it
    by shift (N, 2) pixels (dy, dx); bilinear, zeros outside. Pure and jit-compatible."""
    n, c, h, w = x.shape
    yy, xx = jnp.meshgrid(jnp.arange(h, dtype=x.dtype), jnp.arange(w, dtype=x.dtype), indexing="ij")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0

    def one(img, a, s):
        # Output pixel (y, x) reads the input at R(-a) ((y, x) - centre - shift) + centre.
        dy, dx = yy - cy - s[0], xx - cx - s[1]
        cos, sin = jnp.cos(a), jnp.sin(a)
        sy = cos * dy - sin * dx + cy
        sx = sin * dy + cos * dx + cx
        return jax.vmap(lambda ch: map_coordinates(ch, [sy, sx], order=1, mode="constant", cval=0.0))(img)

    return jax.vmap(one)(x, angle.astype(x.dtype), shift.astype(x.dtype))


def make_augment(max_shift: float = 2.0, max_degrees: float = 10.0):
    """An `augment(key, x) -> x` drawing shifts uniform in [-max_shift, max_shift] pixels and
    rotations uniform in [-max_degrees, max_degrees] degrees, independently per image."""
    max_shift, max_rad = float(max_shift), math.radians(float(max_degrees))

    def augment(key, x):
        x = jnp.asarray(x)
        require_ndim("augment", "x", x, (4,))
        k1, k2 = jax.random.split(key)
        n = x.shape[0]
        angle = jax.random.uniform(k1, (n,), minval=-max_rad, maxval=max_rad)
        shift = jax.random.uniform(k2, (n, 2), minval=-max_shift, maxval=max_shift)
        return affine_warp(x, angle, shift)

    augment.__doc__ = (f"x (N, C, H, W) -> the batch with every image rotated by up to {max_degrees:g} "
                       f"degrees and shifted by up to {max_shift:g} pixels, each its own draw from key.")
    return augment


augment = make_augment()
"""Shifts of up to 2 pixels and rotations of up to 10 degrees, per image."""
