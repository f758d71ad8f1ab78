"""The IDX file format of MNIST: reading, validating, checksumming.

An IDX file is a 4-byte magic number `00 00 TT NN` (TT the element type code, NN the number of
dimensions), NN big-endian uint32 sizes, then the elements in big-endian C order. Files may be
gzip-compressed; gzip is recognised from its own magic bytes, whatever the file is called.

Every read is bounded before the bytes are held: only regular files are opened (a FIFO or a
device could block or never end), a raw file's size is checked before it is read, and gzip is
decompressed in chunks that stop at the cap, so a decompression bomb costs no more memory
than the cap it is read with.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import math
import os
import zlib

import numpy as np

from fnnet.io import TooLargeError, open_regular

__all__ = [
    "IdxError", "IdxTooLargeError", "ChecksumError", "read_idx", "read_bytes", "parse_idx", "idx_header",
    "sha256_of", "MAX_IDX_BYTES",
]

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
# The most IDX content (header + data, decompressed) that `read_idx` and `read_bytes` read unless
# told otherwise: 1 GiB, over 20 times the largest MNIST file (47,040,016 bytes).
MAX_IDX_BYTES = 2**30
CHUNK_BYTES = 2**20  # gzip is decompressed, and files are read, this much at a time


class IdxError(ValueError):
    """A file that is not a well-formed IDX file (or not a readable gzip stream)."""


class IdxTooLargeError(IdxError, TooLargeError):
    """An IDX file, or what it decompresses to, larger than the cap it is read with."""


class ChecksumError(ValueError):
    """A file whose decompressed content does not have the expected SHA-256."""


@contextlib.contextmanager
def _gzip_errors(name: str, gz: bool = True):
    """Turn the errors of a broken gzip stream into IdxError naming the file."""
    if not gz:
        yield
        return
    try:
        yield
    except EOFError as e:
        raise IdxError(f"{name}: truncated gzip stream ({e}); the file is incomplete") from e
    except (OSError, zlib.error) as e:
        raise IdxError(f"{name}: corrupt gzip stream ({e})") from e


def read_bytes(path, limit: int = MAX_IDX_BYTES, name: str | None = None, *, exact: bool = False,
               fn: str = "read_bytes") -> bytes:
    """The content of `path`, gunzipped when it is gzip: at most `limit` bytes of it.

    The cap is checked before the bytes are held: a raw file's size (from fstat) before it is
    read, gzip content chunk by chunk while it is decompressed, so a decompression bomb from a
    mirror stops one byte past `limit`. With `exact`, the content must be exactly `limit` bytes
    (a raw file of another size is not read). Only a regular file is opened
    (NotARegularFileError otherwise). Raises IdxTooLargeError past the cap, IdxError for
    another size or a broken gzip stream; `name` is what messages call the file (default: the
    path), `fn` the function they name.
    """
    f, size = open_regular(path, fn=fn, what="file")
    name = os.fspath(path) if name is None else name
    with f:
        gz = f.read(2) == GZIP_MAGIC
        f.seek(0)
        if not gz:
            if size > limit:
                raise IdxTooLargeError(f"{fn}: {name} is {size:,} bytes, more than the {limit:,} "
                                       f"{'expected' if exact else 'allowed'}; refusing to read it")
            if exact and size != limit:
                raise IdxError(f"{fn}: {name} is {size:,} bytes, not the {limit:,} expected; "
                               "refusing to read it")
            data = f.read(limit + 1)
            if len(data) > limit:
                raise IdxTooLargeError(f"{fn}: {name} grew past {limit:,} bytes while it was read")
        else:
            out = io.BytesIO()
            with _gzip_errors(name), gzip.GzipFile(fileobj=f) as g:
                while chunk := g.read(min(CHUNK_BYTES, limit + 1 - out.tell())):
                    out.write(chunk)
                    if out.tell() > limit:
                        raise IdxTooLargeError(f"{fn}: {name} decompresses to more than the {limit:,} bytes "
                                               f"{'expected' if exact else 'allowed'}; stopped there")
            data = out.getvalue()
    if exact and len(data) != limit:
        what = "decompresses to" if gz else "is"
        raise IdxError(f"{fn}: {name} {what} {len(data):,} bytes, not the {limit:,} expected; refusing it")
    return data


def _magic(data: bytes, name: str) -> tuple[np.dtype, int]:
    """(element dtype, number of dimensions) from the first bytes of an IDX file."""
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
    return IDX_TYPES[code], ndim


def _dims(data: bytes, ndim: int, name: str, size: int | None = None) -> tuple[int, ...]:
    """The sizes in the header at the start of `data` (`size`: the file's length, if known)."""
    if len(data) < 4 + 4 * ndim:
        have = len(data) if size is None else size
        raise IdxError(f"{name}: {have} bytes, too short for the header of a {ndim}-D IDX file")
    return tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))


def _check_length(name: str, dims: tuple, dtype: np.dtype, need: int, have: int | None) -> None:
    """IdxError unless `have` data bytes (None: more than `need`) are what `dims` need."""
    if have == need:
        return
    what = "truncated" if have is not None and have < need else "has trailing bytes"
    holds = "more" if have is None else f"{have:,}"
    raise IdxError(
        f"{name}: {what}: dimensions {dims} of {dtype.newbyteorder('=').name} need {need:,} data "
        f"bytes, the file holds {holds}"
    )


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array of native byte order; IdxError naming `name` if malformed."""
    dtype, ndim = _magic(data, name)
    dims = _dims(data, ndim, name)
    header = 4 + 4 * ndim
    need = math.prod(dims) * dtype.itemsize
    _check_length(name, dims, dtype, need, len(data) - header)
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _read_upto(src, n: int) -> bytes:
    """Up to `n` bytes of `src`, fewer only at its end."""
    parts, left = [], n
    while left > 0 and (part := src.read(min(left, CHUNK_BYTES))):
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _read_into(src, buf: np.ndarray) -> int:
    """Fill the uint8 array `buf` from `src` chunk by chunk; the number of bytes read."""
    view = memoryview(buf)
    got = 0
    while got < len(view):
        n = src.readinto(view[got: got + CHUNK_BYTES])
        if not n:
            break
        got += n
    return got


def read_idx(path, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file (raw or .gz) into a NumPy array, validating magic, type, dims and size.

    At most `max_bytes` of IDX content (header + data, decompressed; default `MAX_IDX_BYTES`,
    1 GiB) are read: the header is read first, and the size it declares is checked against the
    cap, and for a raw file against the file's size, before any data is read; gzip is
    decompressed in chunks into an array of the declared size, so neither a huge file nor a
    decompression bomb is loaded. Only regular files are opened (NotARegularFileError for a
    FIFO, a device or a folder). Raises IdxError naming the file and the problem: truncated
    gzip, wrong magic number, unknown element type, a byte count that does not match the
    dimensions; IdxTooLargeError (also a TooLargeError) past the cap.
    """
    path = os.fspath(path)
    f, size = open_regular(path, fn="read_idx", what="IDX file")
    with f:
        gz = f.read(2) == GZIP_MAGIC
        f.seek(0)
        with _gzip_errors(path, gz), (gzip.GzipFile(fileobj=f) if gz else contextlib.nullcontext(f)) as src:
            head = _read_upto(src, 4)
            dtype, ndim = _magic(head, path)
            head += _read_upto(src, 4 * ndim)
            dims = _dims(head, ndim, path, None if gz else size)
            need = math.prod(dims) * dtype.itemsize
            total = len(head) + need
            if total > max_bytes:
                raise IdxTooLargeError(
                    f"read_idx: {path}: the header declares dimensions {dims} of "
                    f"{dtype.newbyteorder('=').name}, {total:,} bytes, more than the {max_bytes:,} allowed "
                    "(max_bytes); refusing to read it"
                )
            if not gz:
                _check_length(path, dims, dtype, need, size - len(head))
            buf = np.empty(need, np.uint8)
            got = _read_into(src, buf)
            if got == need and src.read(1):
                got = None  # more than the header declares
            _check_length(path, dims, dtype, need, got)
    arr = buf.view(dtype).reshape(dims)
    if not dtype.isnative:
        arr = arr.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return arr


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
