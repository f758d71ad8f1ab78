"""Hardening: nothing read without a limit, no wait without end, no silent wrong answer, one clear
message. Each test here failed before these checks existed (see the comments for what happened).

Memory bombs run in a fresh process that reports its peak resident memory (getrusage), which must
stay under 500 MB; anything that could block (a FIFO) runs in a process with a timeout.
"""

import json
import os
import signal
import subprocess
import sys
import warnings

import chex
import jax
import numpy as np
import pytest
from bombs import peak_rss_run, sparse_file, zip_bomb

from fnnet import experiments, optimizers, schedules
from fnnet.cli import main
from fnnet.datasets import load_digits
from fnnet.io import NotARegularFileError, TooLargeError, load_params, save_params
from fnnet.models import get_model
from fnnet.training import CheckpointError, evaluate, fit, load_run_params
from fnnet.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

TESTS = os.path.dirname(os.path.abspath(__file__))
PEAK_MB = 500
BOMB_FLOATS = 800 * 2**20  # 3.2 GB of float32 zeros, deflated to 3.1 MB


def _env():
    env = dict(os.environ, MPLBACKEND="Agg", JAX_PLATFORMS="cpu", PYTHONPATH=TESTS)
    env.pop("FNNET_DATA_DIR", None)
    return env


def quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _model():
    return get_model("two_layer_net", (64,), 10, hidden_size=20)


def _meta(epoch=1, steps=1):
    return {"epoch": epoch, "step": epoch * steps, "settings": {"steps_per_epoch": steps}, "run": None,
            "history": {"loss": [1.0] * epoch * steps, "train_acc": [0.5] * epoch, "test_acc": [0.5] * epoch,
                        "images_per_s": [1.0] * epoch}}


def _write_checkpoint(path, params, epoch=1):
    save_checkpoint(path, params=params, state={}, opt_state=(), key=jax.random.PRNGKey(0), meta=_meta(epoch))


# --- every read has a limit -------------------------------------------------------------------

def test_sparse_3gb_checkpoint_is_refused_before_reading(tmp_path):
    # before: read whole (3 GB resident) before the header check failed
    sparse_file(tmp_path / "checkpoint-0001.ckpt", 3 * 10**9, b"FNNET-CHECKPOINT-1 ")
    r = peak_rss_run(f"""
from fnnet.training.checkpoint import CheckpointError, latest_checkpoint
try:
    latest_checkpoint({str(tmp_path)!r}, log=lambda line: None, max_bytes=2**30)
    result = {{'error': None}}
except CheckpointError as e:
    result = {{'error': str(e)}}
""", env=_env())
    assert "3,000,000,000 bytes, more than the 1,073,741,824" in r["error"], r
    assert r["peak_mb"] < PEAK_MB, r


def test_checkpoint_zip_bomb_with_a_valid_checksum_is_refused(tmp_path):
    # before: the checksum matched, so the payload was decompressed: 3.2 GB resident
    import hashlib

    payload = zip_bomb({"params/00000.npy": BOMB_FLOATS})
    path = tmp_path / "checkpoint-0001.ckpt"
    path.write_bytes(b"FNNET-CHECKPOINT-1 " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    r = peak_rss_run(f"""
import jax
from fnnet.models import get_model
from fnnet.training import CheckpointError, load_run_params
params, state = get_model("two_layer_net", (64,), 10).init(jax.random.PRNGKey(0))
try:
    load_run_params({str(path)!r}, params, state)
    result = {{'error': None}}
except CheckpointError as e:
    result = {{'error': str(e)}}
""", env=_env())
    assert "would decompress to 3,355,443,328 bytes" in r["error"] and "zip bomb" in r["error"], r
    assert r["peak_mb"] < PEAK_MB, r


def test_params_zip_bomb_is_refused_by_load_params_and_fnnet_eval(tmp_path):
    # before: `fnnet eval --params bomb.npz` decompressed 3.2 GB, then said a key was missing
    bomb, small = tmp_path / "bomb.npz", tmp_path / "small-bomb.npz"
    bomb.write_bytes(zip_bomb({"W1.npy": BOMB_FLOATS}))
    small.write_bytes(zip_bomb({"W1.npy": BOMB_FLOATS // 4}))  # 0.8 MB file, 0.8 GB inside
    r = peak_rss_run(f"""
import contextlib, io
from fnnet.io import TooLargeError, load_params
from fnnet.cli import main
try:
    load_params({str(bomb)!r})
    result = {{'error': None}}
except TooLargeError as e:
    result = {{'error': str(e)}}
for name, path in (('bomb', {str(bomb)!r}), ('small', {str(small)!r})):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        result[name + '_rc'] = main(['eval', '--params', path, '--dataset', 'digits'])
    result[name] = err.getvalue()
""", env=_env())
    assert "load_params:" in r["error"], r
    assert "would decompress to 3,355,443,328 bytes, more than the 2,147,483,648" in r["error"], r
    for name, what in (("bomb", "is 3,2"), ("small", "would decompress to 838,860,928 bytes")):
        assert r[name + "_rc"] == 1 and r[name].count("\n") == 1, r
        assert r[name].startswith("fnnet eval: error: fnnet eval:") and what in r[name], r
        assert "(the model's parameters take 15,040 bytes)" in r[name], r
    assert r["peak_mb"] < PEAK_MB, r


def test_state_npz_beside_params_is_capped(tmp_path):
    model = get_model("multi_layer_net", (64,), 10, hidden_size_list=[20], use_batchnorm=True)
    params, state = model.init(jax.random.PRNGKey(0))
    save_params(params, tmp_path / "params.npz")
    (tmp_path / "state.npz").write_bytes(zip_bomb({"00000.npy": 4 * 2**20}))  # 16 MiB for 40 floats
    with pytest.raises(TooLargeError, match=r"load_tree: state file .*state\.npz would decompress to"):
        load_run_params(tmp_path / "params.npz", params, state)


# --- only regular files --------------------------------------------------------------------------

def test_a_fifo_named_as_a_checkpoint_is_skipped_not_waited_on(tmp_path):
    # before: `--resume` hung forever opening the FIFO checkpoint-0009.ckpt
    params, _ = _model().init(jax.random.PRNGKey(0))
    _write_checkpoint(tmp_path / "checkpoint-0001.ckpt", params)
    os.mkfifo(tmp_path / "checkpoint-0009.ckpt")
    code = f"""
import sys
from fnnet.training.checkpoint import latest_checkpoint
lines = []
path, ck = latest_checkpoint({str(tmp_path)!r}, log=lines.append)
print(path); print(lines[0])
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=_env())
    assert proc.returncode == 0, proc.stderr
    path, warning = proc.stdout.splitlines()
    assert path.endswith("checkpoint-0001.ckpt")
    assert "checkpoint-0009.ckpt is a FIFO (named pipe), not a regular file" in warning


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_params_and_checkpoints_refuse_devices_and_fifos(tmp_path, kind):
    # before: a FIFO hung the read; a link to /dev/zero was read until MemoryError
    for name in ("p.npz", "checkpoint-0001.ckpt", "state.npz"):
        if kind == "fifo":
            os.mkfifo(tmp_path / name)
        else:
            os.symlink("/dev/zero", tmp_path / name)
    code = f"""
import os
from fnnet.io import load_params
from fnnet.training.checkpoint import load_checkpoint
from fnnet.training.checkpoint import load_tree
for call in (lambda: load_params(os.path.join({str(tmp_path)!r}, 'p.npz')),
             lambda: load_checkpoint(os.path.join({str(tmp_path)!r}, 'checkpoint-0001.ckpt')),
             lambda: load_tree(os.path.join({str(tmp_path)!r}, 'state.npz'), {{}})):
    try:
        call()
        print('read')
    except Exception as e:
        print(type(e).__name__, e)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=_env())
    lines = proc.stdout.splitlines()
    want = "a FIFO (named pipe)" if kind == "fifo" else "a character device"
    assert len(lines) == 3 and all(f"is {want}, not a regular file" in line for line in lines), proc
    assert lines[0].startswith("NotARegularFileError load_params: parameter file")
    assert lines[1].startswith("CheckpointError checkpoint")
    assert lines[2].startswith("NotARegularFileError load_tree: state file")


def test_not_a_regular_file_is_an_oserror_with_the_path(tmp_path):
    with pytest.raises(NotARegularFileError, match=rf"load_params: parameter file {tmp_path} is a folder"):
        load_params(tmp_path)


# --- no silent wrong answers ----------------------------------------------------------------------

def test_seeds_outside_what_a_key_holds_are_refused(digits, capsys):
    # before: seed 2**32 trained a run byte-identical to seed 0, recorded as 4294967296
    with pytest.raises(ValueError, match=r"fit: seed must be in 0\.\.4294967295 \(a JAX PRNG key holds 32"):
        fit(_model(), optimizers.sgd(0.1), *digits, epochs=1, seed=2**32, log=quiet, progress=False)
    for seed in ("4294967296", "99999999999999999999"):  # before: a run / a raw OverflowError
        with pytest.raises(SystemExit) as e:
            main(["train", "--seed", seed])
        assert e.value.code == 2
        first, see = capsys.readouterr().err.splitlines()
        assert first == ("fnnet train: error: argument --seed: must be in 0..4294967295 (a JAX PRNG key "
                         f"holds 32 bits), got {seed}")
        assert see == "see fnnet train --help"


def test_the_largest_seed_is_a_different_run_from_seed_0(digits):
    (x, t), _ = digits
    small = (x[:200], t[:200])
    a = fit(_model(), optimizers.sgd(0.1), small, None, epochs=1, seed=2**32 - 1, log=quiet, progress=False)
    b = fit(_model(), optimizers.sgd(0.1), small, None, epochs=1, seed=0, log=quiet, progress=False)
    assert not np.array_equal(a.params["W1"], b.params["W1"])


@pytest.mark.parametrize("n", [2**31 - 3, 2**31 - 1])
def test_step_decay_at_the_edge_of_the_step_counter(n):
    sched = schedules.step_decay(0.1, [n], 0.1)
    assert float(sched(0)) == pytest.approx(0.1) and float(sched(n - 1)) == pytest.approx(0.1)
    assert float(sched(n)) == pytest.approx(0.01)


@pytest.mark.parametrize("n", [2**31, 2**31 + 5, 10**12])
def test_steps_beyond_the_step_counter_are_refused_when_built(n):
    # before: step_decay(0.1, [2**31 + 5])(0) == 0.01 (the boundary wrapped); cosine: raw TypeError
    with pytest.raises(ValueError, match=r"step_decay: boundaries must be at most 2,147,483,647"):
        schedules.step_decay(0.1, [n])
    with pytest.raises(ValueError, match=r"cosine_decay: decay_steps must be at most 2,147,483,647"):
        schedules.cosine_decay(0.1, n)
    with pytest.raises(ValueError, match=r"exponential_decay: decay_steps must be at most"):
        schedules.exponential_decay(0.1, n, 0.5)
    with pytest.raises(ValueError, match=r"linear_warmup: warmup_steps must be at most"):
        schedules.linear_warmup(0.1, n)


def test_cosine_decay_at_the_largest_count():
    sched = schedules.cosine_decay(0.1, 2**31 - 1)
    assert float(sched(0)) == pytest.approx(0.1) and float(sched(2**31 - 1)) == pytest.approx(0.0, abs=1e-9)


def test_runs_longer_than_the_step_counter_are_refused(digits, tmp_path, capsys):
    # before: --epochs 10**12 --decay-epochs 1 trained at lr/10 from step 0
    with pytest.raises(ValueError, match=r"fit: 2,147,483,648 epochs of 14 steps are 30,064,771,072 steps"):
        fit(_model(), optimizers.sgd(0.1), *digits, epochs=2**31, log=quiet, progress=False)
    with pytest.raises(SystemExit) as e:
        main(["train", "--dataset", "digits", "--epochs", str(10**12), "--decay-epochs", "1", "--out",
              str(tmp_path / "run")])
    assert e.value.code == 2
    first, see = capsys.readouterr().err.splitlines()
    assert first.startswith("fnnet train: error: argument --epochs: 1,000,000,000,000 epochs of 14 steps")
    assert not (tmp_path / "run").exists()


def test_uint8_images_are_refused_with_the_fix(digits):
    # before: accepted without a word; the digits run ended at chance accuracy
    (x, t), (xt, tt) = load_digits(normalize=False)
    assert x.dtype == np.uint8 and x.max() == 16
    hint = r"x holds integers 0\.\.16 \(dtype uint8\); the networks expect values in \[0, 1\]: load with " \
           r"normalize=True, or pass x / 255"
    with pytest.raises(ValueError, match=rf"fit: train_data {hint}"):
        fit(_model(), optimizers.sgd(0.1), (x, t), (xt, tt), epochs=1, log=quiet, progress=False)
    model = _model()
    params, state = model.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=rf"evaluate: \(x, t\) {hint}"):
        evaluate(model, params, state, xt, tt)
    binary = (x > 8).astype(np.uint8)  # integer data in [0, 1] is fine
    assert 0 <= evaluate(model, params, state, binary, t) <= 1


def test_float_images_above_1_get_a_one_line_warning(digits):
    (x, t), _ = digits
    model = _model()
    params, state = model.init(jax.random.PRNGKey(0))
    with pytest.warns(UserWarning, match=r"evaluate: \(x, t\) x ranges over 0\.\.255; images are expected in "
                                         r"\[0, 1\] \(load with normalize=True, or divide by 255\)"):
        evaluate(model, params, state, x * 255, t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(model, params, state, x, t)  # scaled data: no warning
        evaluate(model, params, state, x - 0.5, t)  # centred features: no warning


def test_fnnet_eval_refuses_non_finite_parameters(tmp_path, capsys):
    # before: printed `test accuracy 0.1003` and exited 0
    params, _ = get_model("two_layer_net", (64,), 10).init(jax.random.PRNGKey(0))
    params = {k: np.array(v) for k, v in params.items()}
    params["W1"][3, 4] = np.nan
    save_params(params, tmp_path / "params.npz")
    assert main(["eval", "--params", str(tmp_path / "params.npz"), "--dataset", "digits"]) == 1
    err = capsys.readouterr().err
    assert "fnnet eval: error: fnnet eval:" in err
    assert "params.npz: W1 holds 1 NaN or infinite values of 3200" in err


def test_a_checkpoint_holding_nan_is_refused_at_load_not_blamed_on_the_learning_rate(tmp_path, digits):
    # before: the resumed run stopped with TrainingDiverged ("try a smaller learning rate")
    out = tmp_path / "run"
    fit(_model(), optimizers.sgd(0.1), *digits, epochs=1, out_dir=out, log=quiet, progress=False)
    ck = load_checkpoint(out / "checkpoint-0001.ckpt")
    bad = [np.array(a) for a in ck["params"]]
    bad[0][0, 0] = np.nan
    save_checkpoint(out / "checkpoint-0001.ckpt", params=bad, state=ck["state"], opt_state=ck["opt_state"],
                    key=ck["key"], meta=ck["meta"])
    with pytest.raises(CheckpointError, match=r"checkpoint .*checkpoint-0001\.ckpt holds NaN or infinite "
                                              r"values \(params array 0, 1 of 1280\)"):
        fit(_model(), optimizers.sgd(0.1), *digits, epochs=2, out_dir=out, resume=True, log=quiet,
            progress=False)


def test_resume_with_fewer_epochs_than_done_is_refused_and_changes_nothing(tmp_path, digits):
    # before: --resume --epochs 10 on a 30-epoch run left metrics.json saying epochs 10, epochs_done 30
    out = tmp_path / "run"
    fit(_model(), optimizers.sgd(0.1), *digits, epochs=3, out_dir=out, log=quiet, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match=r"fit: the run in .* has done 3 epochs .*; resuming it with "
                                         r"epochs=2 would leave its metrics\.json describing fewer epochs"):
        fit(_model(), optimizers.sgd(0.1), *digits, epochs=2, out_dir=out, resume=True, log=quiet,
            progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    same = fit(_model(), optimizers.sgd(0.1), *digits, epochs=3, out_dir=out, resume=True, log=quiet,
               progress=False)  # as many epochs as done: nothing to train, the same run
    chex.assert_trees_all_equal(same.params, load_params(out / "params.npz"))


# --- clear messages -------------------------------------------------------------------------------

def test_cli_warnings_go_to_stderr_as_one_line(tmp_path, capsys):
    # before: the skipped-checkpoint warning went to stdout
    out = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--no-progress", "--out", str(out)]
    assert main([*args, "--epochs", "2"]) == 0
    newest = out / "checkpoint-0002.ckpt"
    newest.write_bytes(newest.read_bytes()[:-5])
    capsys.readouterr()
    assert main([*args, "--epochs", "3", "--resume"]) == 0
    captured = capsys.readouterr()
    assert "checkpoint-0002.ckpt" not in captured.out
    assert "warning: checkpoint " in captured.err
    assert "checkpoint-0002.ckpt failed its SHA-256" in captured.err
    assert "resuming from" in captured.out and "checkpoint-0001.ckpt" in captured.out


def test_experiment_checks_its_out_folder_before_running(tmp_path):
    # before: the experiment ran to the end, then failed naming a .part temporary
    if os.geteuid() == 0:  # root writes into any folder with write permission bits off; /proc is not writable
        folder = "/proc/self"
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
    parse = experiments.add_parser(__import__("argparse").ArgumentParser().add_subparsers()).parse_args
    with pytest.raises(PermissionError, match=rf"experiment gates: cannot write into the output folder "
                                              rf"{folder} \(.*\); choose another --out"):
        experiments.run(parse(["gates", "--out", str(folder)]))


def test_sigterm_says_how_to_resume_and_the_run_resumes(tmp_path):
    # before: exit 143 without a word
    out = tmp_path / "run"
    base = [sys.executable, "-m", "fnnet.cli", "train", "--dataset", "digits", "--no-progress", "--out",
            str(out)]
    proc = subprocess.Popen([*base, "--epochs", "300"], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("epoch   2/300"):
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "fnnet train: terminated; resume with --resume"
    assert not [p for p in os.listdir(out) if p.endswith(".part")]
    done = latest_checkpoint(out)[1]["meta"]["epoch"]
    assert done >= 1
    resumed = subprocess.run([*base, "--epochs", str(done + 1), "--resume"], env=_env(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {out / f'checkpoint-{done:04d}.ckpt'}" in resumed.stdout
    assert json.loads((out / "metrics.json").read_text())["epochs_done"] == done + 1


@pytest.mark.parametrize("setting", ["empty-folder", "unset"])
def test_the_digits_fallback_tells_the_truth_about_fnnet_data_dir(tmp_path, monkeypatch, capsys, setting):
    # before: "no FNNET_DATA_DIR" even when it was set to a folder without the files
    empty = tmp_path / "mnist"
    empty.mkdir()
    if setting == "unset":
        monkeypatch.delenv("FNNET_DATA_DIR", raising=False)
    else:
        monkeypatch.setenv("FNNET_DATA_DIR", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("FNNET_MNIST_MIRRORS", (tmp_path / "no-mirror").as_uri())
    assert main(["train", "--epochs", "1", "--no-progress", "--verbose", "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    first, *causes = captured.err.splitlines()[:7]
    want = (f"FNNET_DATA_DIR={empty}: no train-images-idx3-ubyte" if setting == "empty-folder"
            else "FNNET_DATA_DIR: not set")
    assert first.startswith(f"fnnet: MNIST is not available ({want}") and first.endswith("Tried, in order:")
    assert "no FNNET_DATA_DIR" not in captured.err and "bundled 8x8 digits" in first
    assert any(c.startswith("  - download ") for c in causes) and "MNIST is not" not in captured.out
    assert "on digits (1438 train, 359 test)" in captured.out
