"""Bounded data reads: caps checked before bytes are held, only regular files, download deadlines.

The memory bombs run in a child process that reports its peak resident memory, so a regression
shows as a number (and cannot take the test process down with it).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_datasets import synthetic_mnist

from fnnet.datasets import MNIST_FILES, MNIST_SHA256, MNISTNotFoundError, load_mnist
from fnnet.datasets import mnist as mnist_module

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = MNIST_FILES
ROOT = Path(__file__).resolve().parents[1]
PEAK_RSS_MIB = 500  # a bomb may cost no more than this, the interpreter and its imports included
BOMB_MIB = 3300  # the gzip and zip bombs decompress to this many MiB (3.46 GB) of zeros, and a header
DEADLINE_TEXT = "not complete after 2 s ("


# ---------------------------------------------------------------- helpers




def cache_name(digests: dict) -> str:
    """The decoded cache's file name for a table of digests (as load_mnist names it)."""
    return f"mnist-{hashlib.sha256(''.join(digests[s] for s in MNIST_FILES).encode()).hexdigest()[:12]}.npz"


def sparse_idx(path, n_images: int) -> int:
    """A raw IDX file of `n_images` 28x28 images whose data is a hole (no disk used); its size."""
    size = 16 + n_images * 28 * 28
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">III", n_images, 28, 28))
        f.truncate(size)
    return size


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def deflate_bomb(prefix: bytes, zeros_mib: int) -> tuple[bytes, int, int]:
    """A raw deflate stream of `prefix` then `zeros_mib` MiB of zeros, built in about a second:
    after a full flush the compressor starts afresh, so each MiB of zeros compresses to the same
    bytes and the stream is that block repeated. Returns (stream, decompressed size, CRC-32)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(2**20)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH) == block
    stream = head + block * zeros_mib + c.flush(zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    big = bytes(16 * 2**20)
    for _ in range(zeros_mib // 16):
        crc = zlib.crc32(big, crc)
    crc = zlib.crc32(bytes((zeros_mib % 16) * 2**20), crc)
    return stream, len(prefix) + zeros_mib * 2**20, crc


def gzip_bomb(path, prefix: bytes, zeros_mib: int) -> int:
    """A valid .gz file of `prefix` then `zeros_mib` MiB of zeros; its decompressed size."""
    stream, size, crc = deflate_bomb(prefix, zeros_mib)
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + stream + struct.pack("<II", crc, size % 2**32))
    return size


def zip_archive(members: dict) -> bytes:
    """A zip archive of deflated members: name -> (deflate stream, size, CRC-32)."""
    out, central = bytearray(), bytearray()
    for name, (stream, size, crc) in members.items():
        raw = name.encode()
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(stream),
                               size, len(raw), 0, 0, 0, 0, 0, len(out)) + raw
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(stream), size, len(raw), 0)
        out += raw + stream
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0)
    return bytes(out + central + end)


def npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def child_env(tmp_path) -> dict:
    """The test's environment without FNNET_DATA_DIR, with a private cache; fnnet importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("FNNET_DATA_DIR", "FNNET_MNIST_MIRRORS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    env["JAX_PLATFORMS"] = "cpu"
    return env


CHILD = """
import json, sys, warnings
args = json.loads(sys.argv[1])
caught = []
def report(result=None, error=None):
    print(json.dumps({
        "result": result, "error": type(error).__name__ if error else None,
        "errors": [c.__name__ for c in type(error).__mro__] if error else [], "message": str(error or ""),
        "warnings": caught, "peak_mib": next(int(line.split()[1]) for line in open("/proc/self/status")
                                 if line.startswith("VmHWM:")) / 1024,
    }))
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    try:
        result = run(**args)
    except Exception as e:
        caught += [str(x.message) for x in w]
        report(error=e)
    else:
        caught += [str(x.message) for x in w]
        report(result=result)
"""


def in_child(tmp_path, body: str, timeout: float = 120, **args) -> dict:
    """Run `body` (which defines `run(**args)`) in a fresh interpreter; its outcome and peak RSS."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", body + CHILD, json.dumps(args)], capture_output=True,
                          text=True, timeout=timeout, env=child_env(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["seconds"] = time.monotonic() - start
    return out


def call_with_timeout(fn, timeout: float) -> dict:
    """Call `fn` in a daemon thread; {'value': ...} or {'error': ...}, failing if it blocks."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # handed back to the test
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still blocked after {timeout} s"
    return box


def tried_lines(message: str) -> list[str]:
    return [line[4:] for line in message.splitlines() if line.startswith("  - ")]


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No data dir, mirrors or proxies from the outside; a private user cache."""
    for var in ("FNNET_DATA_DIR", "FNNET_MNIST_MIRRORS", "FNNET_MNIST_DEADLINE", "http_proxy", "HTTP_PROXY",
                "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


# ---------------------------------------------------------------- memory bombs


def test_huge_raw_file_in_the_data_folder_is_refused_by_its_size(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    size = sparse_idx(data / TRAIN_IMAGES, 4_000_000)  # 3.1 GB claimed, no disk used
    gzip_bomb(data / (TRAIN_LABELS + ".gz"), bytes([0, 0, 8, 1]) + struct.pack(">I", 60_000), 200)  # 210 MB
    out = in_child(tmp_path, """
from fnnet.datasets.mnist import load_mnist_arrays
def run(data, cache):
    load_mnist_arrays(data_dir=data, cache_dir=cache, download=False, progress=False)
""", data=str(data), cache=str(tmp_path / "cache"))
    assert out["error"] == "MNISTNotFoundError", out
    lines = tried_lines(out["message"])
    images, labels_gz = data / TRAIN_IMAGES, data / (TRAIN_LABELS + ".gz")
    assert f"data_dir={data}: load_mnist: {images} is {size:,} bytes, more than the 47,040,016 expected; " \
           "refusing to read it" in lines
    assert f"data_dir={data}: load_mnist: {labels_gz} decompresses to more than the 60,008 bytes expected; " \
           "stopped there" in lines
    assert out["peak_mib"] < PEAK_RSS_MIB, out


def test_read_idx_refuses_a_huge_raw_file_before_reading_it(tmp_path):
    size = sparse_idx(tmp_path / "huge-idx3-ubyte", 4_000_000)
    out = in_child(tmp_path, """
from fnnet.datasets.idx import read_idx
def run(path):
    read_idx(path)
""", path=str(tmp_path / "huge-idx3-ubyte"))
    assert out["error"] == "IdxTooLargeError" and {"IdxError", "TooLargeError"} <= set(out["errors"]), out
    assert f"(4000000, 28, 28) of uint8, {size:,} bytes, more than the 1,073,741,824 allowed" \
        in out["message"]
    assert out["peak_mib"] < PEAK_RSS_MIB, out


def test_read_idx_gzip_bombs_stop_at_the_header_or_the_declared_size(tmp_path):
    start = time.monotonic()
    header = bytes([0, 0, 8, 3]) + struct.pack(">III", BOMB_MIB, 1024, 1024)  # says what follows
    honest = gzip_bomb(tmp_path / "honest.gz", header, BOMB_MIB)
    header = bytes([0, 0, 8, 3]) + struct.pack(">III", 60_000, 28, 28)  # says 47 MB, 3.46 GB follow
    gzip_bomb(tmp_path / "lying.gz", header, BOMB_MIB)
    built = time.monotonic() - start
    assert built < 30 and (tmp_path / "honest.gz").stat().st_size < 5 * 2**20
    out = in_child(tmp_path, """
from fnnet.datasets.idx import read_idx
def run(paths):
    errors = []
    for path in paths:
        try:
            read_idx(path)
        except ValueError as e:
            errors.append([type(e).__name__, str(e)])
    return errors
""", paths=[str(tmp_path / n) for n in ("honest.gz", "lying.gz")])
    (honest_type, honest_msg), (lying_type, lying_msg) = out["result"]
    assert honest_type == "IdxTooLargeError"
    assert f"{honest:,} bytes, more than the 1,073,741,824 allowed" in honest_msg
    assert lying_type == "IdxError" and "has trailing bytes" in lying_msg and "holds more" in lying_msg
    assert out["peak_mib"] < PEAK_RSS_MIB, out
    assert out["seconds"] < 60, out


def test_decoded_cache_zip_bomb_is_refused_before_decompressing_and_rebuilt(tmp_path):
    arrays, contents, digests = synthetic_mnist()
    data = tmp_path / "data"
    data.mkdir()
    for stem, blob in contents.items():
        (data / stem).write_bytes(blob)
    cache = tmp_path / "cache"
    cache.mkdir()
    buf = io.BytesIO()  # the .npy header of a 3.46 GB uint8 array, whose zeros follow
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False,
                                               "shape": (BOMB_MIB * 2**20,)})
    members = {"version.npy": npy_bytes(np.int64(1)),
               "digests.npy": npy_bytes(np.array([digests[s] for s in MNIST_FILES]))}
    members.update({f"{s}.npy": npy_bytes(a) for s, a in arrays.items() if s != TRAIN_IMAGES})
    zipped = {n: (deflate(b), len(b), zlib.crc32(b)) for n, b in members.items()}
    zipped[f"{TRAIN_IMAGES}.npy"] = deflate_bomb(buf.getvalue(), BOMB_MIB)
    npz = cache / cache_name(digests)
    npz.write_bytes(zip_archive(zipped))
    bomb_size = npz.stat().st_size
    out = in_child(tmp_path, """
from fnnet.datasets.mnist import load_mnist_arrays
def run(data, cache, digests):
    arrays = load_mnist_arrays(data_dir=data, cache_dir=cache, sha256=digests, download=False, progress=False)
    return {k: list(v.shape) for k, v in arrays.items()}
""", data=str(data), cache=str(cache), digests=digests)
    assert out["error"] is None and out["result"][TRAIN_IMAGES] == [12, 28, 28], out
    (warning,) = [w for w in out["warnings"] if "rejecting the cache" in w]
    assert "would decompress to" in warning and "refusing to decompress it" in warning
    assert out["peak_mib"] < PEAK_RSS_MIB, out
    # rebuilt from the verified files: a small, ordinary archive holding them
    assert npz.stat().st_size < bomb_size
    with np.load(npz) as z:
        np.testing.assert_array_equal(z[TRAIN_IMAGES], arrays[TRAIN_IMAGES])


# ---------------------------------------------------------------- only regular files


def test_fifo_and_device_links_are_refused_promptly_with_the_reason(env):
    data, cache = env / "data", env / "cache"
    data.mkdir()
    cache.mkdir()
    images, labels_gz = data / TRAIN_IMAGES, data / (TRAIN_LABELS + ".gz")
    npz = cache / cache_name(MNIST_SHA256)
    os.mkfifo(images)
    os.symlink("/dev/zero", labels_gz)
    os.mkfifo(npz)
    with pytest.warns(UserWarning, match="not a regular file"):
        box = call_with_timeout(lambda: load_mnist(data_dir=data, cache_dir=cache, download=False), 20)
    assert isinstance(box.get("error"), MNISTNotFoundError), box
    lines = tried_lines(str(box["error"]))
    assert f"decoded cache {npz}: rejected (load_mnist: decoded cache {npz} is a FIFO (named pipe), not a " \
           "regular file; refusing to read it); it will be rebuilt" in lines
    assert f"data_dir={data}: load_mnist: file {images} is a FIFO (named pipe), not a regular file; " \
           "refusing to read it" in lines
    assert f"data_dir={data}: load_mnist: file {labels_gz} is a character device, not a regular file; " \
           "refusing to read it" in lines
    assert f"data_dir={data}: no {TEST_IMAGES}, {TEST_LABELS} in the folder (raw or .gz)" in lines


# ---------------------------------------------------------------- download deadline


class TrickleHandler(http.server.BaseHTTPRequestHandler):
    """Announces 1,000 bytes, then sends one every 0.5 s (at most 30, so a client without a
    deadline fails too, after 15 s); stops when the server's `stop` event is set."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        try:
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(30):
                if self.server.stop.wait(0.5):
                    break
                self.wfile.write(b"\0")
                self.wfile.flush()
        except OSError:
            pass  # the client gave up
        finally:
            self.close_connection = True
            self.server.done.set()


def test_download_that_trickles_fails_at_the_deadline(env, monkeypatch):
    arrays, contents, digests = synthetic_mnist()
    data = env / "data"
    data.mkdir()
    for stem in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES):
        (data / stem).write_bytes(contents[stem])
    monkeypatch.setattr(mnist_module, "DOWNLOAD_TIMEOUT_S", 2.0)
    monkeypatch.setenv("FNNET_MNIST_DEADLINE", "2")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TrickleHandler)
    server.stop, server.done = threading.Event(), threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    cache = env / "cache"
    try:
        start = time.monotonic()
        with pytest.raises(MNISTNotFoundError) as e:
            load_mnist(data_dir=data, cache_dir=cache, mirrors=[url], sha256=digests, progress=False)
        elapsed = time.monotonic() - start
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert server.done.wait(5) and not thread.is_alive()
    assert elapsed < 10, elapsed
    (line,) = [t for t in tried_lines(str(e.value)) if t.startswith(f"download {url}{TEST_LABELS}.gz")]
    assert f"TimeoutError: {url}{TEST_LABELS}.gz: {DEADLINE_TEXT}" in line and "bytes received)" in line
    assert not list(cache.iterdir())  # the partial download is gone


def test_download_deadline_from_the_environment_must_be_positive(env, monkeypatch):
    for bad in ("0", "-1", "soon", "nan"):
        monkeypatch.setenv("FNNET_MNIST_DEADLINE", bad)
        with pytest.raises(ValueError, match=f"FNNET_MNIST_DEADLINE={bad!r} is not a positive number"):
            load_mnist(cache_dir=env / "cache", mirrors=[], progress=False)


# ---------------------------------------------------------------- FNNET_DATA_DIR, as it is


def test_the_tried_list_says_what_fnnet_data_dir_was(env, monkeypatch):
    (env / "empty").mkdir()
    (env / "a-file").write_bytes(b"not a folder")
    all_four = ", ".join(MNIST_FILES)
    cases = [
        (None, "FNNET_DATA_DIR: not set"),
        ("", "FNNET_DATA_DIR: set to an empty value, so no folder was searched for it"),
        (str(env / "missing"), f"FNNET_DATA_DIR={env / 'missing'}: no such folder"),
        (str(env / "a-file"), f"FNNET_DATA_DIR={env / 'a-file'}: not a folder (a file)"),
        (str(env / "empty"), f"FNNET_DATA_DIR={env / 'empty'}: no {all_four} in the folder (raw or .gz)"),
    ]
    for value, expected in cases:
        if value is None:
            monkeypatch.delenv("FNNET_DATA_DIR", raising=False)
        else:
            monkeypatch.setenv("FNNET_DATA_DIR", value)
        with pytest.raises(MNISTNotFoundError) as e:
            load_mnist(cache_dir=env / "cache", download=False)
        about_env = [t for t in tried_lines(str(e.value)) if t.startswith("FNNET_DATA_DIR")]
        assert about_env == [expected], (value, about_env)

    monkeypatch.delenv("FNNET_DATA_DIR")
    with pytest.raises(MNISTNotFoundError) as e:
        load_mnist(data_dir="", cache_dir=env / "cache", download=False)
    assert "data_dir: an empty path, so no folder was searched for it" in tried_lines(str(e.value))
