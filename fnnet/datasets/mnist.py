"""MNIST with the book's `load_mnist` API, from verified local, cached or downloaded files.

Where the data comes from, in order:

1. the decoded-array cache `<cache>/mnist-<tag>.npz`, written after the first verified load;
   on every read its arrays are checked against the SHA-256 digests of the original files
   (the IDX content is header + elements, so it can be rebuilt from the arrays), so a truncated
   or altered cache is rejected and rebuilt, never trusted;
2. the four IDX files (raw or .gz, `train-images-idx3-ubyte` or `train-images.idx3-ubyte`
   style) in `data_dir`, then in `$FNNET_DATA_DIR`, then in the user cache folder
   (`$XDG_CACHE_HOME/fnnet` or `~/.cache/fnnet`);
3. a download of the missing files from `MNIST_MIRRORS` (tried in turn, with a timeout per read,
   one deadline per file for the whole fetch, and a progress bar) into the user cache folder.

Every file is verified by the SHA-256 of its decompressed content before it is used; a file
that fails is skipped (with a warning) and neither used nor cached. Downloads and the cache are
written under a temporary name and renamed only when complete and verified.

Every read is bounded before the bytes are held: only regular files are read (a FIFO or a link
to a device is skipped with the reason), a raw IDX file must have the size of its MNIST file
(`MNIST_BYTES`), a .gz is decompressed up to that size and no further, and the cache's members
must fit in the sizes of the four files before anything of it is decompressed.
"""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import socket
import stat
import tempfile
import threading
import urllib.parse
import urllib.request
import warnings
import zipfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fnnet.datasets.idx import ChecksumError, IdxError, parse_idx, read_bytes, sha256_of
from fnnet.io import (
    atomic_write,
    check_npz_members,
    open_regular,
    remove_stale_temporaries,
    temp_file,
)

__all__ = [
    "MNIST_FILES", "MNIST_SHA256", "MNIST_BYTES", "MNIST_MIRRORS", "MNISTNotFoundError", "load_mnist",
    "load_mnist_arrays", "default_cache_dir", "one_hot",
]

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
MNIST_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# SHA-256 of the decompressed IDX files (the gzip bytes differ between mirrors; the content does not).
MNIST_SHA256 = {
    TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# Size in bytes of the decompressed IDX files (header + data): a raw file of another size is not
# read, and a .gz is decompressed up to this size and no further.
MNIST_BYTES = {TRAIN_IMAGES: 47_040_016, TRAIN_LABELS: 60_008, TEST_IMAGES: 7_840_016, TEST_LABELS: 10_008}

# Public mirrors of the four `<name>.gz` files, tried in this order. The environment variable
# FNNET_MNIST_MIRRORS (comma-separated base URLs, file:// allowed) or `mirrors=` replaces the list.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
ENV_DATA_DIR = "FNNET_DATA_DIR"
ENV_MIRRORS = "FNNET_MNIST_MIRRORS"
ENV_DEADLINE = "FNNET_MNIST_DEADLINE"
DOWNLOAD_TIMEOUT_S = 30.0  # the longest wait for the connection or for one read of a download
# The longest one file's download from one mirror may take, all of it: the name lookup, the
# connection, the status line, the headers and the body (10 minutes is 80 kB/s for the 9.9 MB of
# the largest .gz). A mirror that trickles any of them fails at this deadline too.
# FNNET_MNIST_DEADLINE (seconds) replaces it.
DOWNLOAD_DEADLINE_S = 600.0
ABANDON_WAIT_S = 1.0  # how long an abandoned fetch is given to end once its connection is shut
# The most bytes of one downloaded file, and of one decompressed file of an IDX set other than
# MNIST itself (`sha256=`); the largest MNIST file is 47,040,016 bytes decompressed.
MAX_FILE_BYTES = 64 * 2**20
CACHE_MARGIN_BYTES = 2**20  # the cache's .npy headers, version and digests, beyond the four arrays
CACHE_VERSION = 1


class MNISTNotFoundError(FileNotFoundError):
    """No verified copy of MNIST anywhere: the message lists every place tried."""


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/fnnet`, or `~/.cache/fnnet` when XDG_CACHE_HOME is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fnnet"


def one_hot(t, num_classes: int = 10) -> np.ndarray:
    """int labels (N,) -> float32 one-hot (N, num_classes)."""
    t = np.asarray(t)
    out = np.zeros((t.shape[0], num_classes), dtype=np.float32)
    out[np.arange(t.shape[0]), t] = 1.0
    return out


def load_mnist(normalize=True, flatten=True, one_hot_label=False, *, data_dir=None, cache_dir=None,
               mirrors=None, download=True, sha256=None, progress=True):
    """MNIST as `((x_train, t_train), (x_test, t_test))` NumPy arrays, like the book.

    x: (N, 784) when `flatten`, else (N, 1, 28, 28); float32 in [0, 1] when `normalize`, else
    uint8 0..255. t: int32 labels (N,), or float32 one-hot (N, 10) when `one_hot_label`.
    N is 60,000 for training and 10,000 for testing.

    A decoded-array cache in `cache_dir` that matches the digests is used first (it holds exactly
    what any verified copy of the files gives). Otherwise `data_dir` is the first folder searched
    for the files, then `$FNNET_DATA_DIR`, then `cache_dir` (default `default_cache_dir()`), then
    a download from `mirrors` (default `$FNNET_MNIST_MIRRORS` or `MNIST_MIRRORS`) unless
    `download=False`. `sha256` replaces the
    table of expected digests (file stem -> hex digest), for IDX sets other than MNIST itself.
    Raises MNISTNotFoundError listing every place tried when no verified copy is found.
    """
    raw = load_mnist_arrays(data_dir=data_dir, cache_dir=cache_dir, mirrors=mirrors, download=download,
                            sha256=sha256, progress=progress)
    train = _format(raw[TRAIN_IMAGES], raw[TRAIN_LABELS], normalize, flatten, one_hot_label)
    test = _format(raw[TEST_IMAGES], raw[TEST_LABELS], normalize, flatten, one_hot_label)
    return train, test


def _format(x, t, normalize, flatten, one_hot_label):
    n = x.shape[0]
    x = x.reshape((n, -1) if flatten else (n, 1) + x.shape[1:])
    if normalize:
        x = x.astype(np.float32)
        x /= 255.0
    t = one_hot(t) if one_hot_label else t.astype(np.int32)
    return x, t


def load_mnist_arrays(*, data_dir=None, cache_dir=None, mirrors=None, download=True, sha256=None,
                      progress=True) -> dict:
    """The four verified IDX arrays as uint8, keyed by file stem (see `load_mnist` for the search)."""
    digests = dict(MNIST_SHA256 if sha256 is None else sha256)
    missing_keys = [s for s in MNIST_FILES if s not in digests]
    if missing_keys:
        raise KeyError(f"load_mnist: sha256 has no digest for {', '.join(missing_keys)}")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tag = hashlib.sha256("".join(digests[s] for s in MNIST_FILES).encode()).hexdigest()[:12]
    npz_path = cache_dir / f"mnist-{tag}.npz"
    tried: list[str] = []

    remove_stale_temporaries(npz_path.parent)
    arrays = _read_cache(npz_path, digests, tried)
    if arrays is not None:
        return arrays

    places = []
    if data_dir is not None and os.fspath(data_dir) == "":
        tried.append("data_dir: an empty path, so no folder was searched for it")
    elif data_dir is not None:
        places.append((f"data_dir={data_dir}", Path(data_dir)))
    env = os.environ.get(ENV_DATA_DIR)
    if env is None:
        tried.append(f"{ENV_DATA_DIR}: not set")
    elif env == "":
        tried.append(f"{ENV_DATA_DIR}: set to an empty value, so no folder was searched for it")
    else:
        places.append((f"{ENV_DATA_DIR}={env}", Path(env)))
    places.append((f"user cache {cache_dir}", cache_dir))

    arrays, sources = {}, {}
    for label, folder in places:
        todo = [s for s in MNIST_FILES if s not in arrays]
        if not todo:
            break
        problem = _folder_problem(folder)
        if problem:
            tried.append(f"{label}: {problem}")
            continue
        absent = []
        for stem in todo:
            paths = _candidates(folder, stem)
            if not paths:
                absent.append(stem)
            for path in paths:
                try:
                    arrays[stem] = _read_local(path, stem, digests)
                except (OSError, IdxError, ChecksumError) as e:
                    tried.append(f"{label}: {e}")
                    warnings.warn(f"load_mnist: skipping {path}: {e}", stacklevel=3)
                    continue
                sources[stem] = str(path)
                break
        if absent:
            tried.append(f"{label}: no {', '.join(absent)} in the folder (raw or .gz)")

    todo = [s for s in MNIST_FILES if s not in arrays]
    if todo and download:
        deadline_s = _deadline_s()
        mirror_list = _mirror_list(mirrors)
        if not mirror_list:
            tried.append("download: the mirror list is empty")
        for stem in todo:
            for base in mirror_list:
                url = base.rstrip("/") + "/" + stem + ".gz"
                try:
                    arrays[stem] = _download(url, cache_dir, stem, digests, progress, deadline_s)
                except Exception as e:  # any failure moves on to the next mirror
                    tried.append(f"download {url}: {type(e).__name__}: {e}")
                    continue
                sources[stem] = url
                break
    elif todo:
        tried.append("download: disabled (download=False)")

    todo = [s for s in MNIST_FILES if s not in arrays]
    if todo:
        raise MNISTNotFoundError(_not_found_message(todo, tried))

    for images, labels in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        if arrays[images].shape[0] != arrays[labels].shape[0]:
            raise IdxError(
                f"{sources[images]} holds {arrays[images].shape[0]:,} images but {sources[labels]} "
                f"holds {arrays[labels].shape[0]:,} labels"
            )
    _write_cache(npz_path, arrays, digests)
    return arrays


def _folder_problem(folder: Path) -> str | None:
    """Why `folder` cannot be searched (no such folder, not a folder, ...), or None if it can."""
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        return "no such folder"
    except OSError as e:
        return f"cannot be examined ({e.strerror or e})"
    if not stat.S_ISDIR(st.st_mode):
        return f"not a folder ({'a file' if stat.S_ISREG(st.st_mode) else 'a special file'})"
    if not os.access(folder, os.X_OK):
        return "a folder that cannot be searched (no permission)"
    return None


def _candidates(folder: Path, stem: str) -> list[Path]:
    """Entries for `stem` in `folder` (both naming styles, raw and .gz), of any kind: a FIFO or a
    link to a device is listed too, so that reading it is refused with the reason."""
    dotted = stem.replace("-idx", ".idx")
    names = (stem, stem + ".gz", dotted, dotted + ".gz")
    return [folder / n for n in names if os.path.lexists(folder / n)]


def _expected_bytes(stem: str, digests: dict) -> int | None:
    """The decompressed size of `stem` when its digest is MNIST's own, else None (unknown)."""
    return MNIST_BYTES[stem] if digests[stem] == MNIST_SHA256.get(stem) else None


def _read_local(path: Path, stem: str, digests: dict) -> np.ndarray:
    """The verified array of a regular file `path`: a raw file must have the expected size before
    it is read, a .gz is decompressed up to it (MAX_FILE_BYTES when the size is unknown)."""
    expected = _expected_bytes(stem, digests)
    data = read_bytes(path, expected or MAX_FILE_BYTES, exact=expected is not None, fn="load_mnist")
    return _verified(data, str(path), stem, digests[stem])


def _verified(data: bytes, name: str, stem: str, digest: str) -> np.ndarray:
    """Check the digest, decode, and check the MNIST layout; raise naming the file otherwise."""
    got = hashlib.sha256(data).hexdigest()
    if got != digest:
        raise ChecksumError(
            f"{name}: SHA-256 of the decompressed content is {got}, expected {digest} for {stem}"
        )
    arr = parse_idx(data, name)
    images = "images" in stem
    if arr.dtype != np.uint8 or arr.ndim != (3 if images else 1):
        want = "(N, rows, cols) uint8 images" if images else "(N,) uint8 labels"
        raise IdxError(f"{name}: expected {want}, got shape {arr.shape} of {arr.dtype}")
    if not images and arr.size and arr.max() > 9:
        raise IdxError(f"{name}: labels must be digits 0..9, found {int(arr.max())}")
    return arr


def _mirror_list(mirrors) -> list[str]:
    if mirrors is None:
        env = os.environ.get(ENV_MIRRORS)
        if env is not None:
            return [m.strip() for m in env.split(",") if m.strip()]
        return list(MNIST_MIRRORS)
    if isinstance(mirrors, str):
        return [mirrors]
    return list(mirrors)


def _deadline_s() -> float:
    """The download deadline per file: $FNNET_MNIST_DEADLINE if set, else DOWNLOAD_DEADLINE_S."""
    env = os.environ.get(ENV_DEADLINE, "").strip()
    if not env:
        return DOWNLOAD_DEADLINE_S
    try:
        value = float(env)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"load_mnist: {ENV_DEADLINE}={env!r} is not a positive number of seconds")
    return value


def _download(url: str, cache_dir: Path, stem: str, digests: dict, progress: bool,
              deadline_s: float) -> np.ndarray:
    """Fetch `url` into a temporary file of `cache_dir` within `deadline_s` seconds (see `_fetch`),
    verify it, then rename it into place."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        folder = cache_dir
    except OSError:
        folder = Path(tempfile.mkdtemp(prefix="fnnet-mnist-"))
    fd, tmp = temp_file(folder, stem)
    try:
        with os.fdopen(fd, "wb") as f:
            _fetch(url, f, stem, progress, deadline_s)
            f.flush()
            os.fsync(f.fileno())
        expected = _expected_bytes(stem, digests)
        data = read_bytes(tmp, expected or MAX_FILE_BYTES, name=url, exact=expected is not None,
                          fn="load_mnist")
        arr = _verified(data, url, stem, digests[stem])
        with open(tmp, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        os.replace(tmp, folder / (stem + (".gz" if gz else "")))
        return arr
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fetch(url: str, f, stem: str, progress: bool, deadline_s: float) -> None:
    """Copy `url` into the binary file `f`, all of it within `deadline_s` seconds, or raise
    TimeoutError saying how far it got.

    The fetch runs in a worker thread that this thread waits for until the deadline. A socket
    timeout alone cannot keep it: it bounds each wait, not their sum, so a mirror that sends its
    status line or headers one byte every few seconds (urllib reads them inside `urlopen`) would
    hold the download forever, and neither a name lookup nor a TLS handshake has any deadline of
    its own. The thread bounds all of them at once. At the deadline the connection is shut down,
    so the abandoned thread ends at its next read instead of reading on."""
    job = _Fetch(url)
    worker = threading.Thread(target=job.run, args=(f, stem, progress, min(DOWNLOAD_TIMEOUT_S, deadline_s)),
                              name=f"fnnet-download-{stem}", daemon=True)
    worker.start()
    try:
        worker.join(deadline_s)
    except BaseException:  # Ctrl-C: the fetch stops with this thread
        job.abandon()
        raise
    if worker.is_alive():
        phase, got = job.abandon()
        worker.join(ABANDON_WAIT_S)
        raise TimeoutError(f"{url}: not complete after {deadline_s:g} s ({phase}; {got:,} bytes received); "
                           f"abandoned (the deadline is ${ENV_DEADLINE} or DOWNLOAD_DEADLINE_S)")
    if job.error is not None:
        raise job.error


class _Fetch:
    """One download in a worker thread (`run`), and what the waiting thread needs to abandon it:
    the phase reached, the bytes received and the open connection."""

    def __init__(self, url: str):
        self.url = url
        self.phase = "connecting"
        self.got = 0
        self.error: BaseException | None = None
        self.abandoned = False
        self.sock = None
        self.lock = threading.Lock()

    def connected(self, sock) -> None:
        """Called by the connection once it is made: note its socket (shut at once if abandoned)."""
        with self.lock:
            self.sock = sock
            self.phase = "connected, waiting for the status line and headers"
            if self.abandoned:
                _shut(sock)

    def abandon(self) -> tuple[str, int]:
        """Stop the fetch: shut its connection (so a blocked read returns); (phase, bytes received)."""
        with self.lock:
            self.abandoned = True
            where = self.phase, self.got  # before the shutdown lets the thread move on
            if self.sock is not None:
                _shut(self.sock)
        return where

    def run(self, f, stem: str, progress: bool, timeout: float) -> None:
        """Copy the URL into `f`, each wait at most `timeout` seconds; an error is kept in `error`."""
        try:
            source, total = self._open(timeout)
            with source:
                if total is not None and total > MAX_FILE_BYTES:
                    raise IdxError(f"{self.url}: announces {total:,} bytes, more than "
                                   f"{MAX_FILE_BYTES:,}; not an MNIST file, not downloaded")
                self.phase = "receiving the body"
                read = getattr(source, "read1", source.read)  # what has arrived, without waiting for more
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"{stem}.gz", disable=not progress,
                          leave=False) as bar:
                    while not self.abandoned:
                        chunk = read(1 << 16)
                        if not chunk or self.abandoned:
                            break
                        if self.got + len(chunk) > MAX_FILE_BYTES:
                            raise IdxError(f"{self.url}: more than {MAX_FILE_BYTES:,} bytes, not an MNIST "
                                           "file")
                        f.write(chunk)
                        self.got += len(chunk)
                        bar.update(len(chunk))
                if total is not None and self.got != total and not self.abandoned:
                    raise IdxError(f"{self.url}: received {self.got:,} of {total:,} bytes")
        except BaseException as e:  # handed to the waiting thread
            self.error = e

    def _open(self, timeout: float):
        """(readable, announced size or None) of the URL: the HTTP(S) response, through handlers
        that note the connection; for file:// the file, opened only if it is a regular file (the
        open of a FIFO would block until a writer comes)."""
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise ValueError(f"{self.url}: a file URL on another host ({parts.netloc}); give a local "
                                 "path")
            path = urllib.request.url2pathname(parts.path)
            source, size = open_regular(path, fn="load_mnist", what="mirror file", max_bytes=MAX_FILE_BYTES)
            self.phase = "reading the file"
            return source, size
        opener = urllib.request.build_opener(_HTTPHandler(self), _HTTPSHandler(self))
        response = opener.open(self.url, timeout=timeout)
        size = response.headers.get("Content-Length")
        return response, int(size) if size and size.isdigit() else None


def _noting(connection_class, job: _Fetch):
    """`connection_class` whose connections tell `job` their socket once connected."""

    class Connection(connection_class):
        def connect(self):
            super().connect()
            job.connected(self.sock)

    return Connection


class _HTTPHandler(urllib.request.HTTPHandler):
    """urllib's http:// handler, its connections noted by a `_Fetch`."""

    def __init__(self, job: _Fetch):
        super().__init__()
        self.connection = _noting(http.client.HTTPConnection, job)

    def http_open(self, req):
        return self.do_open(self.connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    """urllib's https:// handler (default TLS checks), its connections noted by a `_Fetch`."""

    def __init__(self, job: _Fetch):
        super().__init__()
        self.connection = _noting(http.client.HTTPSConnection, job)

    def https_open(self, req):
        return self.do_open(self.connection, req, context=self._context)


def _shut(sock) -> None:
    """Shut a socket down for reading and writing: a read blocked on it in another thread returns."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _read_cache(path: Path, digests: dict, tried: list) -> dict | None:
    """The cached arrays if the file exists and every array matches its digest, else None.

    Only a regular file is read, of at most the four files' sizes (plus CACHE_MARGIN_BYTES), and
    its zip directory is checked against that cap before any member is decompressed.
    """
    cap = sum(_expected_bytes(s, digests) or MAX_FILE_BYTES for s in MNIST_FILES) + CACHE_MARGIN_BYTES
    if not os.path.lexists(path):
        tried.append(f"decoded cache {path}: not found")
        return None
    try:
        f, _ = open_regular(path, fn="load_mnist", what="decoded cache", max_bytes=cap)
        with f:
            check_npz_members(f, fn="load_mnist", what="the decoded cache", max_bytes=cap)
            with np.load(f, allow_pickle=False) as z:
                version = z["version"]
                if version.shape != () or not np.issubdtype(version.dtype, np.integer) \
                        or int(version) != CACHE_VERSION:
                    raise ValueError(f"cache format {version.tolist()!r}, expected {CACHE_VERSION}")
                arrays = {s: z[s] for s in MNIST_FILES}
        for stem, arr in arrays.items():
            if arr.dtype != np.uint8 or sha256_of(arr) != digests[stem]:
                raise ChecksumError(f"{stem} does not match its SHA-256")
    except (OSError, ValueError, TypeError, KeyError, EOFError, MemoryError, zipfile.BadZipFile) as e:
        tried.append(f"decoded cache {path}: rejected ({e}); it will be rebuilt")
        warnings.warn(f"load_mnist: rejecting the cache {path} ({e}); rebuilding it", stacklevel=4)
        return None
    return arrays


def _write_cache(path: Path, arrays: dict, digests: dict) -> None:
    """Write the verified arrays atomically; a failure only warns (the data is still returned)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: np.savez(f, version=np.int64(CACHE_VERSION),
                                              digests=np.array([digests[s] for s in MNIST_FILES]), **arrays))
    except OSError as e:
        warnings.warn(f"load_mnist: could not write the cache {path}: {e}", stacklevel=4)


def _not_found_message(todo: list, tried: list) -> str:
    lines = [f"MNIST not found: no verified copy of {', '.join(todo)}. Tried, in order:"]
    lines += [f"  - {t}" for t in tried]
    lines += [
        "Provide the four files (raw IDX or .gz, e.g. train-images-idx3-ubyte.gz) with "
        "load_mnist(data_dir='path/to/mnist') or the environment variable FNNET_DATA_DIR=path/to/mnist, "
        "or allow a download from a mirror (FNNET_MNIST_MIRRORS lists your own).",
        "Offline alternative: fnnet.datasets.load_digits(), the 8x8 digits bundled with scikit-learn "
        "(same return conventions, no network).",
    ]
    return "\n".join(lines)
