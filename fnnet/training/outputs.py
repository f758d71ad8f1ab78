"""A run's folder: checked before training, never mixing two runs, and the files it ends with.

    out_dir/checkpoint-NNNN.ckpt   the last two epochs (see `fnnet.training.checkpoint`)
    out_dir/metrics.json           settings, the run's description, history, final accuracies
    out_dir/curves.png             loss per iteration, accuracies per epoch
    out_dir/params.npz             the trained parameters (state.npz: running statistics, if any)
    out_dir/.fnnet-run.lock        held (flock) by the run that writes here; says its pid and start

One run writes into a folder at a time: `prepare_run_dir` takes an exclusive advisory lock that
the kernel releases when the process ends, however it ends, so a killed run never leaves it held.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import re
import warnings

import jax
import jax.numpy as jnp

from fnnet.io import (
    TooLargeError,
    atomic_write,
    ensure_writable_dir,
    load_params,
    remove_stale_temporaries,
    save_params,
)
from fnnet.training.checkpoint import (
    checkpoint_cap,
    checkpoints,
    load_checkpoint,
    load_tree,
    restore_leaves,
    save_tree,
    tree_nbytes,
)

__all__ = ["RunFolderError", "prepare_run_dir", "lock_run_dir", "claim_run_dir", "LOCK_FILE", "write_outputs",
           "load_run_params", "RUN_FILES"]

RUN_FILES = ("metrics.json", "curves.png", "params.npz", "state.npz")
LOCK_FILE = ".fnnet-run.lock"


class RunFolderError(OSError):
    """An output folder that cannot take this run: not a folder, not writable, or holding another run."""


def lock_run_dir(out_dir, *, fn: str = "lock_run_dir"):
    """Take the exclusive lock of the folder `out_dir` for this process, or raise RunFolderError
    naming the run that holds it. Returns the open lock file: the lock lasts until it is closed
    (or the process ends). The holder's pid and start are written only by `claim_run_dir`."""
    path = os.path.join(out_dir, LOCK_FILE)
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
        raise RunFolderError(f"{fn}: {path} is not a regular file; remove it")
    lock = open(path, "a+")  # held open for the run's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(lock)
        lock.close()
        raise RunFolderError(f"{fn}: {out_dir} is in use by another fnnet run ({holder}); wait for it to "
                             "end or choose another --out") from None
    except OSError as e:  # a filesystem without locks: train, but say that nothing guards the folder
        warnings.warn(f"{fn}: cannot lock {out_dir} ({e.strerror or e}); make sure no other run writes there",
                      stacklevel=2)
    except BaseException:
        lock.close()
        raise
    return lock


def _flock_holder(lock) -> int | None:
    """The pid that the kernel lists (Linux: /proc/locks) as holding a flock on the open file
    `lock`, or None where it cannot tell."""
    st = os.fstat(lock.fileno())
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", "rb") as f:
            table = f.read(2**20).decode("ascii", "replace")
    except OSError:
        return None
    for line in table.splitlines():
        parts = line.split()  # "1: FLOCK  ADVISORY  WRITE 1234 fd:00:5678 0 EOF"; "->" marks a waiter
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == inode and parts[4].isdigit():
            return int(parts[4]) or None  # 0: a process outside this pid namespace
    return None


def _holder(lock) -> str:
    """Who holds the run folder's lock, for the refusal. The file says what `claim_run_dir` wrote,
    but a run writes it only once it really starts: until then the file still names the previous
    run, a process that has ended. So the words are shown only for the pid that the kernel says
    holds the lock (or, where the kernel cannot tell, a pid that is still running)."""
    from fnnet.io import _pid_alive

    lock.seek(0)
    text = lock.read(200).strip()
    m = re.fullmatch(r"pid (\d+), started [0-9T:+.-]+", text)
    written = int(m.group(1)) if m else None
    kernel = _flock_holder(lock)
    if kernel is not None:
        return text if kernel == written else f"pid {kernel}, which has not recorded its start yet"
    if written is not None and _pid_alive(written):
        return text
    return "a run that has not recorded its pid yet"


def claim_run_dir(lock) -> None:
    """Write this process's pid and start time into the held lock file (what a refused run shows)."""
    start = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}, started {start}")
    lock.flush()


def prepare_run_dir(out_dir, *, resume: bool, overwrite: bool, fn: str = "prepare_run_dir"):
    """Make `out_dir` ready before any training and lock it: it must be a writable folder that no
    other run holds (see `lock_run_dir`); leftovers of killed writers are removed; a folder
    holding a run is refused unless `resume` (continue it) or `overwrite` (its files are deleted
    now, so the folder never mixes two runs). Returns the lock (an open file): `claim_run_dir` it
    once the run really starts (a refused --resume leaves the folder as it was), close it when the
    run ends. Errors (RunFolderError) begin with `fn`, the caller's name (`fit` passes its own)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise RunFolderError(f"{fn}: the output folder {out_dir} is a file, not a folder")
    try:
        ensure_writable_dir(out_dir)
    except OSError as e:
        raise RunFolderError(f"{fn}: cannot write to the output folder {out_dir}: {e.strerror or e}") \
            from None
    lock = lock_run_dir(out_dir, fn=fn)
    try:
        _clear_run_dir(out_dir, resume=resume, overwrite=overwrite, fn=fn)
    except BaseException:
        lock.close()
        raise
    return lock


def _clear_run_dir(out_dir, *, resume: bool, overwrite: bool, fn: str) -> None:
    remove_stale_temporaries(out_dir)
    found = checkpoints(out_dir) + [
        os.path.join(out_dir, f) for f in RUN_FILES if os.path.exists(os.path.join(out_dir, f))
    ]
    if not found or resume:
        return
    if not overwrite:
        names = ", ".join(sorted(os.path.basename(p) for p in found)[:4])
        raise RunFolderError(
            f"{fn}: {out_dir} already holds a run ({names}); pass --resume to continue it or "
            "--overwrite to replace it (resume=True / overwrite=True in Python), or choose another --out"
        )
    for p in found:
        os.unlink(p)


def write_outputs(out_dir, params, state, history, settings) -> None:
    """metrics.json (always), and with `params` the final params.npz, state.npz and curves.png."""
    from fnnet.plots import plot_curves

    metrics = dict(settings)
    metrics.update(
        {
            "epochs_done": len(history["test_acc"]),
            "iterations": len(history["loss"]),
            "final_train_acc": history["train_acc"][-1] if history["train_acc"] else None,
            "final_test_acc": history["test_acc"][-1] if history["test_acc"] else None,
            "history": history,
        }
    )
    data = json.dumps(metrics, indent=1).encode()
    atomic_write(os.path.join(out_dir, "metrics.json"), lambda f: f.write(data))
    if params is not None:
        save_params(params, os.path.join(out_dir, "params.npz"))
        if jax.tree_util.tree_leaves(state):
            save_tree(state, os.path.join(out_dir, "state.npz"))
        plot_curves(history, os.path.join(out_dir, "curves.png"))


def _named_leaves(tree):
    """(name, leaf) pairs of a pytree, named by key path ("W1", "running_mean1")."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [("/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path), leaf)
            for path, leaf in flat]


def load_run_params(path, params, state, *, fn: str = "load_run_params"):
    """Trained (params, state) for a model whose freshly initialised (params, state) are given:
    from a .ckpt checkpoint, or from params.npz / the book's .pkl (with state.npz beside it when
    the model has running statistics). Shapes must match and every value must be finite; raises
    ValueError naming what differs, its message beginning with `fn` (the caller's name, e.g. the
    CLI's "fnnet eval"). A file larger than twice the model's parameters in float64 (plus 1 MiB),
    or a checkpoint beyond `checkpoint_cap`, is refused before it is read.

        params, state = model.init(jax.random.PRNGKey(0))
        params, state = load_run_params("runs/mnist/params.npz", params, state)
    """
    path = os.fspath(path)
    if path.endswith(".ckpt"):
        ck = load_checkpoint(path, checkpoint_cap(params, state))
        return (restore_leaves(path, "params", params, ck["params"], fn=fn),
                restore_leaves(path, "model state", state, ck["state"], fn=fn))
    # float64 copies of the model's arrays, and room for the file's structure
    cap = 2 * tree_nbytes(params) + 2**20
    try:
        loaded = load_params(path, max_bytes=cap)
    except TooLargeError as e:
        raise ValueError(f"{fn}: {str(e).removeprefix('load_params: ')} (the model's parameters take "
                         f"{(cap - 2**20) // 2:,} bytes)") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{fn}: {path} holds a {type(loaded).__name__}, not a dict of named arrays")
    missing, extra = sorted(set(params) - set(loaded)), sorted(set(loaded) - set(params))
    if missing or extra:
        raise ValueError(f"{fn}: {path} does not fit the model: missing {missing}, unexpected {extra}")
    for k, v in loaded.items():
        if tuple(v.shape) != tuple(params[k].shape):
            raise ValueError(
                f"{fn}: {path}: {k} has shape {tuple(v.shape)} but the model needs {tuple(params[k].shape)}"
            )
    params = {k: jnp.asarray(v, params[k].dtype) for k, v in loaded.items()}
    if jax.tree_util.tree_leaves(state):
        state_path = os.path.join(os.path.dirname(path), "state.npz")
        if not os.path.exists(state_path):
            raise ValueError(f"{fn}: the model needs its running statistics: {state_path} is missing")
        state = load_tree(state_path, state)
    for what, tree in (("parameters", params), ("running statistics", state)):
        for name, leaf in _named_leaves(tree):
            bad = int(jnp.size(leaf) - jnp.isfinite(leaf).sum())
            if bad:
                raise ValueError(f"{fn}: {path if what == 'parameters' else state_path}: {name} holds {bad} "
                                 f"NaN or infinite values of {jnp.size(leaf)}; these {what} cannot give a "
                                 "meaningful answer (a diverged or damaged run)")
    return params, state
