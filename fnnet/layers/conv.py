"""Convolution and pooling (chapter 7) through im2col, with hand-written backward passes.

Data is NCHW and filters are (FN, C, FH, FW), as in the book. `im2col` returns the book's
matrix: one row per output position, ordered (N, OH, OW), one column per filter tap, ordered
(C, FH, FW). Stride and pad are static Python ints: they select slices, so they never
become traced values. The layers' caches hold arrays as leaves; the static hyperparameters
travel in the cache's tree structure (`ConvCache`, `PoolCache`), so a cache crosses a
`jax.jit` boundary and `backward(cache, dy)` needs nothing else.

Both `im2col` and `col2im` are built from FH * FW strided slices (gather) and strided
`.at[].add` (scatter) on a padded array. The convolution layer computes the same products
on the transpose of that matrix (see `convolution`).
"""

from __future__ import annotations

import dataclasses
import operator

import jax
import jax.numpy as jnp

from fnnet._checks import require_images, require_keys, require_ndim, shape_of
from fnnet.layers.core import Layer

__all__ = ["im2col", "col2im", "conv_output_size", "convolution", "pooling", "ConvCache", "PoolCache"]


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


def conv_output_size(fn: str, input_shape, filter_h: int, filter_w: int, stride: int, pad: int,
                     what: str = "filter"):
    """(OH, OW) = ((H + 2P - FH) / S + 1, (W + 2P - FW) / S + 1); a ValueError if not whole."""
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


def _check_geometry(fn, x, filter_h, filter_w, stride, pad, what="filter"):
    require_ndim(fn, "x", x, (4,))
    filter_h = _static_int(fn, "filter_h", filter_h, 1)
    filter_w = _static_int(fn, "filter_w", filter_w, 1)
    stride = _static_int(fn, "stride", stride, 1)
    pad = _static_int(fn, "pad", pad, 0)
    oh, ow = conv_output_size(fn, shape_of(x), filter_h, filter_w, stride, pad, what)
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


# The convolution kernel computes the im2col products in one of two layouts, chosen by size (both
# measured in benchmarks/RESULTS.md):
# - small layers (the whole batch's matrix within UNCHUNKED_BYTES): col is the book's im2col matrix
#   with its columns permuted to (FH, FW, C), gathered from an NHWC copy of x, and cached;
# - large layers: a matrix larger than the processor's caches makes every product wait on memory,
#   so the batch runs in chunks of about CHUNK_BYTES (`lax.map` forward, `lax.scan` backward), each
#   as colT = im2col(x_chunk).T, (C*FH*FW, m*OH*OW), gathered from a (C, N, H, W) copy so that every
#   tap is one contiguous block: out = W_row @ colT, dW = dout_row @ colT.T, dcolT = W_row.T @ dout_row
#   with W_row = W.reshape(FN, C*FH*FW). The cache keeps x; the backward rebuilds each chunk's colT.
# Chunks are a CPU-cache measure: on a GPU they serialise work that the device runs best in one
# piece (DeepConvNet's step ran twice as fast unchunked on an H200), so only the platforms in
# CHUNKED_PLATFORMS (JAX's default backend when the layer is traced) use them.

CHUNK_BYTES = 4 << 20  # per chunk of colT, in bytes
UNCHUNKED_BYTES = 8 << 20  # a col up to this size is built once for the whole batch and cached
CHUNKED_PLATFORMS = ("cpu",)


@dataclasses.dataclass(frozen=True)
class ConvCache:
    """Convolution cache: arrays as leaves, static geometry in the tree structure.

    `data` is col (N*OH*OW, FH*FW*C) when chunk == 0, else the input x (N, C, H, W), whose
    colT is rebuilt `chunk` images at a time in the backward pass."""

    data: jax.Array
    W: jax.Array  # (FN, C, FH, FW)
    h: int = dataclasses.field(metadata=dict(static=True))
    w: int = dataclasses.field(metadata=dict(static=True))
    stride: int = dataclasses.field(metadata=dict(static=True))
    pad: int = dataclasses.field(metadata=dict(static=True))
    chunk: int = dataclasses.field(metadata=dict(static=True))


jax.tree_util.register_dataclass(
    ConvCache, data_fields=["data", "W"], meta_fields=["h", "w", "stride", "pad", "chunk"]
)


def _colT(x, fh, fw, stride, pad, oh, ow):
    """im2col(x).T for x (N, C, H, W): (C*FH*FW, N*OH*OW), gathered tap by tap from a (C, N, H, W) copy."""
    n, c = x.shape[:2]
    xc = x.transpose(1, 0, 2, 3)
    if pad:
        xc = jnp.pad(xc, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    hi, wi = stride * (oh - 1) + 1, stride * (ow - 1) + 1
    taps = [xc[:, :, i : i + hi : stride, j : j + wi : stride] for i in range(fh) for j in range(fw)]
    return jnp.stack(taps, axis=1).reshape(c * fh * fw, n * oh * ow)


def _add_taps(tap, fh, fw, stride, pad, axes):
    """Adjoint of gathering the fh*fw strided taps: each tap's block `tap(i, j)` is placed back
    on the input grid with an interior-padded `lax.pad` along the two spatial `axes` (negative edge
    padding drops what fell on the zero border), and the placed blocks are summed."""
    img = None
    for i in range(fh):
        for j in range(fw):
            block = tap(i, j)
            cfg = [(0, 0, 0)] * block.ndim
            cfg[axes[0]] = (i - pad, fh - 1 - i - pad, stride - 1)
            cfg[axes[1]] = (j - pad, fw - 1 - j - pad, stride - 1)
            part = jax.lax.pad(block, jnp.zeros((), block.dtype), cfg)
            img = part if img is None else img + part
    return img


def _col2imT(dcolT, x_shape, fh, fw, stride, pad, oh, ow):
    """Adjoint of `_colT`: (C*FH*FW, N*OH*OW) -> (N, C, H, W)."""
    n, c = x_shape[:2]
    d = dcolT.reshape(c, fh, fw, n, oh, ow)
    return _add_taps(lambda i, j: d[:, i, j], fh, fw, stride, pad, (2, 3)).transpose(1, 0, 2, 3)


def _col_nhwc(x, fh, fw, stride, pad, oh, ow):
    """im2col of x (N, C, H, W) with the columns in (FH, FW, C) order: the book's matrix with its
    columns permuted, gathered from an NHWC copy so that every tap is a contiguous block."""
    n = x.shape[0]
    xh = jnp.pad(x.transpose(0, 2, 3, 1), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    hi, wi = stride * (oh - 1) + 1, stride * (ow - 1) + 1
    taps = [xh[:, i : i + hi : stride, j : j + wi : stride, :] for i in range(fh) for j in range(fw)]
    return jnp.concatenate(taps, axis=-1).reshape(n * oh * ow, -1)


def _col2im_nhwc(dcol, input_shape, fh, fw, stride, pad, oh, ow):
    """Adjoint of `_col_nhwc`: (N*OH*OW, FH*FW*C) -> (N, C, H, W)."""
    n, c = input_shape[:2]
    d = dcol.reshape(n, oh, ow, fh, fw, c)
    img = _add_taps(lambda i, j: d[:, :, :, i, j, :], fh, fw, stride, pad, (1, 2))
    return img.transpose(0, 3, 1, 2)


def _chunk_size(n, col_bytes):
    """0 (no chunks) for a small col or off the CPU, else the largest divisor of n whose colT fits
    CHUNK_BYTES."""
    if col_bytes <= UNCHUNKED_BYTES or jax.default_backend() not in CHUNKED_PLATFORMS:
        return 0
    per_image = col_bytes // n
    return max(d for d in range(1, n + 1) if n % d == 0 and d * per_image <= max(CHUNK_BYTES, per_image))


def _conv_forward(params, x, stride=1, pad=0):
    fn = "convolution.forward"
    require_keys(fn, params, ("W", "b"))
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
    m = _chunk_size(n, c * fh * fw * n * oh * ow * x.dtype.itemsize)
    if m == 0:
        col = _col_nhwc(x, fh, fw, stride, pad, oh, ow)
        w_col = W.transpose(2, 3, 1, 0).reshape(-1, fnum)  # (FH*FW*C, FN), rows matching col's columns
        out = (col @ w_col + b).reshape(n, oh, ow, fnum).transpose(0, 3, 1, 2)
        return out, ConvCache(col, W, h, w, stride, pad, 0)

    w_row = W.reshape(fnum, -1)

    def one_chunk(xb):
        return (w_row @ _colT(xb, fh, fw, stride, pad, oh, ow)).reshape(fnum, m, oh, ow)

    outs = jax.lax.map(one_chunk, x.reshape(n // m, m, c, h, w))  # (n/m, FN, m, OH, OW)
    out = outs.transpose(0, 2, 1, 3, 4).reshape(n, fnum, oh, ow)
    return out + b[:, None, None], ConvCache(x, W, h, w, stride, pad, m)


def _conv_backward(cache, dout):
    W, m, s, p = cache.W, cache.chunk, cache.stride, cache.pad
    fnum, c, fh, fw = W.shape
    n, _, oh, ow = dout.shape
    db = jnp.sum(dout, axis=(0, 2, 3))
    if m == 0:
        col = cache.data
        dout2 = dout.transpose(0, 2, 3, 1).reshape(-1, fnum)  # (N*OH*OW, FN)
        w_col = W.transpose(2, 3, 1, 0).reshape(-1, fnum)
        dW = (col.T @ dout2).reshape(fh, fw, c, fnum).transpose(3, 2, 0, 1)
        dx = _col2im_nhwc(dout2 @ w_col.T, (n, c, cache.h, cache.w), fh, fw, s, p, oh, ow)
        return dx, {"W": dW, "b": db}

    w_row = W.reshape(fnum, -1)

    def chunk_step(dW, chunk):
        xb, d = chunk
        d_row = d.transpose(1, 0, 2, 3).reshape(fnum, -1)  # (FN, m*OH*OW)
        dx = _col2imT(w_row.T @ d_row, xb.shape, fh, fw, s, p, oh, ow)
        return dW + d_row @ _colT(xb, fh, fw, s, p, oh, ow).T, dx

    chunks = (cache.data.reshape(n // m, m, c, cache.h, cache.w), dout.reshape(n // m, m, fnum, oh, ow))
    dW, dxs = jax.lax.scan(chunk_step, jnp.zeros_like(w_row), chunks)
    return dxs.reshape(n, c, cache.h, cache.w), {"W": dW.reshape(W.shape), "b": db}


convolution = Layer(_conv_forward, _conv_backward)
"""out = im2col(x) @ W_col + b, reshaped to (N, FN, OH, OW). params {'W': (FN, C, FH, FW),
'b': (FN,)}; forward(params, x, stride=1, pad=0). Backward: dW = col.T @ dout, db = sum(dout),
dx = col2im(dout @ W_col.T), written by hand (see the comment above for the two layouts and the
batch chunks of large layers). Inputs, outputs and W stay NCHW / (FN, C, FH, FW)."""


# ---------------------------------------------------------------------------------------------
# Pooling


@dataclasses.dataclass(frozen=True)
class PoolCache:
    """Pooling cache: the one-hot argmax (max) or nothing (avg), plus static geometry."""

    arg: jax.Array  # (N, C, PH*PW, OH, OW) weights that route dout back to the window taps
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
    fn = "pooling.forward"
    x = jnp.asarray(x)
    if mode not in ("max", "avg"):
        raise ValueError(f"{fn}: mode must be 'max' or 'avg', got {mode!r}")
    ph, pw, stride, pad, oh, ow = _check_geometry(fn, x, pool_h, pool_w, stride, pad, "window")
    n, c, h, w = x.shape
    win = _windows(x, ph, pw, stride, pad, oh, ow)  # (N, C, K, OH, OW); padding counts as 0 (book)
    if mode == "max":
        arg = jnp.argmax(win, axis=2)
        out = jnp.max(win, axis=2)
        onehot = (jnp.arange(ph * pw)[:, None, None] == arg[:, :, None]).astype(x.dtype)
    else:
        out = jnp.mean(win, axis=2)
        onehot = jnp.zeros((0,), x.dtype)
    return out, PoolCache(onehot, n, c, h, w, ph, pw, stride, pad, mode)


def _pool_backward(cache, dout):
    k = cache.pool_h * cache.pool_w
    if cache.mode == "max":
        win = cache.arg * dout[:, :, None]
    else:
        win = jnp.broadcast_to((dout / k)[:, :, None], dout.shape[:2] + (k,) + dout.shape[2:])
    shape = (cache.n, cache.c, cache.h, cache.w)
    dx = _unwindows(win, shape, cache.pool_h, cache.pool_w, cache.stride, cache.pad)
    return dx, {}


pooling = Layer(_pool_forward, _pool_backward)
"""Max (or average) over pool_h x pool_w windows of x (N, C, H, W), channel by channel.
forward({}, x, pool_h, pool_w, stride=1, pad=0, mode='max'|'avg'); padding counts as zeros,
as in the book's im2col. Max backward routes dout to the first argmax of each window, as the
book's np.argmax; average backward spreads dout / (pool_h * pool_w) over the window."""
