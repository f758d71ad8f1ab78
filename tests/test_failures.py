"""Off the happy path: the first command offline, bad data refused, no run lost, one-line CLI errors.

The CLI cases run `fnnet` in a subprocess, as a user would, and assert the exit status, that
stderr is short and names the cause, and that nothing written earlier was lost.
"""

import errno
import hashlib
import io
import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

from fnnet.cli import main
from fnnet.training import CheckpointError, load_checkpoint


def fnnet(tmp_path, *argv, env=None, timeout=300):
    """Run the `fnnet` command offline with a private cache; returns the CompletedProcess."""
    base = {k: v for k, v in os.environ.items() if k not in ("FNNET_DATA_DIR",)}
    base.update(XDG_CACHE_HOME=str(tmp_path / "cache"), FNNET_MNIST_MIRRORS=(tmp_path / "no-mirror").as_uri(),
                MPLBACKEND="Agg")
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "fnnet.cli", *argv], cwd=tmp_path, env=base, text=True,
                          capture_output=True, timeout=timeout)


def one_line_error(proc, *words):
    """Exit status 1, no traceback, one short line on stderr naming each of `words`."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and len(err) < 600, err
    for w in words:
        assert w in err, (w, err)
    return err


def rewrite_meta(path, change):
    """Edit a checkpoint's metadata and recompute its checksum, as a manipulated file would."""
    data = path.read_bytes()
    payload = data.partition(b"\n")[2]
    with np.load(io.BytesIO(payload)) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    change(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    payload = buf.getvalue()
    path.write_bytes(b"FNNET-CHECKPOINT-1 " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A finished 2-epoch digits run made by the CLI in-process (checkpoints 1 and 2)."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--no-progress", "--out", str(out)]) == 0
    return out


def snapshot(folder):
    return {p: (folder / p).read_bytes() for p in sorted(os.listdir(folder))}


# ----------------------------------------------------------------------------- 1. the first command


def test_first_command_without_mnist_trains_on_the_digits_and_says_so(tmp_path):
    proc = fnnet(tmp_path, "train", "--epochs", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = proc.stderr.splitlines()[0]  # a warning: stderr, then the places tried, indented
    assert "MNIST is not available" in first and "digits" in first and "FNNET_DATA_DIR" in first
    assert "Traceback" not in proc.stderr and "MNIST is not available" not in proc.stdout
    metrics = json.loads((tmp_path / "runs" / "two_layer_net-digits" / "metrics.json").read_text())
    assert metrics["run"]["dataset"] == "digits" and metrics["epochs_done"] == 1


def test_explicit_mnist_without_the_files_is_one_clear_error(tmp_path):
    proc = fnnet(tmp_path, "train", "--dataset", "mnist", "--no-progress")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    first, *causes = proc.stderr.strip().splitlines()  # one line, then each place tried, indented
    for w in ("fnnet train: error: cannot load mnist", "FNNET_DATA_DIR", "--dataset digits"):
        assert w in first, (w, first)
    assert causes and all(c.startswith("  - ") for c in causes), causes
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- 3. never lose a run


def test_a_folder_holding_a_run_is_refused_and_overwrite_replaces_it_whole(digits_run, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "3", "--no-progress", "--out", str(out)]) == 0
    before = snapshot(out)
    proc = fnnet(tmp_path, "train", "--dataset", "digits", "--epochs", "1", "--out", str(out), "--lr", "0.5")
    one_line_error(proc, "already holds a run", "--resume", "--overwrite")
    assert snapshot(out) == before
    proc = fnnet(tmp_path, "train", "--dataset", "digits", "--epochs", "1", "--out", str(out), "--lr", "0.5",
                 "--overwrite", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p for p in os.listdir(out) if p.endswith(".ckpt")) == ["checkpoint-0001.ckpt"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["lr"] == 0.5 and metrics["epochs_done"] == 1
    assert (out / "params.npz").read_bytes() != before["params.npz"]


@pytest.mark.parametrize("change, words", [
    (["--lr", "0.5"], ["lr=0.1", "lr=0.5"]),
    (["--optimizer", "adam"], ["optimizer='sgd'", "optimizer='adam'"]),
    (["--weight-decay", "0.01"], ["weight_decay=0.0", "weight_decay=0.01"]),
    (["--schedule", "cosine"], ["schedule=", "cosine"]),
    (["--hidden", "20"], ["config=", "hidden_size"]),
])
def test_resume_refuses_another_run_and_loses_nothing(digits_run, tmp_path, change, words):
    out = tmp_path / "run"
    os.makedirs(out)
    for name, data in snapshot(digits_run).items():
        (out / name).write_bytes(data)
    before = snapshot(out)
    proc = fnnet(tmp_path, "train", "--dataset", "digits", "--epochs", "3", "--out", str(out), "--resume",
                 *change)
    one_line_error(proc, "belongs to a run with", *words)
    assert snapshot(out) == before


def test_stale_temporaries_are_removed_when_the_folder_is_next_used(digits_run, tmp_path):
    out = tmp_path / "run"
    os.makedirs(out)
    for name, data in snapshot(digits_run).items():
        (out / name).write_bytes(data)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True)
    pid = int(dead.stdout)
    stale = out / f".checkpoint-0003.ckpt.pid{pid}.k2j3h4g5.part"
    stale.write_bytes(b"x" * 1000)
    legacy = out / ".params.npz.ab12cd34.part"
    legacy.write_bytes(b"x" * 1000)
    os.utime(legacy, (1e9, 1e9))
    live = out / f".metrics.json.pid{os.getpid()}.zzzz1111.part"
    live.write_bytes(b"being written")
    cache = tmp_path / "cache" / "fnnet"
    cache.mkdir(parents=True)
    cache_stale = cache / f".mnist-0123456789ab.npz.pid{pid}.q1w2e3r4.part"
    cache_stale.write_bytes(b"x" * 1000)
    proc = fnnet(tmp_path, "train", "--epochs", "3", "--out", str(out), "--resume", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not stale.exists() and not legacy.exists() and not cache_stale.exists()
    assert live.exists()  # its writer (this test's process) is still running


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(epoch=1), "named for epoch 2 but holds epoch 1"),
    (lambda m: m.update(epoch=-3), "epoch must be an integer >= 1"),
    (lambda m: m.update(epoch="2"), "epoch must be an integer >= 1"),
    (lambda m: m.update(epoch=10**30), "named for epoch 2"),
    (lambda m: m.pop("settings"), "settings must be an object"),
    (lambda m: m.update(step=5), "step 5 is not epoch 2"),
    (lambda m: m["history"].update(loss=["a"] * m["step"]), "history.loss must hold"),
    (lambda m: m["history"].pop("test_acc"), "history must be an object"),
    (lambda m: m.update(run=[1]), "run must be an object"),
])
def test_manipulated_checkpoint_metadata_is_refused(digits_run, tmp_path, change, message):
    path = tmp_path / "checkpoint-0002.ckpt"
    path.write_bytes((digits_run / "checkpoint-0002.ckpt").read_bytes())
    rewrite_meta(path, change)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


# ----------------------------------------------------------------------------- 4. one clear line


def test_out_that_is_a_file_or_unwritable_fails_before_training(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    proc = fnnet(tmp_path, "train", "--dataset", "digits", "--out", str(tmp_path / "afile"))
    one_line_error(proc, "afile is a file, not a folder")
    proc = fnnet(tmp_path, "train", "--dataset", "digits", "--out", "/proc/fnnet-run", "--resume")
    one_line_error(proc, "cannot write to the output folder /proc/fnnet-run")
    assert not re.search(r"^epoch ", proc.stdout, re.M)


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(digits_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    os.makedirs(out)
    for name, data in snapshot(digits_run).items():
        (out / name).write_bytes(data)
    before = (out / "checkpoint-0002.ckpt").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("fnnet.io.os.fsync", full)
    code = main(["train", "--dataset", "digits", "--epochs", "3", "--no-progress", "--out", str(out),
                 "--resume"])
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert (out / "checkpoint-0002.ckpt").read_bytes() == before
    assert not [p for p in os.listdir(out) if p.endswith(".part")]


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_eval_of_a_malicious_pickle_and_of_malformed_metadata(digits_run, tmp_path):
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"W1": _Boom()}))
    proc = fnnet(tmp_path, "eval", "--params", str(tmp_path / "evil.pkl"), "--dataset", "digits")
    one_line_error(proc, "fnnet eval: error:", "refused", "system")
    assert not (tmp_path / "pwned.txt").exists()
    path = tmp_path / "checkpoint-0002.ckpt"
    path.write_bytes((digits_run / "checkpoint-0002.ckpt").read_bytes())
    rewrite_meta(path, lambda m: m.update(epoch="two"))
    proc = fnnet(tmp_path, "eval", "--params", str(path), "--dataset", "digits")
    one_line_error(proc, "invalid metadata", "epoch must be an integer")
    proc = fnnet(tmp_path, "eval", "--params", str(path), "--dataset", "digits", "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "CheckpointError" in proc.stderr


def test_cli_refuses_nan_data_before_training(tmp_path, monkeypatch, capsys):
    from fnnet import datasets

    (x, t), test = datasets.load_digits()
    x = x.copy()
    x[0, 0] = np.nan
    monkeypatch.setattr(datasets, "load_digits", lambda: ((x, t), test))
    code = main(["train", "--dataset", "digits", "--no-progress", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and "train_data x[0] holds a non-finite value" in err
    assert not (tmp_path / "run" / "checkpoint-0001.ckpt").exists()


@pytest.mark.slow
def test_compile_cache_is_used_and_a_corrupt_or_unwritable_one_never_fails_a_run(tmp_path):
    argv = ("train", "--dataset", "digits", "--epochs", "1", "--no-progress", "--overwrite")
    on = {"FNNET_COMPILE_CACHE": "1"}  # the test session turns it off (tests/conftest.py)
    assert fnnet(tmp_path, *argv, env=on).returncode == 0
    folder = tmp_path / "cache" / "fnnet" / "jax-compile"
    entries = sorted(folder.iterdir())
    assert any("chunk" in p.name for p in entries)
    for p in entries:
        p.write_bytes(b"garbage")
    proc = fnnet(tmp_path, *argv, env=on)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "cache" not in proc.stderr, proc.stderr
    (tmp_path / "blocked").write_text("a file where the cache folder would be")
    proc = fnnet(tmp_path, *argv, env={**on, "XDG_CACHE_HOME": str(tmp_path / "blocked")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    off = tmp_path / "off"
    proc = fnnet(tmp_path, *argv, env={"XDG_CACHE_HOME": str(off), "FNNET_COMPILE_CACHE": "0"})
    assert proc.returncode == 0 and not (off / "fnnet" / "jax-compile").exists()
