"""The convolution's fast layouts, and `ConvImpl`, the static choice between them and the book's path.

`fnnet.layers.conv.convolution` computes the book's products out = im2col(x) @ W_col,
dW = col.T @ dout, dx = col2im(dout @ W_col.T). With `ConvImpl(layout="reference")` it does so
with the book's `im2col` / `col2im`; with `layout="fast"` it uses the two layouts here, which
compute the same products on a permuted or transposed matrix (both measured in
benchmarks/RESULTS.md):
- whole batch: col is the book's matrix with its columns permuted to (FH, FW, C), gathered from an
  NHWC copy of x so that every tap is one contiguous block, and cached for the backward pass;
- batch chunks: a matrix larger than the processor's caches makes every product wait on memory,
  so the batch runs `m` images at a time (`lax.map` forward, `lax.scan` backward), each chunk as
  colT = im2col(x_chunk).T (C*FH*FW, m*OH*OW), gathered from a (C, N, H, W) copy:
  out = W_row @ colT, dW = dout_row @ colT.T, dcolT = W_row.T @ dout_row with
  W_row = W.reshape(FN, C*FH*FW). The cache keeps x; the backward pass rebuilds each colT.
Both layouts gather their taps with `_gather_taps` and return gradients through its one adjoint,
`_add_taps`.

Chunks are a CPU-cache measure: on a GPU they serialise work that the device runs best in one
piece (DeepConvNet's step ran twice as fast unchunked on an H200). `resolve` therefore chooses
once, when a model is built, from JAX's default backend: chunks on the CPU, none elsewhere.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from fnnet._checks import check_int

__all__ = ["ConvImpl", "REFERENCE", "resolve", "chunk_size", "forward", "backward"]

LAYOUTS = ("reference", "fast")
CHUNK_BYTES = 4 << 20  # the CPU's chunks: at most this much matrix per chunk
UNCHUNKED_BYTES = 8 << 20  # the CPU's whole-batch limit: a matrix up to this size is built at once
CHUNKED_PLATFORMS = ("cpu",)


@dataclasses.dataclass(frozen=True)
class ConvImpl:
    """How `convolution` computes its products; static (hashable), chosen once, e.g. by `resolve`.

    layout: 'reference' (the book's im2col / col2im) or 'fast' (the layouts of this module).
    chunk_bytes: fast only; None runs the whole batch at once, an int runs a batch whose matrix
    exceeds `unchunked_bytes` in chunks of the most images whose matrix fits chunk_bytes (at
    least one image, and a divisor of the batch size)."""

    layout: str = "reference"
    chunk_bytes: int | None = None
    unchunked_bytes: int = 0

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"ConvImpl: layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.chunk_bytes is not None:
            check_int("ConvImpl", "chunk_bytes", self.chunk_bytes, 0)
        check_int("ConvImpl", "unchunked_bytes", self.unchunked_bytes, 0)
        if self.layout == "reference" and self.chunk_bytes is not None:
            raise ValueError(
                f"ConvImpl: chunk_bytes={self.chunk_bytes} needs layout='fast' (the reference layout "
                "builds the book's matrix for the whole batch)"
            )


REFERENCE = ConvImpl()


def resolve(conv_impl=None, backend: str | None = None) -> ConvImpl:
    """A ConvImpl from None or 'fast' (the fast layout as `backend`, default JAX's default backend,
    runs best: batch chunks on the CPU, the whole batch elsewhere), 'reference', or a ConvImpl."""
    if isinstance(conv_impl, ConvImpl):
        return conv_impl
    if conv_impl == "reference":
        return REFERENCE
    if conv_impl not in (None, "fast"):
        raise ValueError(
            f"resolve: conv_impl must be None, 'fast', 'reference' or a ConvImpl, got {conv_impl!r}"
        )
    if (backend or jax.default_backend()) in CHUNKED_PLATFORMS:
        return ConvImpl("fast", CHUNK_BYTES, UNCHUNKED_BYTES)
    return ConvImpl("fast")


def chunk_size(impl: ConvImpl, n: int, col_bytes: int) -> int:
    """Images per chunk for a batch of n whose matrix takes col_bytes: 0 for the whole batch."""
    if impl.chunk_bytes is None or col_bytes <= impl.unchunked_bytes:
        return 0
    per_image = col_bytes // n
    limit = max(impl.chunk_bytes, per_image)
    return max(d for d in range(1, n + 1) if n % d == 0 and d * per_image <= limit)


def _gather_taps(x, fh, fw, stride, oh, ow, axes):
    """The fh*fw strided views of a padded x along its two spatial `axes`, tap (i, j) in C-order."""
    hi, wi = stride * (oh - 1) + 1, stride * (ow - 1) + 1
    taps = []
    for i in range(fh):
        for j in range(fw):
            index = [slice(None)] * x.ndim
            index[axes[0]], index[axes[1]] = slice(i, i + hi, stride), slice(j, j + wi, stride)
            taps.append(x[tuple(index)])
    return taps


def _add_taps(tap, fh, fw, stride, pad, axes):
    """Adjoint of `_gather_taps` followed by unpadding: each tap's block `tap(i, j)` is placed back
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


def _col_nhwc(x, fh, fw, stride, pad, oh, ow):
    """x (N, C, H, W) -> (N*OH*OW, FH*FW*C): the book's im2col with its columns permuted."""
    xh = jnp.pad(x.transpose(0, 2, 3, 1), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    taps = _gather_taps(xh, fh, fw, stride, oh, ow, (1, 2))
    return jnp.concatenate(taps, axis=-1).reshape(x.shape[0] * oh * ow, -1)


def _colT(x, fh, fw, stride, pad, oh, ow):
    """x (N, C, H, W) -> im2col(x).T (C*FH*FW, N*OH*OW)."""
    n, c = x.shape[:2]
    xc = x.transpose(1, 0, 2, 3)
    if pad:
        xc = jnp.pad(xc, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    taps = _gather_taps(xc, fh, fw, stride, oh, ow, (2, 3))
    return jnp.stack(taps, axis=1).reshape(c * fh * fw, n * oh * ow)


def forward(x, W, b, stride, pad, oh, ow, m):
    """(out (N, FN, OH, OW), data to cache): the data is col (N*OH*OW, FH*FW*C) when m == 0,
    else x, whose colT is built m images at a time."""
    n, c, h, w = x.shape
    fnum, _, fh, fw = W.shape
    if m == 0:
        col = _col_nhwc(x, fh, fw, stride, pad, oh, ow)
        w_col = W.transpose(2, 3, 1, 0).reshape(-1, fnum)  # (FH*FW*C, FN), rows matching col's columns
        return (col @ w_col + b).reshape(n, oh, ow, fnum).transpose(0, 3, 1, 2), col
    w_row = W.reshape(fnum, -1)

    def one_chunk(xb):
        return (w_row @ _colT(xb, fh, fw, stride, pad, oh, ow)).reshape(fnum, m, oh, ow)

    outs = jax.lax.map(one_chunk, x.reshape(n // m, m, c, h, w))  # (n/m, FN, m, OH, OW)
    return outs.transpose(0, 2, 1, 3, 4).reshape(n, fnum, oh, ow) + b[:, None, None], x


def backward(data, W, dout, input_shape, stride, pad, m):
    """(dx (N, C, H, W), dW (FN, C, FH, FW)) from `forward`'s data and dout (N, FN, OH, OW)."""
    n, c, h, w = input_shape
    fnum, _, fh, fw = W.shape
    oh, ow = dout.shape[2:]
    if m == 0:
        dout2 = dout.transpose(0, 2, 3, 1).reshape(-1, fnum)  # (N*OH*OW, FN)
        w_col = W.transpose(2, 3, 1, 0).reshape(-1, fnum)
        dW = (data.T @ dout2).reshape(fh, fw, c, fnum).transpose(3, 2, 0, 1)
        d = (dout2 @ w_col.T).reshape(n, oh, ow, fh, fw, c)
        dx = _add_taps(lambda i, j: d[:, :, :, i, j, :], fh, fw, stride, pad, (1, 2))
        return dx.transpose(0, 3, 1, 2), dW
    w_row = W.reshape(fnum, -1)

    def chunk_step(dW, chunk):
        xb, db = chunk
        d_row = db.transpose(1, 0, 2, 3).reshape(fnum, -1)  # (FN, m*OH*OW)
        d = (w_row.T @ d_row).reshape(c, fh, fw, m, oh, ow)
        dx = _add_taps(lambda i, j: d[:, i, j], fh, fw, stride, pad, (2, 3)).transpose(1, 0, 2, 3)
        return dW + d_row @ _colT(xb, fh, fw, stride, pad, oh, ow).T, dx

    chunks = (data.reshape(n // m, m, c, h, w), dout.reshape(n // m, m, fnum, oh, ow))
    dW, dxs = jax.lax.scan(chunk_step, jnp.zeros_like(w_row), chunks)
    return dxs.reshape(n, c, h, w), dW.reshape(W.shape)
