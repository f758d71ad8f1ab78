"""The `fnnet` command, driven through main([...]) on the offline digits data."""

import json
import re

import numpy as np
import pytest

from fnnet.cli import main


def train(tmp_path, *extra, out="run"):
    return main(["train", "--dataset", "digits", "--no-progress", "--out", str(tmp_path / out), *extra])


def test_train_writes_outputs_and_eval_reads_them(tmp_path, capsys):
    assert train(tmp_path, "--epochs", "2", "--lr", "0.3") == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2
    pattern = r"epoch +2/2 +loss \d\.\d{4} +train acc \d\.\d{4} +test acc \d\.\d{4} +[\d,]+ images/s"
    assert re.match(pattern, lines[1])
    run = tmp_path / "run"
    for name in ("metrics.json", "curves.png", "params.npz", "checkpoint-0002.ckpt"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_done"] == 2 and metrics["iterations"] == 2 * (1438 // 100)
    assert metrics["run"]["model"] == "two_layer_net" and metrics["run"]["lr"] == 0.3
    acc = metrics["final_test_acc"]

    assert main(["eval", "--params", str(run / "params.npz"), "--dataset", "digits"]) == 0
    assert f"test accuracy {acc:.4f}" in capsys.readouterr().out
    assert main(["eval", "--params", str(run / "checkpoint-0002.ckpt"), "--dataset", "digits"]) == 0
    assert f"test accuracy {acc:.4f}" in capsys.readouterr().out


def test_resume_continues_and_matches_uninterrupted(tmp_path, capsys):
    args = ["--optimizer", "momentum", "--lr", "0.05", "--seed", "7"]
    assert train(tmp_path, "--epochs", "2", *args, out="full") == 0
    assert train(tmp_path, "--epochs", "1", *args, out="part") == 0
    capsys.readouterr()
    assert train(tmp_path, "--epochs", "2", "--resume", *args, out="part") == 0
    out = capsys.readouterr().out
    assert "resuming from" in out and out.count("\nepoch ") == 1
    with np.load(tmp_path / "full" / "params.npz") as a, np.load(tmp_path / "part" / "params.npz") as b:
        for k in ("W1", "b1", "W2", "b2"):
            np.testing.assert_array_equal(a[k], b[k])


def test_corrupt_checkpoint_is_one_clear_error(tmp_path, capsys):
    assert train(tmp_path, "--epochs", "1") == 0
    ckpt = tmp_path / "run" / "checkpoint-0001.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:-50])
    capsys.readouterr()
    assert train(tmp_path, "--epochs", "2", "--resume") == 1
    err = capsys.readouterr().err
    assert "fnnet train: error:" in err and "truncated or was altered" in err and "Traceback" not in err


def test_multi_layer_net_batchnorm_adam_and_eval_with_state(tmp_path, capsys):
    assert train(tmp_path, "--model", "multi_layer_net", "--hidden", "40,40", "--batchnorm",
                 "--optimizer", "adam", "--lr", "0.01", "--epochs", "3", "--weight-decay", "1e-4") == 0
    run = tmp_path / "run"
    assert (run / "state.npz").is_file()
    acc = json.loads((run / "metrics.json").read_text())["final_test_acc"]
    assert acc > 0.8
    capsys.readouterr()
    assert main(["eval", "--params", str(run / "params.npz"), "--dataset", "digits", "--model",
                 "multi_layer_net", "--hidden", "40,40", "--batchnorm"]) == 0
    assert f"test accuracy {acc:.4f}" in capsys.readouterr().out


def test_convnet_on_digits_with_augmentation(tmp_path):
    argv = ["--model", "simple_convnet", "--epochs", "1", "--augment", "--batch-size", "500"]
    assert train(tmp_path, *argv) == 0
    assert (tmp_path / "run" / "params.npz").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["train", "--lr", "-1"], "argument --lr: must be > 0"),
        (["train", "--lr", "fast"], "argument --lr: invalid number 'fast'"),
        (["train", "--epochs", "0"], "argument --epochs: must be >= 1"),
        (["train", "--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
        (["train", "--optimizer", "lbfgs"], "argument --optimizer: invalid choice: 'lbfgs'"),
        (["train", "--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
        (["train", "--batchnorm"], "argument --batchnorm: only multi_layer_net"),
        (["train", "--augment", "--dataset", "digits"], "argument --augment: only the convnets"),
        (["train", "--dataset", "digits", "--batch-size", "5000"], "argument --batch-size: 5000 is larger"),
        (["train", "--hidden", "10,x"], "argument --hidden"),
        (["train", "--model", "deep_convnet", "--dataset", "digits"],
         "argument --model: deep_convnet cannot be built for digits input (1, 8, 8)"),
        (["eval", "--dataset", "digits"], "the following arguments are required: --params"),
        ([], "required: {train,eval}"),
    ],
)
def test_usage_errors_exit_2_naming_the_option(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--out", str(tmp_path)] if argv[:1] == ["train"] else argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage: fnnet" in err and "Traceback" not in err


def test_missing_mnist_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FNNET_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("FNNET_MNIST_MIRRORS", (tmp_path / "no-mirror").as_uri())
    assert main(["train", "--no-progress", "--out", str(tmp_path / "run"), "--data-dir",
                 str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fnnet train: error: cannot load mnist: MNIST not found")
    assert "FNNET_DATA_DIR" in err and "--dataset digits" in err and "Traceback" not in err


def test_eval_with_params_of_another_shape_is_refused(tmp_path, capsys):
    assert train(tmp_path, "--epochs", "1") == 0
    capsys.readouterr()
    assert main(["eval", "--params", str(tmp_path / "run" / "params.npz"), "--dataset", "digits",
                 "--hidden", "20"]) == 1
    err = capsys.readouterr().err
    assert "W1 has shape (64, 50)" in err and "(64, 20)" in err
