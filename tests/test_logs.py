"""What `fnnet train > log 2>&1` leaves in the log: one line per epoch and no progress-bar frames when
the output is not a terminal, and a two-line note when MNIST is not there (the places tried only
with --verbose). Each case runs the command in a subprocess whose stdout and stderr are one pipe,
offline (a mirror that does not exist, no FNNET_DATA_DIR, a fresh cache folder).
"""

import argparse
import os
import re
import subprocess
import sys

import pytest

from fnnet.cli.common import interactive, load_data


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One fresh XDG cache for the module: no MNIST in it; JAX's compilation cache makes the later
    runs start faster."""
    return tmp_path_factory.mktemp("xdg-cache")


def log_of(tmp_path, cache, *argv):
    """The combined stdout and stderr of `fnnet train ARGV` run offline, as a log file would hold it."""
    env = {k: v for k, v in os.environ.items() if k != "FNNET_DATA_DIR"}
    env.update(XDG_CACHE_HOME=str(cache), FNNET_MNIST_MIRRORS=(tmp_path / "no-mirror").as_uri(),
               MPLBACKEND="Agg")
    argv = [sys.executable, "-m", "fnnet.cli", "train", "--out", str(tmp_path / "run"), *argv]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=300)
    log = proc.stdout.decode()
    assert proc.returncode == 0, log[-3000:]
    return log


def epoch_lines(log):
    """The lines `fit` logs per epoch ('epoch   1/3  loss ...'), also where a bar's frames precede them."""
    return [line for line in re.split(r"[\r\n]+", log) if re.match(r"epoch +\d+/\d+  loss ", line)]


def test_a_logged_digits_run_is_one_line_per_epoch(tmp_path, cache):
    log = log_of(tmp_path, cache, "--dataset", "digits", "--epochs", "3")
    assert "\r" not in log and "it/s" not in log, log[:2000]  # before: every tqdm frame
    assert len(log.splitlines()) <= 10, log
    assert [line.split()[1] for line in epoch_lines(log)] == ["1/3", "2/3", "3/3"]
    assert "MNIST" not in log


def test_the_first_command_offline_says_what_happened_in_two_lines(tmp_path, cache):
    log = log_of(tmp_path, cache, "--epochs", "3")
    lines = log.splitlines()
    assert len(lines) <= 10 and "\r" not in log, log  # before: 8 lines of MNIST's places tried
    note = [line for line in lines if line.startswith("fnnet: ")]
    assert len(note) == 2, note
    assert "MNIST is not available" in note[0] and "bundled 8x8 digits" in note[0]
    assert "FNNET_DATA_DIR" in note[1] and "online" in note[1] and "--verbose" in note[1]
    assert str(cache / "fnnet") in note[1]  # where the download would go
    assert "Tried, in order" not in log and "  - " not in log
    assert len(epoch_lines(log)) == 3 and "on digits (1438 train, 359 test)" in log


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.delenv("FNNET_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("FNNET_MNIST_MIRRORS", (tmp_path / "no-mirror").as_uri())


@pytest.mark.parametrize("command", ["train --verbose", "train", "eval"])
def test_the_places_tried_are_listed_with_verbose(offline, command):
    args = argparse.Namespace(dataset=None, data_dir=None)
    if command.startswith("train"):  # eval has no --verbose
        args.verbose = command.endswith("--verbose")
    said = []
    name, _ = load_data(args, said.append, said.append)
    assert name == "digits"
    first, *tried, last = said
    assert first.startswith("fnnet: MNIST is not available") and "bundled 8x8 digits" in first
    assert last.startswith("fnnet: for MNIST, set FNNET_DATA_DIR")
    assert ("--verbose lists the places tried" in last) == (command == "train")
    if command == "train --verbose":
        assert first.endswith("Tried, in order:") and all(t.startswith("  - ") for t in tried)
        assert any("FNNET_DATA_DIR" in t for t in tried) and any(t.startswith("  - download ") for t in tried)
    else:
        assert not tried and "Tried" not in first


def test_progress_brings_the_bars_back(tmp_path, cache):
    log = log_of(tmp_path, cache, "--dataset", "digits", "--epochs", "1", "--progress")
    assert "\r" in log and "epoch 1/1:" in log and "it/s" in log, log[:2000]
    assert len(epoch_lines(log)) == 1  # the epoch line stays


def test_bars_are_for_a_terminal_on_both_streams(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    for out, err, want in ((True, True, True), (False, True, False), (True, False, False)):
        monkeypatch.setattr(sys, "stdout", Stream(out))
        monkeypatch.setattr(sys, "stderr", Stream(err))
        assert interactive() is want, (out, err)
    monkeypatch.setattr(sys, "stdout", None)  # pythonw: no stream at all
    assert interactive() is False
