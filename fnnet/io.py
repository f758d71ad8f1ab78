"""Saving and loading parameters: atomic `.npz`, and the book's `.pkl` through a safe unpickler.

`save_params(params, path)` writes a pytree of dicts, lists and tuples whose leaves are arrays
(NumPy or JAX) or scalars. Leaves are stored under '/'-joined key paths ("conv1/W"), next to a
JSON description of the tree, so `load_params` gives back the same nesting, key order and
dtypes (float16/32/64 bit for bit; bfloat16 too). Lists and tuples come back as such; other
containers (NamedTuples) come back as tuples.

`load_params(path)` reads either format, recognised from the file's first bytes. A pickle can
run code while it loads, so `.pkl` files go through `SafeUnpickler`, which resolves only the
globals that NumPy arrays, dtypes, scalars and plain containers need; anything else raises
`UnsafePickleError` naming the refused global, before it is called.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import re
import stat
import tempfile
import time
import zipfile
from collections.abc import Mapping

import numpy as np

__all__ = [
    "save_params", "load_params", "UnsafePickleError", "SafeUnpickler", "safe_load_pickle", "atomic_write",
    "save_json", "temp_file", "remove_stale_temporaries", "ensure_writable_dir", "open_regular",
    "read_regular", "check_npz_members", "NotARegularFileError", "TooLargeError", "MAX_PARAMS_BYTES",
]

TREE_KEY = "__fnnet_tree__"
# The most bytes `load_params` reads (file size, and the decompressed members of an .npz together):
# 2 GiB is 500 million float32 weights, far beyond any network of the book.
MAX_PARAMS_BYTES = 2 * 2**30
ZIP_MAGIC = b"PK"


TEMP_SUFFIX = ".part"
_TEMP_RE = re.compile(r"^\..+\.pid(\d+)\.[^.]+\.part$")
_LEGACY_TEMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.part$")  # before the writer's pid was in the name
LEGACY_TEMP_AGE_S = 3600.0


def temp_file(folder, name: str):
    """(fd, path) of a new temporary file for `name` in `folder`, named `.{name}.pid{PID}.XXXX.part`,
    so that `remove_stale_temporaries` can tell a dead writer's leftovers from a live one's."""
    return tempfile.mkstemp(dir=folder, prefix=f".{name}.pid{os.getpid()}.", suffix=TEMP_SUFFIX)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def remove_stale_temporaries(folder) -> list:
    """Delete the temporary files that fnnet's writers left in `folder` when their process was
    killed: named by `temp_file` for a process that is no longer running (or, from versions that
    did not name the process, older than an hour); returns their paths. Files of a writer that is
    still running, and every other file, are left alone."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(folder, name)
        m = _TEMP_RE.match(name)
        if m:
            stale = int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1)))
        else:
            try:
                age = time.time() - os.path.getmtime(path)
                stale = bool(_LEGACY_TEMP_RE.match(name)) and age > LEGACY_TEMP_AGE_S
            except OSError:
                stale = False
        if stale:
            try:
                os.unlink(path)
                removed.append(path)
            except OSError:
                pass
    return removed


def ensure_writable_dir(folder) -> None:
    """Create `folder` if needed and prove it takes a file (a temporary, removed at once); raises
    OSError otherwise. Checked before long work, so a bad folder fails first, not at the end."""
    os.makedirs(folder, exist_ok=True)
    fd, probe = temp_file(folder, "write-test")
    os.close(fd)
    os.unlink(probe)


def atomic_write(path, write) -> None:
    """Call `write(f)` on a binary file under a temporary name in `path`'s folder, then rename it
    to `path`. An interruption leaves the previous file (or none), never a partial one; a killed
    process leaves a temporary that `remove_stale_temporaries` deletes later."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = temp_file(folder, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_json(obj, path) -> None:
    """Write `obj` as indented JSON to `path`, atomically."""
    data = json.dumps(obj, indent=2).encode()
    atomic_write(path, lambda f: f.write(data))


class NotARegularFileError(OSError):
    """A path that is a FIFO, a device, a socket or a folder (or a link to one): reading it could
    block forever or never end, so fnnet refuses it before reading."""


class TooLargeError(ValueError):
    """A file, or what it would decompress to, is larger than the stated cap for what it should hold."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path, *, fn: str, what: str = "file", max_bytes: int | None = None):
    """Open `path` for binary reading only if it is a regular file (a link to one is fine) of at
    most `max_bytes` bytes; returns (file object, size). The file is opened non-blocking and
    checked with fstat on the open descriptor, so a FIFO cannot hang the open or the read and
    a swap between a check and the open is still caught. Raises NotARegularFileError or
    TooLargeError naming `fn`, `what` and the path; FileNotFoundError etc. pass through."""
    path = os.fspath(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFileError(f"{fn}: {what} {path} is {_kind(st.st_mode)}, not a regular file; "
                                       "refusing to read it")
        if max_bytes is not None and st.st_size > max_bytes:
            raise TooLargeError(f"{fn}: {what} {path} is {st.st_size:,} bytes, more than the {max_bytes:,} "
                                "a file of this kind may hold; refusing to read it")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, *, fn: str, what: str = "file", max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file of at most `max_bytes` bytes (see `open_regular`); reads no
    more than the cap even if the file grows meanwhile."""
    f, size = open_regular(path, fn=fn, what=what, max_bytes=max_bytes)
    with f:
        data = f.read() if max_bytes is None else read_capped(f, max_bytes)
    if max_bytes is not None and len(data) > max_bytes:
        raise TooLargeError(f"{fn}: {what} {os.fspath(path)} grew past the {max_bytes:,} bytes allowed while "
                            "it was read; refusing it")
    return data


def read_capped(f, max_bytes: int, chunk: int = 2**20) -> bytes:
    """At most max_bytes + 1 bytes of a binary file object, read in chunks: `f.read(n)` would
    reserve n bytes up front however small the file, which a memory limit refuses for a large cap."""
    parts, left = [], max_bytes + 1
    while left > 0:
        part = f.read(min(chunk, left))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def check_npz_members(source, *, fn: str, what: str, max_bytes: int) -> None:
    """Refuse an .npz (a path, bytes or a binary file object) whose members would decompress to
    more than `max_bytes` together, from the sizes in its zip directory, before anything is
    decompressed (a zip bomb of a few MB can expand to GBs). np.load then reads each member
    through zipfile, which stops at the recorded size."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    try:
        with zipfile.ZipFile(source) as z:
            total = sum(info.file_size for info in z.infolist())
    except zipfile.BadZipFile as e:
        raise ValueError(f"{fn}: {what} is not a readable .npz archive ({e})") from None
    if total > max_bytes:
        raise TooLargeError(f"{fn}: {what} would decompress to {total:,} bytes, more than the {max_bytes:,} "
                            "allowed; refusing to decompress it (a damaged file or a zip bomb)")
    if hasattr(source, "seek"):
        source.seek(0)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle referred to a global outside the allow-list; nothing of it was run."""


def _numpy_attr(*candidates):
    """The first importable `module.name` among `candidates` (numpy moved `core` to `_core`)."""
    for dotted in candidates:
        mod, _, name = dotted.rpartition(".")
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    return None


def _latin1_encode(text, encoding="latin1"):
    """`_codecs.encode` as protocols 0-2 use it for bytes; only the latin-1 codec is admitted."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickleError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict:
    reconstruct = _numpy_attr("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct")
    scalar = _numpy_attr("numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar")
    frombuffer = _numpy_attr("numpy._core.numeric._frombuffer", "numpy.core.numeric._frombuffer")
    import collections

    table = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
        # protocols 0-2 spell bytes as _codecs.encode(str, 'latin1')
        ("_codecs", "encode"): _latin1_encode,
    }
    for mod in ("numpy.core", "numpy._core"):
        table[(f"{mod}.multiarray", "_reconstruct")] = reconstruct
        table[(f"{mod}.multiarray", "scalar")] = scalar
        table[(f"{mod}.numeric", "_frombuffer")] = frombuffer
    return {k: v for k, v in table.items() if v is not None}


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler that admits only NumPy arrays, dtypes, scalars and plain containers."""

    ALLOWED = _allowed_globals()

    def find_class(self, module, name):
        """The object a pickle names by (module, name) if it is in ALLOWED; anything else raises
        UnsafePickleError before it is imported."""
        obj = self.ALLOWED.get((module, name))
        if obj is None:
            raise UnsafePickleError(
                f"refused global {module}.{name}: a parameter pickle may only hold NumPy arrays, "
                "dtypes, scalars and plain containers (it may try to run code)"
            )
        return obj

    def persistent_load(self, pid):
        """Refuse every persistent id: a parameter pickle holds none."""
        raise UnsafePickleError(f"refused persistent id {pid!r}")


def safe_load_pickle(file):
    """Unpickle from a binary file object with `SafeUnpickler`."""
    return SafeUnpickler(file).load()


def _leaf(path: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biufc" and not _is_ml_dtype(arr.dtype):
        raise TypeError(f"save_params: {path or 'params'} has dtype {arr.dtype}; only numeric arrays are "
                        "saved")
    return arr


def _is_ml_dtype(dtype) -> bool:
    """bfloat16, float8_* and the other extension dtypes of ml_dtypes (used by JAX)."""
    if dtype.kind != "V" or dtype.names is not None:
        return False
    try:
        import ml_dtypes
    except ImportError:
        return False
    return hasattr(ml_dtypes, dtype.name) and np.dtype(getattr(ml_dtypes, dtype.name)) == dtype


def _flatten(tree, prefix: str, leaves: dict):
    """JSON description of `tree`; leaves go into `leaves` under '/'-joined paths."""
    if isinstance(tree, Mapping):
        items = []
        for k, v in tree.items():
            if not isinstance(k, str) or not k or "/" in k:
                raise TypeError(f"save_params: keys must be non-empty str without '/', got {k!r} at "
                                f"{prefix or 'params'}")
            items.append([k, _flatten(v, f"{prefix}/{k}" if prefix else k, leaves)])
        return {"dict": items}
    if isinstance(tree, (list, tuple)):
        kind = "list" if isinstance(tree, list) else "tuple"
        return {kind: [_flatten(v, f"{prefix}/{i}" if prefix else str(i), leaves)
                       for i, v in enumerate(tree)]}
    if tree is None:
        return {"none": None}
    arr = _leaf(prefix, tree)
    leaves[prefix] = arr
    if _is_ml_dtype(arr.dtype):  # ml_dtypes (bfloat16, float8): store the bits, remember the name
        leaves[prefix] = arr.view(np.dtype(f"u{arr.dtype.itemsize}"))
        return {"array": prefix, "dtype": arr.dtype.name}
    return {"array": prefix}


def _unflatten(desc, leaves):
    if "dict" in desc:
        return {k: _unflatten(v, leaves) for k, v in desc["dict"]}
    if "list" in desc:
        return [_unflatten(v, leaves) for v in desc["list"]]
    if "tuple" in desc:
        return tuple(_unflatten(v, leaves) for v in desc["tuple"])
    if "none" in desc:
        return None
    arr = leaves[desc["array"]]
    if "dtype" in desc:
        import ml_dtypes

        arr = arr.view(np.dtype(getattr(ml_dtypes, desc["dtype"])))
    return arr


def save_params(params, path) -> None:
    """Write `params` (nested dicts/lists/tuples of arrays) to `path` as `.npz`, atomically.

    The file is written under a temporary name in the same folder and renamed when complete,
    so an interrupted save leaves the previous file (or none), never a partial one.
    """
    path = os.fspath(path)
    leaves: dict = {}
    desc = _flatten(params, "", leaves)
    if TREE_KEY in leaves:
        raise TypeError(f"save_params: {TREE_KEY!r} is reserved")
    tree = np.frombuffer(json.dumps(desc).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **{TREE_KEY: tree}, **leaves))


def load_params(path, max_bytes: int = MAX_PARAMS_BYTES):
    """Read parameters from `.npz` (as written by `save_params`, or any plain npz) or the book's `.pkl`.

    Returns the same nesting as saved, with NumPy arrays as leaves. An npz without the tree
    description is rebuilt into nested dicts by splitting its keys on '/'. Pickles are read by
    `SafeUnpickler` (UnsafePickleError for anything but arrays and plain containers) and must
    hold a dict. Only a regular file is read, and only if it holds (and, for an npz, its zip
    directory says it decompresses to) at most `max_bytes`; otherwise NotARegularFileError or
    TooLargeError, before the bytes are read.
    """
    path = os.fspath(path)
    f, _ = open_regular(path, fn="load_params", what="parameter file", max_bytes=max_bytes)
    with f:
        head = f.read(2)
        f.seek(0)
        if head == ZIP_MAGIC:
            data = read_capped(f, max_bytes)
        else:
            try:
                obj = safe_load_pickle(f)
            except UnsafePickleError as e:
                raise UnsafePickleError(f"{path}: {e}") from None
            except Exception as e:  # a malformed pickle fails in many ways
                raise ValueError(f"load_params: {path} is neither an .npz archive nor a readable pickle "
                                 f"({type(e).__name__}: {e})") from e
            return _check_pickled(obj, path)
    check_npz_members(data, fn="load_params", what=path, max_bytes=max_bytes)
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        leaves = {k: z[k] for k in z.files}
    tree = leaves.pop(TREE_KEY, None)
    if tree is not None:
        return _unflatten(json.loads(tree.tobytes().decode()), leaves)
    out: dict = {}
    for key, arr in leaves.items():
        node = out
        *parents, last = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = arr
    return out


def _check_pickled(obj, path, where="params"):
    """Plain dict (nested allowed) of numeric arrays, or a ValueError naming what is not."""
    if isinstance(obj, Mapping):
        return {k: _check_pickled(v, path, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in "biufc":
        return np.asarray(obj)
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return np.asarray(obj)
    raise ValueError(f"load_params: {path}: {where} is a {type(obj).__name__}"
                     f"{' of dtype ' + str(obj.dtype) if hasattr(obj, 'dtype') else ''}; "
                     "expected a dict of numeric arrays")
