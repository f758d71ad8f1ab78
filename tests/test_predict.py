"""fnnet predict and load_classifier (runs and the book's pickles), and how fnnet draw chooses its model."""

import json
import os
import re
import sys

import jax
import numpy as np
import pytest
from PIL import Image, ImageDraw
from test_prepare_digit import draw_two

from fnnet.cli import main
from fnnet.cli.draw import EXTRA_HINT, choose_params
from fnnet.datasets import prepare_digit
from fnnet.inference import load_classifier
from fnnet.io import save_params

LINE = re.compile(r"^(.+): (\d) \(p=(\d\.\d\d)\)  next: (\d) (\d\.\d\d), (\d) (\d\.\d\d)$")


def draw_seven(path, dx=60, dy=50):
    img = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(img).line([(dx, dy), (dx + 120, dy), (dx + 55, dy + 170)], fill=0, width=18, joint="curve")
    img.save(path)
    return str(path)


def make_run(folder, model, input_shape, dataset="mnist", config=None, seed=0):
    """A run folder as `fnnet train` leaves it: params.npz (random weights) and metrics.json."""
    from fnnet.models import get_model

    os.makedirs(folder, exist_ok=True)
    config = config or {}
    shapes, _ = jax.eval_shape(get_model(model, input_shape, 10, **config).init, jax.random.PRNGKey(0))
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(0, 0.05, v.shape).astype(np.float32) for k, v in shapes.items()}
    save_params(params, os.path.join(folder, "params.npz"))
    metrics = {"run": {"model": model, "config": config, "dataset": dataset, "optimizer": "sgd", "lr": 0.1,
                       "epochs": 1}, "seed": 0, "batch_size": 100, "input_shape": list(input_shape),
               "epochs_done": 1, "history": {"loss": [], "train_acc": [], "test_acc": []}}
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    return os.path.join(folder, "params.npz"), params


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "simple_convnet-mnist", "simple_convnet", (1, 28, 28))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    seven = draw_seven(folder / "seven.png")
    draw_two(dx=150, dy=100).save(folder / "two.png")
    return seven, str(folder / "two.png")


def test_one_line_per_image(conv_run, images, capsys):
    params, _ = conv_run
    assert main(["predict", "--params", params, *images]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2 and err == ""
    probs = load_classifier(params).probabilities(np.stack([prepare_digit(p) for p in images]))
    for line, path, p in zip(lines, images, probs, strict=True):
        m = LINE.match(line)
        assert m, line
        assert m.group(1) == path
        digits = [int(m.group(i)) for i in (2, 4, 6)]
        shown = [float(m.group(i)) for i in (3, 5, 7)]
        assert len(set(digits)) == 3 and shown == sorted(shown, reverse=True)
        assert digits == list(np.argsort(-p)[:3])
        np.testing.assert_allclose(shown, p[digits], atol=0.006)


def test_json_output(conv_run, images, capsys):
    params, _ = conv_run
    assert main(["predict", "--params", params, "--json", *images]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [g["image"] for g in got] == list(images)
    for g in got:
        assert set(g) == {"image", "label", "probabilities"} and len(g["probabilities"]) == 10
        assert abs(sum(g["probabilities"]) - 1) < 1e-4 and g["label"] == int(np.argmax(g["probabilities"]))


def test_show_writes_a_figure(conv_run, images, tmp_path, capsys):
    params, _ = conv_run
    out = tmp_path / "figs" / "predictions.png"
    out.parent.mkdir()
    assert main(["predict", "--params", params, "--show", str(out), *images]) == 0
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 200
    assert os.listdir(out.parent) == ["predictions.png"], "written atomically: no temporary left"
    assert main(["predict", "--params", params, "--show", str(tmp_path / "nowhere" / "x.png"), *images]) == 1
    assert "--show" in capsys.readouterr().err


def test_bad_files_are_one_line_each_and_the_others_are_still_predicted(conv_run, images, tmp_path, capsys):
    params, _ = conv_run
    text = tmp_path / "notes.txt"
    text.write_text("not a digit")
    blank = tmp_path / "blank.png"
    Image.new("L", (100, 100), 255).save(blank)
    argv = [images[0], str(text), str(tmp_path / "missing.png"), str(blank), images[1]]
    assert main(["predict", "--params", params, *argv]) == 1
    out, err = capsys.readouterr()
    assert [LINE.match(line).group(1) for line in out.splitlines()] == list(images)
    errors = err.splitlines()
    assert len(errors) == 3
    for line, bad in zip(errors, argv[1:4], strict=True):
        assert line.startswith("fnnet predict: error: prepare_digit: ") and bad in line, line
    assert main(["predict", "--params", params, "--json", str(text)]) == 1
    assert json.loads(capsys.readouterr().out) == []


def test_a_flat_two_layer_net_gets_the_images_flattened(tmp_path, images):
    params, p = make_run(tmp_path / "tln", "two_layer_net", (784,), config={"hidden_size": 20})
    clf = load_classifier(params)
    x = np.stack([prepare_digit(f) for f in images])
    h = np.maximum(x.reshape(2, -1) @ p["W1"] + p["b1"], 0)
    scores = h @ p["W2"] + p["b2"]
    want = np.exp(scores - scores.max(1, keepdims=True))
    np.testing.assert_allclose(clf.probabilities(x), want / want.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    assert clf.feature_maps(x) is None and clf.name == f"two_layer_net ({params})"


def test_feature_maps_are_the_first_convolution_before_relu(conv_run, images):
    params, p = conv_run
    clf = load_classifier(params)
    x = prepare_digit(images[0])[None]
    maps = clf.feature_maps(x)
    assert maps.shape == (1, 30, 24, 24) and maps.dtype == np.float32
    i, j, f = 7, 11, 3  # one output pixel by hand: filter f over the 5x5 patch at (i, j)
    want = (x[0, 0, i:i + 5, j:j + 5] * p["W1"][f, 0]).sum() + p["b1"][f]
    assert maps[0, f, i, j] == pytest.approx(want, abs=1e-4)
    assert maps.min() < 0, "before the ReLU"
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 28, 28\)"):
        clf.probabilities(x[0])


def test_networks_that_do_not_take_28x28_digits_are_refused(tmp_path, capsys):
    digits, _ = make_run(tmp_path / "d", "two_layer_net", (64,), dataset="digits", config={"hidden_size": 10})
    with pytest.raises(ValueError, match=r"takes inputs of shape \(64,\) \(trained on digits\)"):
        load_classifier(digits)
    loose = tmp_path / "loose"
    loose.mkdir()
    save_params({"W1": np.zeros((784, 5), np.float32)}, loose / "params.npz")
    with pytest.raises(ValueError, match="no metrics.json beside .* says which network"):
        load_classifier(loose / "params.npz")
    with pytest.raises(ValueError, match="unknown model 'lenet'"):
        load_classifier(digits, "lenet")
    conv, _ = make_run(tmp_path / "c", "simple_convnet", (1, 28, 28))
    with pytest.raises(ValueError, match="load_classifier: .* does not fit the model"):
        load_classifier(conv, "deep_convnet")
    assert main(["predict", "--params", digits, "x.png"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fnnet predict: error: load_classifier: ")
    assert main(["predict", "--params", str(tmp_path / "none.npz"), "x.png"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_the_books_weights_read_a_drawn_seven_and_two(book_weights_dir, images, capsys):
    pkl = {name: os.path.join(book_weights_dir, name)
           for name in ("sample_weight.pkl", "params.pkl", "deep_convnet_params.pkl")}
    for name, model, maps in (("sample_weight.pkl", None, None), ("params.pkl", None, (30, 24, 24)),
                              ("params.pkl", "simple_convnet", (30, 24, 24))):
        _reads_seven_and_two(pkl[name], model, maps, images)
    assert main(["predict", "--params", pkl["sample_weight.pkl"], *images]) == 0
    assert [LINE.match(line).group(2) for line in capsys.readouterr().out.splitlines()] == ["7", "2"]


def test_the_books_deep_convnet_reads_them_too(book_weights_dir, images):
    _reads_seven_and_two(os.path.join(book_weights_dir, "deep_convnet_params.pkl"), "deep_convnet",
                         (16, 28, 28), images)


def _reads_seven_and_two(path, model, maps, images):
    clf = load_classifier(path, model)
    x = np.stack([prepare_digit(p) for p in images])
    probs = clf.probabilities(x)
    assert list(probs.argmax(1)) == [7, 2], (path, probs.round(2))
    got = clf.feature_maps(x)
    assert (got is None) if maps is None else got.shape == (2, *maps)


# fnnet draw: the model it chooses, and the hint when the draw extra is missing (no server is started).

def test_draw_chooses_the_newest_mnist_run_then_the_books_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    books = tmp_path / "book"
    books.mkdir()
    (books / "params.pkl").write_bytes(b"")
    monkeypatch.setenv("FNNET_BOOK_WEIGHTS_DIR", str(books))
    book = (str(books / "params.pkl"), "simple_convnet", "$FNNET_BOOK_WEIGHTS_DIR")
    assert choose_params(None, None) == book
    old, _ = make_run("runs/old", "two_layer_net", (784,), config={"hidden_size": 5})
    new, _ = make_run("runs/new", "two_layer_net", (784,), config={"hidden_size": 5})
    digits, _ = make_run("runs/digits", "two_layer_net", (64,), dataset="digits", config={"hidden_size": 5})
    os.utime(old, (1e9, 1e9))
    os.utime(new, (2e9, 2e9))
    os.utime(digits, (3e9, 3e9))  # newest, but 8x8 digits: not a model to draw for
    assert choose_params(None, None) == (new, None, "the newest run in runs/")
    assert choose_params("x.npz", "deep_convnet") == ("x.npz", "deep_convnet", "--params")
    monkeypatch.chdir(books)
    monkeypatch.delenv("FNNET_BOOK_WEIGHTS_DIR")
    with pytest.raises(ValueError, match=r"no model to draw for: .*_WEIGHTS_DIR is not set; train one"):
        choose_params(None, None)


def test_draw_serves_the_chosen_classifier(conv_run, monkeypatch, capsys):
    web = pytest.importorskip("fnnet.web", reason="the draw extra (starlette, uvicorn) is not installed")
    served = {}
    monkeypatch.setattr(web, "serve", lambda clf, host, port: served.update(clf=clf, host=host, port=port))
    assert main(["draw", "--params", conv_run[0], "--port", "8123"]) == 0
    assert served["host"] == "127.0.0.1" and served["port"] == 8123
    assert served["clf"].name.startswith("simple_convnet (")
    assert "open http://127.0.0.1:8123/" in capsys.readouterr().out


def test_draw_without_the_extra_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "starlette", None)  # import starlette raises ImportError
    assert main(["draw"]) == 1
    assert capsys.readouterr().err == EXTRA_HINT + "\n"
    with pytest.raises(SystemExit) as e:
        main(["draw", "--port", "70000"])
    assert e.value.code == 2
