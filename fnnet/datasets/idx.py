"""The IDX file format of MNIST: reading, validating, checksumming.

An IDX file is a 4-byte magic number `00 00 TT NN` (TT the element type code, NN the number of
dimensions), NN big-endian uint32 sizes, then the elements in big-endian C order. Files may be
gzip-compressed; gzip is recognised from its own magic bytes, whatever the file is called.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib

import numpy as np

__all__ = ["IdxError", "ChecksumError", "read_idx", "read_bytes", "parse_idx", "idx_header", "sha256_of"]

# Element type codes of the IDX format and their big-endian dtypes.
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


class IdxError(ValueError):
    """A file that is not a well-formed IDX file (or not a readable gzip stream)."""


class ChecksumError(ValueError):
    """A file whose decompressed content does not have the expected SHA-256."""


def read_bytes(path, limit: int | None = None, name: str | None = None) -> bytes:
    """The content of `path`, gunzipped when it is gzip; IdxError for a broken gzip stream.

    `limit` caps the decompressed size (a guard against decompression bombs from a mirror);
    `name` is what error messages call the file (default: the path).
    """
    with open(path, "rb") as f:
        raw = f.read()
    path = os.fspath(path) if name is None else name
    if raw[:2] != GZIP_MAGIC:
        if limit is not None and len(raw) > limit:
            raise IdxError(f"{path}: {len(raw):,} bytes, more than the {limit:,} expected")
        return raw
    try:
        with gzip.GzipFile(fileobj=_BytesReader(raw)) as g:
            data = g.read() if limit is None else g.read(limit + 1)
    except EOFError as e:
        raise IdxError(f"{path}: truncated gzip stream ({e}); the file is incomplete") from e
    except (OSError, zlib.error) as e:
        raise IdxError(f"{path}: corrupt gzip stream ({e})") from e
    if limit is not None and len(data) > limit:
        raise IdxError(f"{path}: decompresses to more than the {limit:,} bytes expected")
    return data


class _BytesReader:
    """Minimal file object over bytes, so GzipFile reads without copying into BytesIO."""

    def __init__(self, data: bytes):
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._view) if n is None or n < 0 else min(len(self._view), self._pos + n)
        out = self._view[self._pos:end].tobytes()
        self._pos = end
        return out

    def close(self) -> None:
        pass


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array of native byte order; IdxError naming `name` if malformed."""
    if len(data) < 4:
        raise IdxError(f"{name}: {len(data)} bytes, too short for the 4-byte IDX magic number")
    if data[0] != 0 or data[1] != 0:
        magic = int.from_bytes(data[:4], "big")
        raise IdxError(
            f"{name}: wrong magic number 0x{magic:08x}; an IDX file starts with 0x0000TTNN "
            "(TT the type code, NN the number of dimensions)"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_TYPES)
        raise IdxError(f"{name}: unknown IDX element type code 0x{code:02x} (known: {known})")
    if ndim == 0:
        raise IdxError(f"{name}: the IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{name}: {len(data)} bytes, too short for the header of a {ndim}-D IDX file")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_TYPES[code]
    need = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    have = len(data) - header
    if have != need:
        what = "truncated" if have < need else "has trailing bytes"
        raise IdxError(
            f"{name}: {what}: dimensions {dims} of {dtype.newbyteorder('=').name} need {need:,} data "
            f"bytes, the file holds {have:,}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path) -> np.ndarray:
    """Read an IDX file (raw or .gz) into a NumPy array, validating magic, type, dims and size.

    Raises IdxError naming the file and the problem: truncated gzip, wrong magic number, unknown
    element type, a byte count that does not match the dimensions.
    """
    path = os.fspath(path)
    return parse_idx(read_bytes(path), path)


def idx_header(arr: np.ndarray) -> bytes:
    """The IDX header that an array of this dtype and shape had in its file."""
    native = {dt.newbyteorder("="): code for code, dt in IDX_TYPES.items()}
    code = native.get(arr.dtype.newbyteorder("="))
    if code is None or arr.ndim == 0 or arr.ndim > 255:
        raise IdxError(f"no IDX encoding for an array of dtype {arr.dtype} and shape {arr.shape}")
    return bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)


def sha256_of(arr: np.ndarray) -> str:
    """SHA-256 of the IDX content the array came from (header + big-endian elements).

    Lets a cache of decoded arrays be checked against the digests of the original files.
    """
    h = hashlib.sha256(idx_header(arr))
    big = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder(">"))
    h.update(big.reshape(-1).view(np.uint8))
    return h.hexdigest()
