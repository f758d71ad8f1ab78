"""The first convolution's feature maps of any network that begins with one (a LeNet or a serial net
of your own, not only the built-in convnets), as load_classifier gives them and `fnnet predict --show`
draws them; None for an MLP."""

import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image
from test_predict import draw_seven, make_run

import fnnet.cli.predict as predict_cli
import fnnet.plots
from fnnet.cli import main
from fnnet.cli.predict import feature_mosaic
from fnnet.datasets import prepare_digit
from fnnet.inference import load_classifier
from fnnet.io import save_params
from fnnet.models.user import load_model

LENET5 = f"{Path(__file__).resolve().parent.parent / 'scripts' / 'ch08_lenet5.py'}:lenet5"


def make_spec_run(folder, spec, seed=0):
    """A run folder of your own network `spec` as `fnnet train` leaves it: params.npz (random weights)
    and a metrics.json naming the spec; returns (params path, params)."""
    os.makedirs(folder, exist_ok=True)
    shapes, _ = jax.eval_shape(load_model(spec, (1, 28, 28), 10).init, jax.random.PRNGKey(0))
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(0, 0.1, v.shape).astype(np.float32) for k, v in shapes.items()}
    save_params(params, os.path.join(folder, "params.npz"))
    metrics = {"run": {"model": spec, "config": {}, "dataset": "mnist", "optimizer": "adam", "lr": 0.001,
                       "epochs": 1}, "seed": 0, "batch_size": 100, "input_shape": [1, 28, 28],
               "epochs_done": 1, "history": {"loss": [], "train_acc": [], "test_acc": []}}
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    return os.path.join(folder, "params.npz"), params


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    return make_spec_run(tmp_path_factory.mktemp("runs") / "lenet5-mnist", LENET5)


@pytest.fixture(scope="module")
def sevens(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    return draw_seven(folder / "seven.png"), draw_seven(folder / "shifted.png", dx=90, dy=70)


def test_a_lenet_run_gives_its_first_convolutions_maps(lenet_run, sevens):
    params, p = lenet_run
    clf = load_classifier(params, trust=True)
    x = np.stack([prepare_digit(f) for f in sevens])
    maps = clf.feature_maps(x)
    assert maps.shape == (2, 6, 28, 28) and maps.dtype == np.float32  # Convolution(6, 5, pad=2)
    padded = np.pad(x[1, 0], 2)
    for f, i, j in ((0, 0, 0), (4, 13, 9), (5, 27, 27)):  # corners see the padding
        want = (padded[i:i + 5, j:j + 5] * p["W1"][f, 0]).sum() + p["b1"][f]
        assert maps[1, f, i, j] == pytest.approx(want, abs=1e-4)
    assert maps.min() < 0, "before the ReLU"


@pytest.fixture
def mynet(tmp_path, monkeypatch):
    """mynet.py in the current folder: `net`, a small convnet (its convolution nested in a serial,
    after a Dropout), and `mlp`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mynet.py").write_text(
        "from fnnet.layers import Affine, Convolution, Dropout, Pooling, Relu, serial\n"
        "net = serial(Dropout(0.2), serial(Convolution(3, 4, stride=2, pad=1), Relu()), Pooling(2),\n"
        "             Affine(10))\n"
        "mlp = serial(Affine(20), Relu(), Affine(10))\n")
    return tmp_path


def test_your_own_serial_net_gives_maps_and_your_mlp_none(mynet, sevens):
    x = prepare_digit(sevens[0])[None]
    conv, _ = make_spec_run("runs/net", "mynet.py:net")
    assert load_classifier(conv, "mynet.py:net").feature_maps(x).shape == (1, 3, 14, 14)
    mlp, _ = make_spec_run("runs/mlp", "mynet.py:mlp")
    assert load_classifier(mlp, trust=True).feature_maps(x) is None


def test_an_mlp_run_has_no_maps(tmp_path, sevens):
    run, _ = make_run(tmp_path / "mln", "multi_layer_net", (784,), config={"hidden_size_list": [30, 20]})
    assert load_classifier(run).feature_maps(prepare_digit(sevens[0])[None]) is None


def test_feature_mosaic_tiles_each_map_scaled_to_0_1():
    maps = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3) * np.array([1, -1, 2, 0, 1])[:, None, None]
    out = feature_mosaic(maps)
    assert out.shape == (2 * 3 - 1, 3 * 4 - 1)  # 3 columns, 2 rows of 2x3 tiles, one-pixel gaps
    for k in range(5):
        r, c = divmod(k, 3)
        tile = out[3 * r:3 * r + 2, 4 * c:4 * c + 3]
        m = maps[k]
        want = (m - m.min()) / np.ptp(m) if np.ptp(m) else np.zeros_like(m)
        np.testing.assert_allclose(tile, want)
    assert np.isnan(out[2]).all() and np.isnan(out[:, 3]).all() and np.isnan(out[3:, 8:]).all()
    with pytest.raises(ValueError, match=r"feature_mosaic: maps must have shape \(FN, OH, OW\).*\(6, 28\)"):
        feature_mosaic(np.zeros((6, 28)))


def _captured(monkeypatch):
    """What `fnnet predict --show` used: its classifier ("clf") and the figure it saved ("fig")."""
    seen, save, load = {}, fnnet.plots.save_figure, predict_cli.classifier_for

    def keep_figure(fig, path, *args, **kwargs):
        seen["fig"] = fig
        return save(fig, path, *args, **kwargs)

    def keep_classifier(*args):
        seen["clf"] = load(*args)
        return seen["clf"]

    monkeypatch.setattr(fnnet.plots, "save_figure", keep_figure)
    monkeypatch.setattr(predict_cli, "classifier_for", keep_classifier)
    return seen


def test_show_draws_your_convnets_maps_beside_each_prediction(mynet, sevens, monkeypatch):
    params, _ = make_spec_run("runs/net", "mynet.py:net")
    seen = _captured(monkeypatch)
    assert main(["predict", "--params", params, "--trust-run", "--show", "maps.png", *sevens]) == 0
    axes = np.array(seen["fig"].axes).reshape(2, 4)  # input, 28x28, bars, feature maps per image
    maps = seen["clf"].feature_maps(np.stack([prepare_digit(f) for f in sevens]))
    for row, m in zip(axes, maps, strict=True):
        np.testing.assert_array_equal(row[3].images[0].get_array().filled(np.nan), feature_mosaic(m))
        assert row[3].get_title() == "3 feature maps"
    with Image.open(mynet / "maps.png") as img:
        assert img.format == "PNG" and img.size[0] > 900


def test_show_of_an_mlp_has_no_maps_panel(tmp_path, sevens, monkeypatch):
    run, _ = make_run(tmp_path / "tln", "two_layer_net", (784,), config={"hidden_size": 10})
    seen = _captured(monkeypatch)
    assert main(["predict", "--params", run, "--show", str(tmp_path / "mlp.png"), *sevens]) == 0
    assert len(seen["fig"].axes) == 2 * 3 and not any("feature" in a.get_title() for a in seen["fig"].axes)
