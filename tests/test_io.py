"""fnnet.io: exact .npz round trips, atomic writes, the restricted unpickler, the book's weights."""

from __future__ import annotations

import collections
import importlib.util
import os
import pickle
import subprocess
import sys

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from fnnet.io import UnsafePickleError, load_params, save_params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_same_tree(a, b):
    """Same nesting, key order, container types, dtypes, shapes and bits."""
    assert type(a) is type(b) or (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)), (type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same_tree(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tree(x, y)
    elif a is None:
        assert b is None
    else:
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


def test_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    specials = np.array([np.nan, -np.inf, np.inf, -0.0, 1e-30, 6e-8], np.float64)
    params = {
        "W1": rng.standard_normal((5, 3)).astype(np.float16),
        "b1": np.concatenate([rng.standard_normal(4), specials]).astype(np.float32),
        "W2": np.concatenate([rng.standard_normal(7) * 1e-300, specials]),
        "conv": {"W": rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "b": np.zeros(2, np.float32),
                 "empty": {}},
        "bn": [np.ones(3, np.float64), (np.int32(7), np.array(True))],
        "scalar": np.float64(np.pi),
        "none": None,
        "bf16": np.asarray(jnp.linspace(-3, 3, 5, dtype=jnp.bfloat16)),
        "gamma": jnp.arange(4, dtype=jnp.float32) / 3,
    }
    path = tmp_path / "p.npz"
    save_params(params, path)
    back = load_params(path)
    expected = dict(params, scalar=np.asarray(params["scalar"]), gamma=np.asarray(params["gamma"]),
                    bn=[params["bn"][0], (np.asarray(np.int32(7)), np.array(True))])
    assert_same_tree(expected, back)
    assert back["bf16"].dtype == np.dtype(ml_dtypes.bfloat16)
    assert sorted(os.listdir(tmp_path)) == ["p.npz"]


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "params.npz"
    save_params({"W": np.ones(3)}, path)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_params({"W": np.zeros(3)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["params.npz"]


def test_save_rejects_bad_trees(tmp_path):
    with pytest.raises(TypeError, match="without '/'"):
        save_params({"a/b": np.ones(1)}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="without '/'"):
        save_params({1: np.ones(1)}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match=r"conv/W has dtype <U"):
        save_params({"conv": {"W": "text"}}, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_plain_npz_nests_on_slashes(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, **{"W1": np.ones(2), "bn/gamma": np.ones(3), "bn/beta": np.zeros(3)})
    back = load_params(path)
    assert set(back) == {"W1", "bn"} and set(back["bn"]) == {"gamma", "beta"}
    np.testing.assert_array_equal(back["bn"]["gamma"], np.ones(3))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_book_style_pickles_load(tmp_path, protocol):
    params = {"W1": np.arange(6, dtype=np.float32).reshape(2, 3), "b1": np.float64(0.5),
              "W2": np.linspace(0, 1, 4, dtype=np.float16), "n": np.int64(3),
              "od": collections.OrderedDict(x=np.ones(2, np.float64))}
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps(params, protocol=protocol))
    back = load_params(path)
    assert list(back) == list(params)
    for k in ("W1", "W2"):
        assert back[k].dtype == params[k].dtype and back[k].tobytes() == params[k].tobytes()
    assert back["b1"] == 0.5 and back["n"] == 3 and back["od"]["x"].tolist() == [1.0, 1.0]


class RunsCommand:
    """Unpickling this runs a shell command (os.system) that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class CallsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getpid()",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_unsafe_pickle_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "marker"
    payload = {"W1": np.ones(2), "evil": RunsCommand(marker)}
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    # the pickle really would run the command when loaded by the plain unpickler
    probe = tmp_path / "probe.pkl"
    probe_marker = tmp_path / "probe-marker"
    probe.write_bytes(pickle.dumps(RunsCommand(probe_marker), protocol=protocol))
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(probe)!r}, 'rb'))"],
                   check=True)
    assert probe_marker.exists()

    with pytest.raises(UnsafePickleError, match=rf"{os.system.__module__}\.system") as e:
        load_params(path)
    assert str(path) in str(e.value)
    assert not marker.exists()


def test_other_refused_globals(tmp_path):
    path = tmp_path / "eval.pkl"
    path.write_bytes(pickle.dumps([CallsEval()]))
    with pytest.raises(UnsafePickleError, match="refused global builtins.eval"):
        load_params(path)
    path.write_bytes(pickle.dumps({"cls": RunsCommand}))
    with pytest.raises(UnsafePickleError, match=r"refused global .*test_io\.RunsCommand"):
        load_params(path)
    # protocol-0 bytes go through _codecs.encode; only latin-1 is admitted
    path.write_bytes(b"c_codecs\nencode\n(Vabc\nVrot13\ntR.")
    with pytest.raises(UnsafePickleError, match="rot13"):
        load_params(path)


def test_pickle_must_hold_numeric_arrays(tmp_path):
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps([np.ones(2)]))
    with pytest.raises(ValueError, match="params is a list"):
        load_params(path)
    path.write_bytes(pickle.dumps({"W": np.array([1, "a"], dtype=object)}))
    with pytest.raises(ValueError, match=r"params\['W'\] is a ndarray of dtype object"):
        load_params(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="neither an .npz archive nor a readable pickle"):
        load_params(path)


BOOK_SHAPES = {
    "sample_weight.pkl": ({"W1": (784, 50), "b1": (50,), "W2": (50, 100), "b2": (100,), "W3": (100, 10),
                           "b3": (10,)}, np.float32),
    "params.pkl": ({"W1": (30, 1, 5, 5), "b1": (30,), "W2": (4320, 100), "b2": (100,), "W3": (100, 10),
                    "b3": (10,)}, np.float64),
    "deep_convnet_params.pkl": (
        {"W1": (16, 1, 3, 3), "W2": (16, 16, 3, 3), "W3": (32, 16, 3, 3), "W4": (32, 32, 3, 3),
         "W5": (64, 32, 3, 3), "W6": (64, 64, 3, 3), "W7": (1024, 50), "W8": (50, 10),
         **{f"b{i}": (n,) for i, n in enumerate((16, 16, 32, 32, 64, 64, 50, 10), start=1)}}, np.float64),
}


@pytest.mark.parametrize("name", sorted(BOOK_SHAPES))
def test_book_weights_load(book_weights_dir, tmp_path, name):
    params = load_params(os.path.join(book_weights_dir, name))
    shapes, dtype = BOOK_SHAPES[name]
    assert {k: v.shape for k, v in params.items()} == shapes
    assert all(v.dtype == dtype and np.all(np.isfinite(v)) for v in params.values())
    assert float(np.abs(params["W1"]).max()) > 0
    save_params(params, tmp_path / "copy.npz")
    assert_same_tree(params, load_params(tmp_path / "copy.npz"))


@pytest.mark.mnist
def test_ch03_inference_accuracy(mnist_dir, book_weights_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = os.path.join(ROOT, "scripts", "ch03_mnist_inference.py")
    spec = importlib.util.spec_from_file_location("ch03_mnist_inference", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    weights = os.path.join(book_weights_dir, "sample_weight.pkl")
    out = script.main(["--weights", weights, "--data-dir", mnist_dir, "--out", str(tmp_path / "out"),
                       "--no-progress"])
    printed = capsys.readouterr().out.splitlines()
    assert printed.count("Accuracy:0.9352") == 2
    assert script.accuracy_line(out["one_by_one"], out["t_test"]) == "Accuracy:0.9352"
    np.testing.assert_array_equal(out["one_by_one"], out["batched"])
    assert out["png"].endswith("mnist_train0_label5.png") and os.path.getsize(out["png"]) > 100
    import matplotlib.image

    img = matplotlib.image.imread(out["png"])
    assert img.shape[:2] == (28, 28) and img[..., 0].max() > img[..., 0].min()


def test_load_params_of_a_small_file_fits_a_small_memory_limit(tmp_path):
    """load_params reads in chunks up to its cap: one read of cap + 1 bytes would reserve 2 GiB
    up front, which a process limited to 1.5 GiB of address space refuses (MemoryError)."""
    path = tmp_path / "p.npz"
    np.savez(path, W1=np.ones(3))
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000)); "
            "from fnnet.io import load_params; print(load_params(sys.argv[1])['W1'].sum())")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() == "3.0"
