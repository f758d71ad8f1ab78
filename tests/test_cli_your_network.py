"""`fnnet train --model file.py:attr` / `module:attr` and `fnnet eval` on a network of your own (the
run's code runs only with --trust-run or the same --model)."""

import json

import pytest

from fnnet.cli import main

NET = """
from fnnet.layers import Affine, BatchNormalization, Convolution, Dropout, Pooling, Relu, serial

small = serial(Convolution(4, 3, pad=1), BatchNormalization(), Relu(), Pooling(2), Dropout(0.1), Affine(10))
lenet = serial(Convolution(6, 5, pad=2), Relu(), Pooling(2), Convolution(16, 5), Relu(), Pooling(2),
               Affine(10))
notnet = 3


def build(input_shape, output_size):
    return small.model(input_shape)
"""


@pytest.fixture
def netfile(tmp_path, monkeypatch):
    (tmp_path / "mynet.py").write_text(NET)
    (tmp_path / "broken.py").write_text("import numpyy\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "mynet.py"


def _train(*args):
    return main(["train", "--dataset", "digits", "--no-progress", "--epochs", "2", *args])


def test_train_and_eval_your_network_from_a_file(netfile, capsys):
    assert _train("--model", f"{netfile}:small", "--out", "a") == 0
    metrics = json.loads((netfile.parent / "a" / "metrics.json").read_text())
    assert metrics["run"]["model"] == f"{netfile}:small" and metrics["input_shape"] == [1, 8, 8]
    acc = metrics["final_test_acc"]
    capsys.readouterr()
    assert main(["eval", "--params", "a/params.npz"]) == 1  # a run folder's code runs only when trusted
    assert f"names the code {netfile}:small; fnnet does not run code" in capsys.readouterr().err
    assert main(["eval", "--params", "a/params.npz", "--trust-run"]) == 0  # model, data set, input shape
    assert f"test accuracy {acc:.4f} ({netfile}:small on digits" in capsys.readouterr().out
    assert main(["eval", "--params", "a/params.npz", "--model", "mynet.py:small"]) == 0  # named: the same
    assert f"test accuracy {acc:.4f} ({netfile}:small on digits" in capsys.readouterr().out


def test_train_a_function_returning_a_model_by_module_name(netfile, capsys):
    assert _train("--model", "mynet:build") == 0
    assert (netfile.parent / "runs" / "build-digits" / "params.npz").is_file()
    capsys.readouterr()
    assert main(["eval", "--params", "runs/build-digits/params.npz", "--trust-run"]) == 0
    assert "(mynet:build on digits" in capsys.readouterr().out


@pytest.mark.parametrize("spec,message", [
    ("nomodule:x", "--model nomodule:x: cannot import nomodule: ModuleNotFoundError: No module named "
                   "'nomodule'"),
    ("broken:x", "--model broken:x: cannot import broken: ModuleNotFoundError: No module named 'numpyy'"),
    ("mynet.py:nothere", "mynet.py has no attribute 'nothere' (it has: Affine, "),
    ("mynet.py:notnet", "mynet.py:notnet is of type int, not a network"),
    ("mynet.py:lenet", "mynet.py:lenet does not fit input (1, 8, 8): serial: layer 4 (Convolution 16x5x5) "
                       "does not fit input (6, 4, 4)"),
])
def test_errors_are_one_line(netfile, capsys, spec, message):
    assert _train("--model", spec) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err


def test_usage_errors(netfile, capsys):
    with pytest.raises(SystemExit) as e:
        _train("--model", "nonet")
    assert e.value.code == 2 and "name your own network as package.module:attr" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _train("--model", "mynet:small", "--hidden", "5")
    assert "--hidden: configures the built-in models" in capsys.readouterr().err


def test_eval_of_a_run_whose_model_fnnet_cannot_rebuild(tmp_path, capsys):
    cli = main
    assert cli(["train", "--dataset", "digits", "--no-progress", "--epochs", "1", "--out", str(tmp_path / "r")
                ]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    metrics["run"]["model"] = "bnconv"
    (tmp_path / "r" / "metrics.json").write_text(json.dumps(metrics))
    capsys.readouterr()
    assert cli(["eval", "--params", str(tmp_path / "r" / "params.npz")]) == 1
    assert "trained on the model 'bnconv', which fnnet cannot rebuild by name" in capsys.readouterr().err


@pytest.mark.slow  # trains LeNet-5 on 28x28 images for 2 epochs
def test_the_lenet5_script_falls_back_to_upscaled_digits_without_mnist(tmp_path, monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    monkeypatch.delenv("FNNET_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = Path(__file__).resolve().parent.parent / "scripts" / "ch08_lenet5.py"
    spec = importlib.util.spec_from_file_location("ch08_lenet5", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    acc = script.main(["--epochs", "2", "--data-dir", str(tmp_path / "nowhere")])
    out = capsys.readouterr().out
    assert "MNIST not found" in out and "digits: 1438 training and 359 test images" in out
    assert f"LeNet-5 on digits: test accuracy {acc:.4f} after 2 epochs" in out
    assert acc > 0.8
