"""Convolution and pooling (chapter 7) through im2col, with hand-written backward passes.

Data is NCHW and filters are (FN, C, FH, FW), as in the book. `im2col` returns the book's
matrix: one row per output position, ordered (N, OH, OW), one column per filter tap, ordered
(C, FH, FW). Stride and pad are static Python ints: they select slices, so they never
become traced values. The layers' caches hold arrays as leaves; the static hyperparameters
travel in the cache's tree structure (`ConvCache`, `PoolCache`), so a cache crosses a
`jax.jit` boundary and `backward(cache, dy)` needs nothing else.

Both `im2col` and `col2im` are built from FH * FW strided slices (gather) and strided
`.at[].add` (scatter) on a padded array, as the book's loops. They are the convolution's
reference path; its fast layouts, chosen by the static argument `impl`, are in
`fnnet.layers.conv_fast`.
"""

from __future__ import annotations

import dataclasses
import operator

import jax
import jax.numpy as jnp

from fnnet._checks import require_images, require_keys, require_ndim, shape_of
from fnnet.layers import conv_fast
from fnnet.layers.core import Layer, _layer

__all__ = ["im2col", "col2im", "conv_output_size", "output_hw", "convolution", "pooling", "ConvCache",
           "PoolCache", "global_average_pooling", "GapCache"]


def _static_int(fn: str, arg: str, value, minimum: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{fn}: {arg} must be a Python int (static), got bool {value}")
    if not isinstance(value, int):
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(
                f"{fn}: {arg} must be a Python int (static), got {type(value).__name__}"
            ) from None
    if value < minimum:
        raise ValueError(f"{fn}: {arg} must be >= {minimum}, got {value}")
    return int(value)


def output_hw(input_shape, filter_h: int, filter_w: int, stride: int, pad: int, what: str = "filter",
              *, fn: str = "output_hw"):
    """(OH, OW) = ((H + 2P - FH) / S + 1, (W + 2P - FW) / S + 1) for input (..., H, W); a ValueError
    naming `fn`, the input shape and the geometry if a size is not whole."""
    h, w = input_shape[-2:]
    out = []
    for axis, size, f in (("height", h, filter_h), ("width", w, filter_w)):
        span = size + 2 * pad - f
        if span < 0:
            raise ValueError(
                f"{fn}: {what} {axis} {f} is larger than the padded input {axis} {size} + 2*{pad} "
                f"(input shape {tuple(input_shape)}, {what} {filter_h}x{filter_w}, "
                f"stride {stride}, pad {pad})"
            )
        if span % stride:
            raise ValueError(
                f"{fn}: output {axis} ({size} + 2*{pad} - {f}) / {stride} + 1 = {span / stride + 1:g} "
                f"is not a whole number (input shape {tuple(input_shape)}, {what} {filter_h}x{filter_w}, "
                f"stride {stride}, pad {pad})"
            )
        out.append(span // stride + 1)
    return tuple(out)


def conv_output_size(input_size: int, filter_size: int, stride: int = 1, pad: int = 0) -> int:
    """The book's (input_size + 2*pad - filter_size) / stride + 1, for one spatial side; a
    ValueError when it is not a whole number >= 1."""
    fn = "conv_output_size"
    size = _static_int(fn, "input_size", input_size, 1)
    f = _static_int(fn, "filter_size", filter_size, 1)
    s = _static_int(fn, "stride", stride, 1)
    p = _static_int(fn, "pad", pad, 0)
    return output_hw((size, size), f, f, s, p, fn=fn)[0]


def _check_geometry(fn, x, filter_h, filter_w, stride, pad, what="filter"):
    require_ndim(fn, "x", x, (4,))
    filter_h = _static_int(fn, "filter_h", filter_h, 1)
    filter_w = _static_int(fn, "filter_w", filter_w, 1)
    stride = _static_int(fn, "stride", stride, 1)
    pad = _static_int(fn, "pad", pad, 0)
    oh, ow = output_hw(shape_of(x), filter_h, filter_w, stride, pad, what, fn=fn)
    return filter_h, filter_w, stride, pad, oh, ow


def _windows(x, filter_h, filter_w, stride, pad, oh, ow, pad_value=0.0):
    """x (N, C, H, W) -> (N, C, FH*FW, OH, OW): the FH*FW strided views of the padded input."""
    if pad:
        x = jnp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=pad_value)
    hi, wi = stride * (oh - 1) + 1, stride * (ow - 1) + 1
    views = [
        x[:, :, i : i + hi : stride, j : j + wi : stride] for i in range(filter_h) for j in range(filter_w)
    ]
    return jnp.stack(views, axis=2)


def _unwindows(win, input_shape, filter_h, filter_w, stride, pad):
    """Adjoint of `_windows`: (N, C, FH*FW, OH, OW) summed back into (N, C, H, W)."""
    n, c, h, w = input_shape
    oh, ow = win.shape[-2:]
    hp, wp = h + 2 * pad, w + 2 * pad
    if stride == filter_h == filter_w and hp == oh * stride and wp == ow * stride:
        # Non-overlapping windows that tile the padded input: a pure reshape.
        img = win.reshape(n, c, filter_h, filter_w, oh, ow).transpose(0, 1, 4, 2, 5, 3)
        img = img.reshape(n, c, hp, wp)
    else:
        img = jnp.zeros((n, c, hp, wp), win.dtype)
        hi, wi = stride * (oh - 1) + 1, stride * (ow - 1) + 1
        for i in range(filter_h):
            for j in range(filter_w):
                img = img.at[:, :, i : i + hi : stride, j : j + wi : stride].add(win[:, :, i * filter_w + j])
    return img[:, :, pad : pad + h, pad : pad + w]


def im2col(x, filter_h, filter_w, stride=1, pad=0):
    """The book's im2col: x (N, C, H, W) -> (N*OH*OW, C*FH*FW), rows (N, OH, OW), columns (C, FH, FW)."""
    x = jnp.asarray(x)
    fh, fw, s, p, oh, ow = _check_geometry("im2col", x, filter_h, filter_w, stride, pad)
    n, c = x.shape[:2]
    win = _windows(x, fh, fw, s, p, oh, ow)  # (N, C, K, OH, OW)
    return win.transpose(0, 3, 4, 1, 2).reshape(n * oh * ow, c * fh * fw)


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """Adjoint of `im2col`: (N*OH*OW, C*FH*FW) -> (N, C, H, W), overlapping taps summed."""
    col = jnp.asarray(col)
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 4:
        raise ValueError(f"col2im: input_shape must be (N, C, H, W), got {input_shape}")
    fh, fw, s, p, oh, ow = _check_geometry(
        "col2im", jax.ShapeDtypeStruct(input_shape, col.dtype), filter_h, filter_w, stride, pad
    )
    n, c = input_shape[:2]
    want = (n * oh * ow, c * fh * fw)
    if shape_of(col) != want:
        raise ValueError(
            f"col2im: col must have shape {want} for input_shape {input_shape}, filter {fh}x{fw}, "
            f"stride {s}, pad {p}; got {shape_of(col)}"
        )
    win = col.reshape(n, oh, ow, c, fh * fw).transpose(0, 3, 4, 1, 2)
    return _unwindows(win, input_shape, fh, fw, s, p)


# ---------------------------------------------------------------------------------------------
# Convolution


@dataclasses.dataclass(frozen=True)
class ConvCache:
    """Convolution cache: arrays as leaves, static geometry and layout in the tree structure.

    `data` is the book's col (N*OH*OW, C*FH*FW) for the reference layout; for the fast layout
    it is what `conv_fast.forward` keeps: its col (N*OH*OW, FH*FW*C) when chunk == 0, else the
    input x (N, C, H, W), rebuilt into colT `chunk` images at a time in the backward pass."""

    data: jax.Array
    W: jax.Array  # (FN, C, FH, FW)
    h: int = dataclasses.field(metadata=dict(static=True))
    w: int = dataclasses.field(metadata=dict(static=True))
    stride: int = dataclasses.field(metadata=dict(static=True))
    pad: int = dataclasses.field(metadata=dict(static=True))
    layout: str = dataclasses.field(metadata=dict(static=True))
    chunk: int = dataclasses.field(metadata=dict(static=True))


jax.tree_util.register_dataclass(
    ConvCache, data_fields=["data", "W"], meta_fields=["h", "w", "stride", "pad", "layout", "chunk"]
)


def _conv_forward(params, x, stride=1, pad=0, impl=conv_fast.REFERENCE):
    """params {'W': (FN, C, FH, FW), 'b': (FN,)}, x (N, C, H, W) -> (out (N, FN, OH, OW), ConvCache)."""
    fn = "convolution.forward"
    require_keys(fn, params, ("W", "b"))
    if not isinstance(impl, conv_fast.ConvImpl):
        raise TypeError(f"{fn}: impl must be a ConvImpl (see fnnet.layers.conv_fast.resolve), got {impl!r}")
    x = jnp.asarray(x)
    W, b = params["W"], params["b"]
    require_images(fn, x, W)
    fnum, c, fh, fw = shape_of(W)
    if shape_of(b) != (fnum,):
        raise ValueError(
            f"{fn}: params['b'] must have shape ({fnum},) for W {shape_of(W)}, got {shape_of(b)}"
        )
    fh, fw, stride, pad, oh, ow = _check_geometry(fn, x, fh, fw, stride, pad)
    n, _, h, w = x.shape
    if impl.layout == "reference":
        col = im2col(x, fh, fw, stride, pad)  # (N*OH*OW, C*FH*FW)
        out = (col @ W.reshape(fnum, -1).T + b).reshape(n, oh, ow, fnum).transpose(0, 3, 1, 2)
        return out, ConvCache(col, W, h, w, stride, pad, impl.layout, 0)
    m = conv_fast.chunk_size(impl, n, c * fh * fw * n * oh * ow * x.dtype.itemsize)
    out, data = conv_fast.forward(x, W, b, stride, pad, oh, ow, m)
    return out, ConvCache(data, W, h, w, stride, pad, impl.layout, m)


def _conv_backward(cache, dout):
    """ConvCache, dout (N, FN, OH, OW) -> (dx (N, C, H, W), {'W': (FN, C, FH, FW), 'b': (FN,)})."""
    W, s, p = cache.W, cache.stride, cache.pad
    fnum, c, fh, fw = W.shape
    n = dout.shape[0]
    db = jnp.sum(dout, axis=(0, 2, 3))
    if cache.layout == "reference":
        dout2 = dout.transpose(0, 2, 3, 1).reshape(-1, fnum)  # (N*OH*OW, FN)
        dW = (cache.data.T @ dout2).T.reshape(W.shape)
        dx = col2im(dout2 @ W.reshape(fnum, -1), (n, c, cache.h, cache.w), fh, fw, s, p)
        return dx, {"W": dW, "b": db}
    dx, dW = conv_fast.backward(cache.data, W, dout, (n, c, cache.h, cache.w), s, p, cache.chunk)
    return dx, {"W": dW, "b": db}


@_layer(_conv_forward, _conv_backward)
class convolution(Layer):
    """The Convolution layer of chapter 7, through im2col: FN filters slid over every position.

        out, cache = convolution.forward({'W': W, 'b': b}, x, stride=1, pad=0, impl=REFERENCE)
        dx, grads = convolution.backward(cache, dout)    # grads {'W', 'b'}

    Shapes: x (N, C, H, W), W (FN, C, FH, FW), b (FN,), out (N, FN, OH, OW) with
    OH = (H + 2*pad - FH) / stride + 1 and OW likewise (`conv_output_size`).
    out = im2col(x) @ W_col + b, reshaped to (N, FN, OH, OW), with W_col = W.reshape(FN, -1).T.
    Backward, by hand: dW = col.T @ dout, db = the sum of dout, dx = col2im(dout @ W_col.T).
    Cache: a `ConvCache` holding col = im2col(x) (N*OH*OW, C*FH*FW) and W, with the geometry
    (H, W, stride, pad) as static data. `impl` (a static `conv_fast.ConvImpl`) says how: the
    book's im2col / col2im (the default), or the fast layouts of `fnnet.layers.conv_fast`, whose
    cache holds their own matrix, or x itself. Inputs, outputs and W stay NCHW.
    """


# ---------------------------------------------------------------------------------------------
# Pooling


@dataclasses.dataclass(frozen=True)
class PoolCache:
    """Pooling cache: the argmax of each window (max) or nothing (avg), plus static geometry."""

    arg: jax.Array  # (N, C, OH, OW) ints in [0, PH*PW): the tap that won each window (the book's arg_max)
    n: int = dataclasses.field(metadata=dict(static=True))
    c: int = dataclasses.field(metadata=dict(static=True))
    h: int = dataclasses.field(metadata=dict(static=True))
    w: int = dataclasses.field(metadata=dict(static=True))
    pool_h: int = dataclasses.field(metadata=dict(static=True))
    pool_w: int = dataclasses.field(metadata=dict(static=True))
    stride: int = dataclasses.field(metadata=dict(static=True))
    pad: int = dataclasses.field(metadata=dict(static=True))
    mode: str = dataclasses.field(metadata=dict(static=True))


jax.tree_util.register_dataclass(
    PoolCache,
    data_fields=["arg"],
    meta_fields=["n", "c", "h", "w", "pool_h", "pool_w", "stride", "pad", "mode"],
)


def _pool_forward(params, x, pool_h, pool_w, stride=1, pad=0, mode="max"):
    """x (N, C, H, W) -> (out (N, C, OH, OW), PoolCache)."""
    fn = "pooling.forward"
    x = jnp.asarray(x)
    if mode not in ("max", "avg"):
        raise ValueError(f"{fn}: mode must be 'max' or 'avg', got {mode!r}")
    ph, pw, stride, pad, oh, ow = _check_geometry(fn, x, pool_h, pool_w, stride, pad, "window")
    n, c, h, w = x.shape
    win = _windows(x, ph, pw, stride, pad, oh, ow)  # (N, C, K, OH, OW); padding counts as 0 (book)
    if mode == "max":
        arg = jnp.argmax(win, axis=2)
        # The max read at the argmax: the same number as jnp.max, but jax.vjp of it routes dout by
        # the argmax as backward does, not by win == max (which jit may recompute rounded apart).
        out = jnp.sum(jnp.where(_winner(arg, ph * pw), win, 0), axis=2)
    else:
        out = jnp.mean(win, axis=2)
        arg = jnp.zeros((0,), jnp.int32)
    return out, PoolCache(arg, n, c, h, w, ph, pw, stride, pad, mode)


def _winner(arg, k):
    """arg (N, C, OH, OW) -> (N, C, K, OH, OW) booleans, True at the tap that won each window."""
    return jnp.arange(k)[:, None, None] == arg[:, :, None]


def _pool_backward(cache, dout):
    """PoolCache, dout (N, C, OH, OW) -> (dx (N, C, H, W), {})."""
    k = cache.pool_h * cache.pool_w
    if cache.mode == "max":
        win = jnp.where(_winner(cache.arg, k), dout[:, :, None], 0)
    else:
        win = jnp.broadcast_to((dout / k)[:, :, None], dout.shape[:2] + (k,) + dout.shape[2:])
    shape = (cache.n, cache.c, cache.h, cache.w)
    dx = _unwindows(win, shape, cache.pool_h, cache.pool_w, cache.stride, cache.pad)
    return dx, {}


@_layer(_pool_forward, _pool_backward)
class pooling(Layer):
    """The Pooling layer of chapter 7: the max (or average) of each pool_h x pool_w window.

        out, cache = pooling.forward({}, x, pool_h, pool_w, stride=1, pad=0, mode='max')
        dx, grads = pooling.backward(cache, dout)

    Shapes: x (N, C, H, W), out (N, C, OH, OW) with OH = (H + 2*pad - pool_h) / stride + 1 and
    OW likewise; each channel is pooled on its own. Padding counts as zeros, as in the book's
    im2col. Max backward routes dout to the first argmax of each window, as the book's
    np.argmax; average ('avg') backward spreads dout / (pool_h * pool_w) over the window.
    The forward reads the max at the argmax, so jax.vjp of it routes dout exactly as backward does.
    Cache: a `PoolCache` holding the argmax of each window (N, C, OH, OW), the book's `arg_max`,
    for max pooling (nothing for average), with the geometry as static data. No params: grads is {}.
    """


# ---------------------------------------------------------------------------------------------
# Global average pooling


@dataclasses.dataclass(frozen=True)
class GapCache:
    """Global average pooling cache: nothing but the static map size (H, W)."""

    h: int = dataclasses.field(metadata=dict(static=True))
    w: int = dataclasses.field(metadata=dict(static=True))


jax.tree_util.register_dataclass(GapCache, data_fields=[], meta_fields=["h", "w"])


def _gap_forward(params, x):
    """x (N, C, H, W) -> (out (N, C), GapCache(H, W))."""
    x = jnp.asarray(x)
    require_ndim("global_average_pooling.forward", "x", x, (4,))
    h, w = x.shape[2:]
    return jnp.mean(x, axis=(2, 3)), GapCache(h, w)


def _gap_backward(cache, dout):
    """GapCache, dout (N, C) -> (dx (N, C, H, W) = dout / (H*W) at every position, {})."""
    d = dout / (cache.h * cache.w)
    return jnp.broadcast_to(d[:, :, None, None], d.shape + (cache.h, cache.w)), {}


@_layer(_gap_forward, _gap_backward)
class global_average_pooling(Layer):
    """Global average pooling (ResNet's and GoogLeNet's last pooling): the mean of each feature map.

        out, cache = global_average_pooling.forward({}, x)    # x (N, C, H, W), out (N, C)
        dx, grads = global_average_pooling.backward(cache, dout)

    One number per channel, whatever the map size, so a network ends in Affine(classes) on C
    features instead of C*H*W. Backward spreads each dout[n, c] evenly: dx[n, c, i, j] =
    dout[n, c] / (H*W), the average pooling backward with one window the size of the map.
    Cache: a `GapCache` holding (H, W) as static data. No params: grads is {}.
    """
