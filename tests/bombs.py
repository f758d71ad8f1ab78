"""Hostile files for the read-limit tests: zip bombs and sparse files, made in about a second.

A zip bomb here is a real .npz: its member is an .npy header and `size` zero bytes, deflated.
After a full flush, deflate compresses 16 MiB of zeros to the same 16 kB block every time, so
the stream is that block repeated (3.2 GB of content in 3.1 MB), with a correct CRC and sizes.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib

import numpy as np

CHUNK = 1 << 24


def _npy_header(n_floats: int) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (n_floats,)})
    return buf.getvalue()


def _member(n_floats: int) -> tuple[bytes, int, int]:
    """(deflated bytes, crc32, uncompressed size) of an .npy of n_floats float32 zeros."""
    header = _npy_header(n_floats)
    nbytes = 4 * n_floats
    assert nbytes % CHUNK == 0, "sizes are whole multiples of 16 MiB"
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(CHUNK)) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.flush(zlib.Z_FINISH)
    crc = zlib.crc32(header)
    zeros = bytes(CHUNK)
    for _ in range(nbytes // CHUNK):
        crc = zlib.crc32(zeros, crc)
    return head + block * (nbytes // CHUNK) + tail, crc, len(header) + nbytes


def zip_bomb(members: dict) -> bytes:
    """An .npz (bytes) whose members name -> number of float32 zeros (a multiple of 4 Mi)."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, n_floats in members.items():
        data, crc, size = _member(n_floats)
        raw = name.encode()
        offset = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(raw),
                              0))
        out.write(raw + data)
        central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data),
                                  size, len(raw), 0, 0, 0, 0, 0, offset) + raw)
    cd = central.getvalue()
    start = out.tell()
    out.write(cd)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(cd), start, 0))
    return out.getvalue()


def sparse_file(path, size: int, head: bytes = b"") -> None:
    """A file of `size` bytes that starts with `head` and takes no disk space beyond it."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)


_HWM = ("next(int(line.split()[1]) for line in open('/proc/self/status') "
        "if line.startswith('VmHWM:')) / 1024")


def peak_rss_run(code: str, timeout: float = 120, env=None) -> dict:
    """Run `code` in a fresh Python; it must set `result` (a JSON-able dict). Returns that dict with
    'peak_mb', the process's peak resident memory: VmHWM of /proc/self/status (getrusage's
    ru_maxrss would carry over the parent's peak across fork and exec)."""
    wrapper = (code + "\nimport json\nresult['peak_mb'] = " + _HWM + "\nprint(json.dumps(result))\n")
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=timeout,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
