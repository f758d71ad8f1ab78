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
        ([], "required: {train,eval,experiment,predict,draw}"),
        (["train", "--dataset", "digits", "--schedule", "cosine", "--decay-epochs", "2"],
         "belong to the step schedule, not cosine"),
        (["train", "--dataset", "digits", "--epochs", "5", "--decay-epochs", "5"], "the rate must drop"),
        (["train", "--dataset", "digits", "--schedule", "step"], "step needs --decay-epochs N"),
        (["train", "--dataset", "digits", "--epochs", "3", "--warmup-epochs", "3"], "fewer than the 3"),
        (["train", "--resume", "--overwrite"], "not allowed with argument"),
        (["train", "--weight-init", "big"], "argument --weight-init: expected a positive std or one of"),
        (["train", "--clip-norm", "0"], "argument --clip-norm: must be > 0"),
        (["train", "--model", "deep_convnet", "--weight-init", "he"], "deep_convnet uses He initialisation"),
    ],
)
def test_usage_errors_exit_2_naming_the_option(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--out", str(tmp_path)] if argv[:1] == ["train"] else argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    command = argv[0] if argv else None
    first, see = err.splitlines()  # one line, then where to read more; no usage block
    assert first.startswith(f"fnnet {command}: error: " if command else "fnnet: error: ") and message in first
    assert see == (f"see fnnet {command} --help" if command else "see fnnet --help")


def test_missing_mnist_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FNNET_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("FNNET_MNIST_MIRRORS", (tmp_path / "no-mirror").as_uri())
    assert main(["train", "--no-progress", "--out", str(tmp_path / "run"), "--data-dir",
                 str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    first, *causes = err.splitlines()  # one line, then each place tried, indented
    assert first.startswith("fnnet train: error: cannot load mnist: no verified copy")
    assert first.endswith("Tried, in order:")
    assert "FNNET_DATA_DIR" in first and "--dataset digits" in first and "Traceback" not in err
    assert causes and all(c.startswith("  - ") for c in causes)
    assert any("nowhere" in c for c in causes) and any("download" in c for c in causes)


def test_eval_with_params_of_another_shape_is_refused(tmp_path, capsys):
    assert train(tmp_path, "--epochs", "1") == 0
    capsys.readouterr()
    assert main(["eval", "--params", str(tmp_path / "run" / "params.npz"), "--dataset", "digits",
                 "--hidden", "20"]) == 1
    err = capsys.readouterr().err
    assert "W1 has shape (64, 50)" in err and "(64, 20)" in err


def test_one_command_step_decay_equals_the_optimizer_switched_by_hand(tmp_path, capsys):
    """`--schedule step --decay-epochs 1` (the chapter 7 records' recipe) trains the last epoch at
    lr/10 in one run: the same parameters as Adam at lr switched by hand after epoch 1."""
    import jax

    from fnnet import optimizers
    from fnnet.datasets import load_digits
    from fnnet.models import get_model
    from fnnet.training import fit

    assert train(tmp_path, "--optimizer", "adam", "--lr", "0.01", "--epochs", "2", "--schedule", "step",
                 "--decay-epochs", "1") == 0
    model = get_model("two_layer_net", (64,), 10)
    train_data, test = load_digits()
    quiet = dict(progress=False, log=lambda *a: None)
    fit(model, optimizers.adam(0.01), train_data, test, epochs=1, out_dir=tmp_path / "hand", **quiet)
    by_hand = fit(model, optimizers.adam(0.01 * 0.1), train_data, test, epochs=2, out_dir=tmp_path / "hand",
                  resume=True, **quiet)
    with np.load(tmp_path / "run" / "params.npz") as z:
        for k, v in by_hand.params.items():
            np.testing.assert_array_equal(z[k], np.asarray(jax.device_get(v)))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["run"]["schedule"] == {"kind": "step", "lr": 0.01, "boundaries_epochs": [1], "factor": 0.1}


def test_weight_init_and_clip_norm_reach_the_run(tmp_path):
    assert train(tmp_path, "--weight-init", "xavier", "--clip-norm", "1.0", "--warmup-epochs", "1",
                 "--schedule", "cosine", "--epochs", "3") == 0
    run = json.loads((tmp_path / "run" / "metrics.json").read_text())["run"]
    assert run["config"] == {"weight_init_std": "xavier"} and run["clip_norm"] == 1.0
    assert run["schedule"] == {"kind": "cosine", "lr": 0.1, "decay_epochs": 2, "warmup_epochs": 1}


def test_schedule_from_the_options_drops_after_the_named_epochs():
    """--boundaries counts epochs from the start of the run, with or without a warm-up."""
    import argparse

    from fnnet.cli import _schedule, build_parser

    parser = build_parser().commands["train"]
    for warmup in (None, 1):
        args = argparse.Namespace(schedule=None, decay_epochs=None, boundaries=[3, 5], warmup_epochs=warmup)
        sched, desc = _schedule(args, parser, 0.1, 6, 10)
        lrs = [float(sched(step)) for step in (0, 5, 10, 29, 30, 49, 50, 59)]
        want = [0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
        if warmup:
            want[:2] = [0.0, 0.05]
        np.testing.assert_allclose(lrs, want, rtol=1e-6)
        assert desc["boundaries_epochs"] == [3, 5]


def test_eval_reads_the_books_pickles(mnist_dir, book_weights_dir, capsys):
    """sample_weight.pkl is chapter 3's three-layer network; params.pkl the SimpleConvNet."""
    import os

    assert main(["eval", "--params", os.path.join(book_weights_dir, "sample_weight.pkl")]) == 0
    assert "test accuracy 0.9352 (the chapter 3 network" in capsys.readouterr().out
    assert main(["eval", "--params", os.path.join(book_weights_dir, "params.pkl"), "--model",
                 "simple_convnet"]) == 0
    assert "test accuracy 0.9600 (simple_convnet on mnist" in capsys.readouterr().out
