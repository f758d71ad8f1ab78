"""One writer per run folder: a second run, --overwrite or --resume into a folder that a live run
holds is refused at once, naming that run, and the live run ends complete. Real processes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fnnet.io import load_params
from fnnet.training import RunFolderError
from fnnet.training.outputs import LOCK_FILE, claim_run_dir, lock_run_dir, prepare_run_dir

# A run that holds its folder at epoch 1 until the file `release` appears next to the folder.
HOLDER = """
import os, sys, time
from fnnet.datasets import load_digits
from fnnet.models import get_model
from fnnet.optimizers import sgd
from fnnet.training import fit

out, epochs = sys.argv[1], int(sys.argv[2])
release = os.path.join(os.path.dirname(out), "release")

def log(line):
    print(line, flush=True)
    while line.startswith("epoch   1/") and not os.path.exists(release):
        time.sleep(0.05)

train, test = load_digits()
fit(get_model("two_layer_net", (64,), 10, hidden_size=20), sgd(0.1), train, test, epochs=epochs,
    out_dir=out, progress=False, log=log)
print("done", flush=True)
"""


def _env():
    env = dict(os.environ, MPLBACKEND="Agg", JAX_PLATFORMS="cpu")
    env.pop("FNNET_DATA_DIR", None)
    return env


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fnnet.cli", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # five processes; the fast tier checks the lock within one (the last test)
def test_a_live_run_keeps_its_folder_against_a_second_run_overwrite_and_resume(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), "3"], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = holder.stdout.readline()
        assert first.startswith("epoch   1/3"), first + holder.stderr.read()
        for extra in ([], ["--overwrite"], ["--resume"]):
            proc = _cli("train", "--dataset", "digits", "--epochs", "1", "--no-progress", "--out", str(out),
                        *extra, cwd=tmp_path)
            assert proc.returncode == 1, (extra, proc.stdout, proc.stderr)
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
            assert f"{out} is in use by another fnnet run (pid {holder.pid}, started " in lines[0], lines[0]
        (tmp_path / "release").touch()
        rest, err = holder.communicate(timeout=300)
    finally:
        holder.kill()
    assert holder.returncode == 0 and rest.rstrip().endswith("done"), err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_done"] == 3 and len(metrics["history"]["test_acc"]) == 3
    ckpts = sorted(p for p in os.listdir(out) if p.endswith(".ckpt"))
    assert ckpts == ["checkpoint-0002.ckpt", "checkpoint-0003.ckpt"]
    assert not [p for p in os.listdir(out) if p.endswith(".part")]
    # What it wrote is what the same run writes alone: nothing of the refused runs got in.
    alone = tmp_path / "alone"
    (tmp_path / "release2").touch()
    subprocess.run([sys.executable, "-c", HOLDER.replace('"release"', '"release2"'), str(alone), "3"],
                   env=_env(), check=True, capture_output=True, timeout=300)
    got, ref = load_params(out / "params.npz"), load_params(alone / "params.npz")
    assert sorted(got) == sorted(ref) and all(np.array_equal(got[k], ref[k]) for k in ref)
    # The lock went with the process: the folder is free again.
    lock_run_dir(out, fn="fit").close()


@pytest.mark.slow  # two training processes at once
def test_two_runs_started_together_one_wins_the_other_is_refused_cleanly(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "fnnet.cli", "train", "--dataset", "digits", "--epochs", "3",
            "--no-progress", "--out", str(out)]
    procs = [subprocess.Popen([*args, "--seed", str(s)], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path) for s in (0, 1)]
    results = [(p, *p.communicate(timeout=300)) for p in procs]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 1], [(p.returncode, err) for p, _, err in results]
    (_, _, err), = [r for r in results if r[0].returncode == 1]
    assert "is in use by another fnnet run (pid " in err or "already holds a run" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    (winner, _, _), = [r for r in results if r[0].returncode == 0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_done"] == 3 and metrics["seed"] == (0 if winner is procs[0] else 1)


def test_a_lock_file_that_is_not_a_regular_file_is_refused(tmp_path):
    os.symlink("/dev/null", tmp_path / LOCK_FILE)
    with pytest.raises(RunFolderError, match="is not a regular file"):
        prepare_run_dir(tmp_path, resume=False, overwrite=False, fn="fit")


def test_the_lock_is_released_on_close_and_a_refused_run_changes_nothing(tmp_path):
    lock = prepare_run_dir(tmp_path, resume=False, overwrite=False, fn="fit")
    claim_run_dir(lock)
    content = (tmp_path / LOCK_FILE).read_text()
    assert content.startswith(f"pid {os.getpid()}, started ")
    with pytest.raises(RunFolderError, match=r"is in use by another fnnet run \(pid \d+, started "):
        lock_run_dir(tmp_path, fn="fit")  # a second open file: flock conflicts within one process too
    lock.close()
    again = lock_run_dir(tmp_path, fn="fit")
    again.close()
    assert (tmp_path / LOCK_FILE).read_text() == content
