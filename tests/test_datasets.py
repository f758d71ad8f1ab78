"""Datasets: IDX validation, verified/cached/downloaded MNIST, scikit-learn digits, batching."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import os
import threading
import warnings
import zipfile

import jax
import numpy as np
import pytest

from fnnet.datasets import (
    MNIST_FILES,
    MNIST_SHA256,
    IdxError,
    MNISTNotFoundError,
    batches,
    default_cache_dir,
    load_digits,
    load_mnist,
    num_batches,
    read_idx,
    train_val_split,
)
from fnnet.datasets.idx import idx_header, sha256_of

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = MNIST_FILES


# ---------------------------------------------------------------- synthetic IDX files


def idx_bytes(arr: np.ndarray) -> bytes:
    return idx_header(arr) + np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder(">")).tobytes()


def write(path, data: bytes, gz: bool = False):
    with open(path, "wb") as f:
        f.write(gzip.compress(data, mtime=0) if gz else data)
    return path


def synthetic_mnist(seed=0, n_train=12, n_test=6):
    """Four small MNIST-layout arrays and their IDX contents."""
    rng = np.random.default_rng(seed)
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        TRAIN_LABELS: rng.integers(0, 10, n_train).astype(np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        TEST_LABELS: rng.integers(0, 10, n_test).astype(np.uint8),
    }
    contents = {k: idx_bytes(v) for k, v in arrays.items()}
    digests = {k: hashlib.sha256(v).hexdigest() for k, v in contents.items()}
    return arrays, contents, digests


def write_set(folder, contents, gz=True, dotted=False):
    os.makedirs(folder, exist_ok=True)
    for stem, data in contents.items():
        name = stem.replace("-idx", ".idx") if dotted else stem
        write(os.path.join(folder, name + (".gz" if gz else "")), data, gz)


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No data dir, no mirrors and no proxies from the outside; a private cache folder."""
    monkeypatch.delenv("FNNET_DATA_DIR", raising=False)
    monkeypatch.delenv("FNNET_MNIST_MIRRORS", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, gz):
    arr = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    path = write(tmp_path / ("a.idx" + (".gz" if gz else "")), idx_bytes(arr), gz)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    out[0, 0, 0] = 1  # writable, independent of the file buffer


def test_read_idx_truncated_gzip(tmp_path):
    blob = gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(IdxError, match="truncated gzip") as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_read_idx_truncated_body_and_trailing_bytes(tmp_path):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    short = write(tmp_path / "short", data[:-10])
    with pytest.raises(IdxError, match=r"truncated.*\(4, 28, 28\).*3,136 data bytes.*3,126") as e:
        read_idx(short)
    assert str(short) in str(e.value)
    long = write(tmp_path / "long", data + b"\0")
    with pytest.raises(IdxError, match="trailing bytes"):
        read_idx(long)
    header = write(tmp_path / "header", data[:9])
    with pytest.raises(IdxError, match="too short for the header of a 3-D"):
        read_idx(header)


def test_read_idx_wrong_magic_and_type(tmp_path):
    data = idx_bytes(np.zeros(3, np.uint8))
    bad = write(tmp_path / "labels.bin", b"\x12\x34" + data[2:])
    with pytest.raises(IdxError, match="wrong magic number 0x12340801") as e:
        read_idx(bad)
    assert str(bad) in str(e.value)
    code = write(tmp_path / "code", data[:2] + b"\x07" + data[3:])
    with pytest.raises(IdxError, match="unknown IDX element type code 0x07"):
        read_idx(code)
    zero = write(tmp_path / "zero", b"\0\0\x08\0")
    with pytest.raises(IdxError, match="0 dimensions"):
        read_idx(zero)
    tiny = write(tmp_path / "tiny", b"\0\0")
    with pytest.raises(IdxError, match="too short"):
        read_idx(tiny)


def test_sha256_of_rebuilds_the_file_digest():
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    assert sha256_of(arr) == hashlib.sha256(idx_bytes(arr)).hexdigest()
    f = np.linspace(-1, 1, 6, dtype=np.float32)
    assert sha256_of(f) == hashlib.sha256(idx_bytes(f)).hexdigest()


# ---------------------------------------------------------------- load_mnist on synthetic files


@pytest.mark.parametrize("gz,dotted", [(True, False), (False, True), (True, True)])
def test_load_mnist_formats(env, gz, dotted):
    arrays, contents, digests = synthetic_mnist()
    write_set(env / "data", contents, gz=gz, dotted=dotted)
    (x, t), (xt, tt) = load_mnist(data_dir=env / "data", sha256=digests, download=False)
    assert x.shape == (12, 784) and x.dtype == np.float32 and xt.shape == (6, 784)
    assert t.dtype == np.int32 and t.shape == (12,)
    np.testing.assert_array_equal(x, arrays[TRAIN_IMAGES].reshape(12, 784).astype(np.float32) / 255.0)
    np.testing.assert_array_equal(tt, arrays[TEST_LABELS])
    assert 0.0 <= x.min() and x.max() <= 1.0

    (x, t), _ = load_mnist(normalize=False, flatten=False, one_hot_label=True, data_dir=env / "data",
                           sha256=digests, download=False)
    assert x.shape == (12, 1, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[:, 0], arrays[TRAIN_IMAGES])
    assert t.shape == (12, 10) and t.dtype == np.float32
    np.testing.assert_array_equal(t.argmax(1), arrays[TRAIN_LABELS])
    np.testing.assert_array_equal(t.sum(1), np.ones(12))


def test_load_mnist_cache_is_used_verified_and_rebuilt(env):
    arrays, contents, digests = synthetic_mnist()
    write_set(env / "data", contents)
    cache = env / "cache"
    load_mnist(data_dir=env / "data", cache_dir=cache, sha256=digests, download=False)
    (npz,) = cache.glob("mnist-*.npz")
    assert not list(cache.glob(".*part"))

    # the cache alone serves the next load (the files are gone)
    for f in (env / "data").iterdir():
        f.unlink()
    (x, _), _ = load_mnist(normalize=False, cache_dir=cache, sha256=digests, download=False)
    np.testing.assert_array_equal(x.reshape(12, 28, 28), arrays[TRAIN_IMAGES])

    # a truncated cache is rejected, never trusted; without files that is an error naming it
    good = npz.read_bytes()
    npz.write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning, match="rejecting the cache"), pytest.raises(MNISTNotFoundError) as e:
        load_mnist(cache_dir=cache, sha256=digests, download=False)
    assert f"decoded cache {npz}: rejected" in str(e.value)

    # with the files back, it is rebuilt
    write_set(env / "data", contents)
    with pytest.warns(UserWarning, match="rejecting the cache"):
        load_mnist(data_dir=env / "data", cache_dir=cache, sha256=digests, download=False)
    assert npz.read_bytes() == good

    # an altered array with a well-formed archive is rejected by its digest
    with np.load(npz) as z:
        fields = {k: z[k] for k in z.files}
    fields[TRAIN_IMAGES][0, 0, 0] ^= 1
    with open(npz, "wb") as f:
        np.savez(f, **fields)
    with pytest.warns(UserWarning, match=f"{TRAIN_IMAGES} does not match its SHA-256"):
        (x, _), _ = load_mnist(normalize=False, data_dir=env / "data", cache_dir=cache, sha256=digests,
                               download=False)
    np.testing.assert_array_equal(x.reshape(12, 28, 28), arrays[TRAIN_IMAGES])

    # a crafted version field (an array, a string) is a corrupt cache: rejected and rebuilt
    for version in (np.array([1, 2]), np.array("1")):
        with np.load(npz) as z:
            fields = {k: z[k] for k in z.files}
        fields["version"] = version
        with open(npz, "wb") as f:
            np.savez(f, **fields)
        with pytest.warns(UserWarning, match="rejecting the cache.*cache format"):
            load_mnist(data_dir=env / "data", cache_dir=cache, sha256=digests, download=False)
        assert npz.read_bytes() == good


def test_load_mnist_bad_checksum_is_never_used_nor_cached(env, monkeypatch):
    arrays, contents, digests = synthetic_mnist()
    _, other, _ = synthetic_mnist(seed=1)
    bad = dict(contents, **{TRAIN_IMAGES: other[TRAIN_IMAGES]})
    write_set(env / "bad", bad)
    cache = env / "cache"
    with pytest.warns(UserWarning, match="SHA-256"), pytest.raises(MNISTNotFoundError) as e:
        load_mnist(data_dir=env / "bad", cache_dir=cache, sha256=digests, download=False)
    msg = str(e.value)
    assert f"{env / 'bad' / (TRAIN_IMAGES + '.gz')}: SHA-256 of the decompressed content is" in msg
    assert digests[TRAIN_IMAGES] in msg
    assert not cache.exists() or not list(cache.iterdir())

    # a verified copy further down the search order is used instead
    write_set(env / "good", contents)
    monkeypatch.setenv("FNNET_DATA_DIR", str(env / "good"))
    with pytest.warns(UserWarning, match="skipping"):
        (x, _), _ = load_mnist(normalize=False, data_dir=env / "bad", cache_dir=cache, sha256=digests,
                               download=False)
    np.testing.assert_array_equal(x.reshape(12, 28, 28), arrays[TRAIN_IMAGES])


def test_load_mnist_mismatched_counts(env):
    arrays, contents, digests = synthetic_mnist()
    contents[TRAIN_LABELS] = idx_bytes(arrays[TRAIN_LABELS][:11])
    digests[TRAIN_LABELS] = hashlib.sha256(contents[TRAIN_LABELS]).hexdigest()
    write_set(env / "data", contents)
    with pytest.raises(IdxError, match=r"holds 12 images but .*train-labels-idx1-ubyte.gz holds 11 labels"):
        load_mnist(data_dir=env / "data", cache_dir=env / "cache", sha256=digests, download=False)
    assert not (env / "cache").exists()


def test_load_mnist_checks_layout(env):
    arrays, contents, digests = synthetic_mnist()
    contents[TRAIN_LABELS] = idx_bytes(arrays[TRAIN_LABELS] + 10)
    digests[TRAIN_LABELS] = hashlib.sha256(contents[TRAIN_LABELS]).hexdigest()
    write_set(env / "data", contents)
    with pytest.warns(UserWarning, match="labels must be digits 0..9"), pytest.raises(MNISTNotFoundError):
        load_mnist(data_dir=env / "data", cache_dir=env / "cache", sha256=digests, download=False)


@contextlib.contextmanager
def serve(folder, handler=None):
    """An HTTP server on 127.0.0.1 serving `folder`; yields its base URL."""
    handler = handler or functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class CutHandler(QuietHandler):
    """Announces the whole file, sends half of it, then hangs up (an interrupted download)."""

    def do_GET(self):
        data = (self.server.folder / os.path.basename(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


def test_download_from_mirrors_in_turn(env):
    arrays, contents, digests = synthetic_mnist()
    _, other, _ = synthetic_mnist(seed=1)
    write_set(env / "wrong", other)          # a mirror serving other content
    write_set(env / "right", contents)        # a good mirror
    cut = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CutHandler)
    cut.folder = env / "right"
    threading.Thread(target=cut.serve_forever, daemon=True).start()
    cache = env / "cache"
    try:
        with serve(env / "wrong") as wrong, serve(env / "right") as right:
            cut_url = f"http://127.0.0.1:{cut.server_address[1]}/"
            mirrors = [cut_url, wrong, "http://127.0.0.1:9/", right]
            (x, t), (xt, tt) = load_mnist(normalize=False, cache_dir=cache, mirrors=mirrors, sha256=digests,
                                          progress=False)
    finally:
        cut.shutdown()
        cut.server_close()
    np.testing.assert_array_equal(x.reshape(12, 28, 28), arrays[TRAIN_IMAGES])
    np.testing.assert_array_equal(tt, arrays[TEST_LABELS])
    # verified files kept under their final names, no partial leftovers
    names = sorted(p.name for p in cache.iterdir())
    assert [n for n in names if n.endswith(".gz")] == sorted(s + ".gz" for s in MNIST_FILES)
    assert not [n for n in names if n.startswith(".")]
    for stem in MNIST_FILES:
        assert gzip.decompress((cache / (stem + ".gz")).read_bytes()) == contents[stem]
    # next time: no network needed
    load_mnist(cache_dir=cache, mirrors=[], sha256=digests)


def test_interrupted_or_bad_downloads_leave_nothing(env):
    _, contents, digests = synthetic_mnist()
    _, other, _ = synthetic_mnist(seed=1)
    write_set(env / "right", contents)
    write_set(env / "wrong", other)
    cut = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CutHandler)
    cut.folder = env / "right"
    threading.Thread(target=cut.serve_forever, daemon=True).start()
    cache = env / "cache"
    try:
        with serve(env / "wrong") as wrong:
            cut_url = f"http://127.0.0.1:{cut.server_address[1]}/"
            with pytest.raises(MNISTNotFoundError) as e:
                load_mnist(cache_dir=cache, mirrors=[cut_url, wrong], sha256=digests, progress=False)
    finally:
        cut.shutdown()
        cut.server_close()
    msg = str(e.value)
    assert f"download {cut_url}{TRAIN_IMAGES}.gz" in msg and f"download {wrong}{TEST_LABELS}.gz" in msg
    assert "SHA-256" in msg
    assert list(cache.iterdir()) == []


def test_file_urls_and_env_mirrors(env, monkeypatch):
    arrays, contents, digests = synthetic_mnist()
    write_set(env / "mirror", contents)
    monkeypatch.setenv("FNNET_MNIST_MIRRORS", f" , {(env / 'mirror').as_uri()}/")
    _, (xt, _) = load_mnist(normalize=False, sha256=digests, progress=False)
    np.testing.assert_array_equal(xt.reshape(6, 28, 28), arrays[TEST_IMAGES])
    assert default_cache_dir() == env / "xdg" / "fnnet"
    assert (default_cache_dir() / (TEST_IMAGES + ".gz")).is_file()


def test_offline_error_lists_every_place(env, monkeypatch):
    monkeypatch.setenv("FNNET_DATA_DIR", str(env / "envdir"))
    (env / "mine").mkdir()
    mirrors = ["http://127.0.0.1:9/a/", "http://127.0.0.1:9/b/"]
    with pytest.raises(MNISTNotFoundError) as e:
        load_mnist(data_dir=env / "mine", mirrors=mirrors, progress=False)
    msg = str(e.value)
    cache = env / "xdg" / "fnnet"
    for place in (f"decoded cache {cache}", f"data_dir={env / 'mine'}: no train-images-idx3-ubyte",
                  f"FNNET_DATA_DIR={env / 'envdir'}: no such folder", f"user cache {cache}: no such folder",
                  f"download {mirrors[0]}train-images-idx3-ubyte.gz",
                  f"download {mirrors[1]}t10k-labels-idx1-ubyte.gz"):
        assert place in msg
    assert "load_mnist(data_dir=" in msg and "FNNET_DATA_DIR=" in msg and "load_digits()" in msg
    assert isinstance(e.value, FileNotFoundError)

    monkeypatch.delenv("FNNET_DATA_DIR")
    with pytest.raises(MNISTNotFoundError, match="(?s)FNNET_DATA_DIR: not set.*download: disabled"):
        load_mnist(download=False)


def test_sha256_table_must_be_complete(env):
    with pytest.raises(KeyError, match="t10k-labels-idx1-ubyte"):
        load_mnist(sha256={k: v for k, v in MNIST_SHA256.items() if k != TEST_LABELS}, download=False)


# ---------------------------------------------------------------- the real MNIST (FNNET_DATA_DIR)


@pytest.fixture(scope="module")
def mnist_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("fnnet-cache")


@pytest.mark.mnist
def test_real_mnist(mnist_dir, mnist_cache):
    (x, t), (xt, tt) = load_mnist(data_dir=mnist_dir, cache_dir=mnist_cache, download=False)
    assert x.shape == (60000, 784) and xt.shape == (10000, 784) and x.dtype == np.float32
    assert t.shape == (60000,) and tt.shape == (10000,) and t.dtype == np.int32
    assert (t[0], tt[0]) == (5, 7)
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(t, minlength=10)[[0, 1, 5]], [5923, 6742, 5421])
    assert len(list(mnist_cache.glob("mnist-*.npz"))) == 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (x8, t1), _ = load_mnist(normalize=False, flatten=False, one_hot_label=True, cache_dir=mnist_cache,
                                 download=False)
    assert x8.shape == (60000, 1, 28, 28) and x8.dtype == np.uint8
    np.testing.assert_array_equal(x8.reshape(60000, 784).astype(np.float32) / 255.0, x)
    np.testing.assert_array_equal(t1.argmax(1), t)


@pytest.mark.mnist
def test_real_mnist_cache_digests(mnist_dir, mnist_cache):
    load_mnist(data_dir=mnist_dir, cache_dir=mnist_cache, download=False)
    (npz,) = mnist_cache.glob("mnist-*.npz")
    with zipfile.ZipFile(npz) as z:
        assert {f"{s}.npy" for s in MNIST_FILES} <= set(z.namelist())
    with np.load(npz) as z:
        assert [str(d) for d in z["digests"]] == [MNIST_SHA256[s] for s in MNIST_FILES]
        assert sha256_of(z[TEST_LABELS]) == MNIST_SHA256[TEST_LABELS]


# ---------------------------------------------------------------- load_digits


def test_load_digits_shapes_and_values():
    (x, t), (xt, tt) = load_digits()
    assert x.shape == (1438, 64) and xt.shape == (359, 64) and x.dtype == np.float32
    assert t.shape == (1438,) and t.dtype == np.int32
    assert 0.0 <= x.min() and x.max() == 1.0
    (x16, _), _ = load_digits(normalize=False, flatten=False)
    assert x16.shape == (1438, 1, 8, 8) and x16.dtype == np.uint8 and x16.max() == 16
    np.testing.assert_array_equal(x16.reshape(1438, 64).astype(np.float32) / 16, x)
    (_, t1), (_, tt1) = load_digits(one_hot_label=True)
    assert t1.shape == (1438, 10) and t1.dtype == np.float32
    np.testing.assert_array_equal(t1.argmax(1), t)
    np.testing.assert_array_equal(tt1.argmax(1), tt)


def test_load_digits_split_is_stratified_fixed_and_complete():
    from sklearn.datasets import load_digits as sk

    bunch = sk()
    (x, t), (xt, tt) = load_digits(normalize=False)
    # train + test is the whole set, each image once
    rows = np.concatenate([x, xt]).astype(np.float64)
    order = np.lexsort(rows.T)
    ref = bunch.data[np.lexsort(bunch.data.T)]
    np.testing.assert_array_equal(rows[order], ref)
    np.testing.assert_array_equal(np.sort(np.concatenate([t, tt])), np.sort(bunch.target))
    # every class held out in proportion
    per_class = np.bincount(bunch.target, minlength=10)
    np.testing.assert_array_equal(np.bincount(tt, minlength=10), np.round(0.2 * per_class).astype(int))
    # fixed: same split every time, a different seed gives a different one
    (x2, _), _ = load_digits(normalize=False)
    np.testing.assert_array_equal(x, x2)
    (x3, _), _ = load_digits(normalize=False, seed=1)
    assert not np.array_equal(x, x3)


def test_load_digits_returns_copies():
    (x, t), _ = load_digits()
    x[:] = -1
    t[:] = -1
    (x2, t2), _ = load_digits()
    assert x2.min() >= 0 and t2.min() >= 0


# ---------------------------------------------------------------- batches, train_val_split


def test_batches_cover_each_sample_once_with_explicit_tail():
    x = np.arange(10 * 3).reshape(10, 3)
    t = np.arange(10)
    key = jax.random.key(0)
    got = list(batches(x, t, 4, key))
    assert [len(b[1]) for b in got] == [4, 4, 2] == [len(b[0]) for b in got]
    seen = np.concatenate([b[1] for b in got])
    np.testing.assert_array_equal(np.sort(seen), t)
    assert not np.array_equal(seen, t)  # shuffled
    for xb, tb in got:
        np.testing.assert_array_equal(xb, x[tb])
    dropped = list(batches(x, t, 4, key, drop_last=True))
    assert [len(b[1]) for b in dropped] == [4, 4] and len(dropped) == num_batches(10, 4, True) == 2
    np.testing.assert_array_equal(np.concatenate([b[1] for b in dropped]), seen[:8])
    assert num_batches(10, 4) == 3


def test_batches_keys_and_order():
    x = np.arange(100, dtype=np.float32)[:, None]
    t = np.arange(100)

    def order(key):
        return np.concatenate([tb for _, tb in batches(x, t, 10, key)])

    np.testing.assert_array_equal(order(jax.random.key(3)), order(jax.random.key(3)))
    np.testing.assert_array_equal(order(jax.random.PRNGKey(3)), order(jax.random.PRNGKey(3)))
    assert not np.array_equal(order(jax.random.key(3)), order(jax.random.key(4)))
    plain = np.concatenate([tb for _, tb in batches(x, t, 30, shuffle=False)])
    np.testing.assert_array_equal(plain, t)


def test_batches_errors():
    x, t = np.zeros((5, 2)), np.zeros(4)
    with pytest.raises(ValueError, match=r"x has 5 samples \(shape \(5, 2\)\) but t has 4"):
        next(batches(x, t, 2, jax.random.key(0)))
    with pytest.raises(ValueError, match="needs a jax.random key"):
        next(batches(x, np.zeros(5), 2))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        next(batches(x, np.zeros(5), 0, jax.random.key(0)))


def test_train_val_split_as_the_book():
    x = np.arange(50 * 2).reshape(50, 2)
    t = np.arange(50)
    key = jax.random.key(7)
    (xtr, ttr), (xv, tv) = train_val_split(x, t, 0.2, key=key)
    assert len(tv) == 10 and len(ttr) == 40
    perm = np.asarray(jax.random.permutation(key, 50))
    np.testing.assert_array_equal(tv, perm[:10])
    np.testing.assert_array_equal(ttr, perm[10:])
    np.testing.assert_array_equal(xv, x[tv])
    (_, t2), _ = train_val_split(x, t, 0.2, key=key)
    np.testing.assert_array_equal(t2, ttr)
    (_, _), (_, tv3) = train_val_split(x, t, 0.33, key=key)
    assert len(tv3) == int(50 * 0.33)
    with pytest.raises(ValueError, match="val_ratio"):
        train_val_split(x, t, 1.0, key=key)
