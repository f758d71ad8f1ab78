"""`fnnet experiment NAME --quick`: each experiment runs, writes its figures and results.json, and its
numbers show what its figure is meant to show."""

import argparse
import json
import os

import matplotlib.image
import numpy as np
import pytest

from fnnet import experiments

NAMES = ["gates", "gradient", "two-layer-net-numerical", "optimizer-paths", "optimizer-mnist",
         "weight-init-histograms", "weight-init-mnist", "batchnorm", "overfitting", "hyperparameter-search"]


def parse(argv):
    parser = argparse.ArgumentParser(prog="fnnet")
    sub = parser.add_subparsers(dest="command")
    experiments.add_parser(sub)
    return parser.parse_args(["experiment", *argv])


def run_quick(name, out, seed=0):
    """Run `fnnet experiment NAME --quick --out OUT` through the parser; results.json as loaded."""
    assert experiments.run(parse([name, "--quick", "--out", str(out), "--seed", str(seed)])) == 0
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert results["experiment"] == name and results["quick"] is True and results["seed"] == seed
    assert results["figures"]
    for path in results["figures"]:
        img = matplotlib.image.imread(path)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, (path, img.shape)
        assert img[..., :3].std() > 0.05, f"{path} looks blank"
    return results


def test_registry_parser_and_list(capsys):
    assert list(experiments.EXPERIMENTS) == NAMES
    for name, (description, fn) in experiments.EXPERIMENTS.items():
        assert description and "\n" not in description and callable(fn), name
    assert experiments.run(parse(["--list"])) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == NAMES
    args = parse(["gates"])
    assert (args.name, args.out, args.seed, args.quick, args.list) == ("gates", None, 0, False, False)


def test_bad_input_is_one_line_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"^fnnet experiment: unknown experiment 'bogus'; choose one of "
                                         r"gates, gradient, .*hyperparameter-search$"):
        experiments.run(parse(["bogus"]))
    with pytest.raises(ValueError, match=r"name an experiment \(fnnet experiment --list shows them\)"):
        experiments.run(parse([]))
    with pytest.raises(SystemExit):
        parse(["gates", "--seed", "-1"])
    assert "must be in 0..4294967295 (a JAX PRNG key holds 32 bits), got -1" in capsys.readouterr().err
    afile = tmp_path / "file"
    afile.write_text("x")
    msg = rf"experiment gates: the output folder {afile} exists and is not a folder"
    with pytest.raises(NotADirectoryError, match=msg):
        experiments.run(parse(["gates", "--out", str(afile)]))
    with pytest.raises(ValueError, match=r"experiment gates: seed must be >= 0, got -2"):
        experiments.EXPERIMENTS["gates"][1](str(tmp_path), seed=-2)
    with pytest.raises(ValueError, match=r"experiment gates: seed must be in 0..4294967295"):
        experiments.EXPERIMENTS["gates"][1](str(tmp_path), seed=2**32)


def test_module_entry_point(tmp_path, capsys):
    from fnnet.experiments.__main__ import main

    assert main(["--list"]) == 0
    assert capsys.readouterr().out.startswith("gates")
    assert main(["nope"]) == 1
    assert "unknown experiment 'nope'" in capsys.readouterr().err


def test_save_figure_with_a_palette(tmp_path):
    from PIL import Image

    from fnnet.experiments import _common
    from fnnet.plots import save_figure

    plt = _common.pyplot()
    for colors in (None, 16):
        fig, ax = plt.subplots()
        ax.plot(np.sin(np.linspace(0, 6, 100)))
        save_figure(fig, tmp_path / f"{colors}.png", colors=colors)
        with Image.open(tmp_path / f"{colors}.png") as img:
            assert img.mode == ("P" if colors else "RGBA")
            if colors:
                assert len(img.getcolors()) <= 16
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match=r"save_figure: colors must be an integer from 2 to 256, got 300"):
        save_figure(fig, tmp_path / "bad.png", colors=300)
    assert not (tmp_path / "bad.png").exists()


def test_gates(tmp_path):
    r = run_quick("gates", tmp_path)
    assert r["truth_tables"] == {"AND": [0, 0, 0, 1], "NAND": [1, 1, 1, 0], "OR": [0, 1, 1, 1],
                                 "XOR": [0, 1, 1, 0]}
    assert r["figures"] == [str(tmp_path / "gates.png")]
    from fnnet.experiments import gates

    fig = gates.figure(r)
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "input with output 1" in labels and "input with output 0" in labels and "decision line" in labels


def test_direct_call_writes_to_the_default_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = experiments.EXPERIMENTS["gates"][1](progress=False)
    assert results["out_dir"] == os.path.join("runs", "experiments", "gates")
    assert os.path.isfile(os.path.join("runs", "experiments", "gates", "results.json"))
    assert os.path.isfile(os.path.join("runs", "experiments", "gates", "gates.png"))


def test_gradient(tmp_path):
    r = run_quick("gradient", tmp_path)
    slopes = dict((a, s) for a, s in r["derivatives"])
    assert slopes == pytest.approx({5.0: 0.2, 10.0: 0.3}, abs=1e-9)
    assert r["gradients"]["(3, 4)"] == pytest.approx([6.0, 8.0], abs=1e-8)
    assert r["gradients"]["(0, 2)"] == pytest.approx([0.0, 4.0], abs=1e-8)
    pts, grads = np.asarray(r["field_points"]), np.asarray(r["field_gradients"])
    np.testing.assert_allclose(grads, 2 * pts, atol=1e-7)
    path = np.asarray(r["descent_path"])
    assert path.shape == (21, 2) and tuple(path[0]) == (-3.0, 4.0)
    f = (path**2).sum(axis=1)
    assert np.all(np.diff(f) < 0) and f[-1] < 1e-2 * f[0]
    np.testing.assert_allclose(path[-1], 0.8**20 * np.array([-3.0, 4.0]), rtol=1e-6)


def test_optimizer_paths(tmp_path):
    """The figure's point: on a function 20 times flatter in x than in y, SGD zigzags across the
    valley on every step, a path several times longer than any other optimizer's."""
    r = run_quick("optimizer-paths", tmp_path)
    opt = r["optimizers"]
    assert list(opt) == ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]
    for name, o in opt.items():
        assert np.asarray(o["path"]).shape == (31, 2) and tuple(o["path"][0]) == (-7.0, 2.0), name
        assert o["final_f"] < 0.2 * (49 / 20 + 4), name
    assert opt["sgd"]["y_sign_changes"] == 30
    for name in ("momentum", "nesterov", "adagrad", "adam"):
        assert opt[name]["path_length"] < opt["sgd"]["path_length"] / 2.5, name
        assert opt[name]["y_sign_changes"] < 10, name
    assert opt["adagrad"]["final_f"] < opt["sgd"]["final_f"]


def test_weight_init_histograms(tmp_path):
    r = run_quick("weight-init-histograms", tmp_path)
    names = [os.path.basename(p) for p in r["figures"]]
    assert names == [f"activation_hist_{a}.png" for a in ("sigmoid", "tanh", "relu")]
    stats = r["stats"]
    for act, inits in stats.items():
        for init, layers in inits.items():
            for s in layers:
                # Every panel spans its own values: nothing falls outside the plotted range.
                assert s["edges"][0] <= s["min"] and s["edges"][-1] >= s["max"], (act, init)
                assert sum(s["counts"]) == r["n_samples"] * r["nodes"], (act, init)
    relu = stats["relu"]
    assert relu["std 1"][-1]["max"] > 1e4 and relu["std 1"][-1]["std"] > 1e3
    assert relu["std 0.01"][-1]["max"] < 1e-3
    assert all(0.4 < s["zero_fraction"] < 0.6 for s in relu["He"])
    assert all(0.4 < s["std"] < 2.0 for s in relu["He"])
    assert relu["Xavier"][-1]["std"] < 0.5 * relu["Xavier"][0]["std"]
    sig = stats["sigmoid"]
    saturated = [(s["counts"][0] + s["counts"][-1]) / sum(s["counts"]) for s in sig["std 1"]]
    assert min(saturated) > 0.4, saturated
    assert all(s["std"] < 0.05 for s in sig["std 0.01"][1:])
    assert all(s["std"] > 0.1 for s in sig["Xavier"])


@pytest.mark.mnist
def test_two_layer_net_numerical(tmp_path, mnist_dir):
    """The numerical and the backprop trainings take the same steps; backprop is much faster."""
    r = run_quick("two-layer-net-numerical", tmp_path)
    assert len(r["numerical_loss"]) == len(r["backprop_loss"]) == r["iterations"] == 3
    np.testing.assert_allclose(r["numerical_loss"], r["backprop_loss"], rtol=0, atol=1e-8)
    assert r["max_param_difference"] < 1e-8
    assert r["numerical_loss"][0] == pytest.approx(np.log(10), abs=0.05)
    assert r["speed_ratio"] > 5
    assert r["full_run"]["iterations"] == 10 and len(r["full_run"]["test_acc"]) == 1


@pytest.mark.mnist
def test_hyperparameter_search_never_touches_test_data(tmp_path, mnist_dir, monkeypatch):
    """The test set is poisoned (NaN images, labels out of range): any use of it would fail."""
    import fnnet.datasets

    real = fnnet.datasets.load_mnist

    def poisoned(*args, **kwargs):
        train, (x_te, t_te) = real(*args, **kwargs)
        return train, (np.full_like(x_te, np.nan), np.full_like(t_te, -1))

    monkeypatch.setattr(fnnet.datasets, "load_mnist", poisoned)
    r = run_quick("hyperparameter-search", tmp_path)
    train_idx, val_idx = set(r["train_indices"]), set(r["val_indices"])
    assert not train_idx & val_idx and train_idx | val_idx == set(range(500))
    assert (r["n_train"], r["n_val"]) == (400, 100)
    accs = [t["val_acc"] for t in r["ranking"]]
    assert accs == sorted(accs, reverse=True) and len(accs) == 4
    assert [t["val_acc"] for t in r["trials"]].count(None) == 0
    for t in r["trials"]:
        assert 1e-6 <= t["lr"] <= 1e-2 and 1e-8 <= t["weight_decay"] <= 1e-4
        assert len(t["val_acc_curve"]) == r["epochs"] == 5


@pytest.mark.mnist
@pytest.mark.slow
def test_optimizer_mnist(tmp_path, mnist_dir):
    r = run_quick("optimizer-mnist", tmp_path)
    final = {name: o["final_loss"] for name, o in r["optimizers"].items()}
    assert r["iterations"] == 50
    assert max(final, key=final.get) == "sgd", final
    for name in ("momentum", "adagrad", "adam"):
        assert final[name] < final["sgd"] - 0.5, final


@pytest.mark.mnist
@pytest.mark.slow
def test_weight_init_mnist(tmp_path, mnist_dir):
    r = run_quick("weight-init-mnist", tmp_path)
    final = {name: o["final_loss"] for name, o in r["inits"].items()}
    assert final["std 0.01"] == pytest.approx(np.log(10), abs=0.01), final
    assert final["Xavier"] < final["std 0.01"] - 0.02 and final["He"] < final["Xavier"], final


@pytest.mark.mnist
@pytest.mark.slow
def test_batchnorm(tmp_path, mnist_dir):
    """Small weight scales: without Batch Norm the net stays at chance, with it it learns."""
    r = run_quick("batchnorm", tmp_path)
    assert [s["std"] for s in r["scales"]] == pytest.approx([1e-2, 1e-3, 1e-4])
    for s in r["scales"]:
        without, with_bn = s["without Batch Norm"], s["with Batch Norm"]
        assert max(without) < 0.2, s
        assert with_bn[-1] > without[-1] + 0.1, s
    assert r["scales"][0]["with Batch Norm"][-1] > 0.6


@pytest.mark.mnist
@pytest.mark.slow
def test_overfitting(tmp_path, mnist_dir):
    """Weight decay and dropout narrow the gap between training and test accuracy."""
    r = run_quick("overfitting", tmp_path)
    runs = r["runs"]
    plain, decay, drop = runs["plain"], runs["weight decay 0.1"], runs["dropout 0.2"]
    assert plain["final_train_acc"] > 0.95 and plain["gap"] > 0.2
    assert decay["gap"] < plain["gap"] - 0.05
    assert drop["gap"] < plain["gap"] - 0.05
