"""Checkpoints: one checksummed file per epoch, verified on load, with the run's settings.

Layout: a header line `FNNET-CHECKPOINT-1 <sha256 of payload>`, then the payload, an .npz of the
leaves of params, model state and optimizer state (in tree order), the PRNG key and `meta`
(epoch, step, settings, the run's description, history) as JSON. A file that fails the
checksum, has an unreadable payload or metadata of the wrong types or ranges raises
`CheckpointError`; so does one written by a different run (`check_resume`), one holding NaN or
infinite values, and any path that is not a regular file (a FIFO, a device) or is larger than
the cap for the run's parameters (`checkpoint_cap`), checked before it is read.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import numbers
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np

from fnnet.io import (
    NotARegularFileError,
    TooLargeError,
    atomic_write,
    check_npz_members,
    open_regular,
    read_regular,
)

__all__ = [
    "CheckpointError", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "checkpoints",
    "restore_leaves", "check_resume", "save_tree", "load_tree", "CHECKPOINT_PATTERN", "checkpoint_cap",
    "MAX_CHECKPOINT_BYTES",
]

CHECKPOINT_MAGIC = b"FNNET-CHECKPOINT-1"
CHECKPOINT_PATTERN = "checkpoint-{epoch:04d}.ckpt"
_CHECKPOINT_RE = re.compile(r"checkpoint-(\d{4,})\.ckpt$")
HISTORY_KEYS = ("loss", "train_acc", "test_acc", "images_per_s")
# Run settings that may change on resume: more epochs continue the same run.
RESUMABLE_CHANGES = ("epochs",)
# Without a model to size it by, a checkpoint may be at most this large.
MAX_CHECKPOINT_BYTES = 4 * 2**30
# Room for the metadata: the loss history is about 20 bytes of JSON per step (10 million steps).
METADATA_ALLOWANCE = 256 * 2**20


def tree_nbytes(*trees) -> int:
    """Bytes of the arrays of these pytrees, from their shapes and dtypes (nothing is read)."""
    return sum(int(np.dtype(leaf.dtype).itemsize * np.prod(np.shape(leaf)))
               for leaf in jax.tree_util.tree_leaves(trees))


def checkpoint_cap(params, state=None) -> int:
    """The most bytes a checkpoint of a model with these params and state may take: 4x their size
    (the params, the state, and an optimizer state of up to twice the params, as Adam's m and v)
    plus METADATA_ALLOWANCE. A larger file is refused before it is read."""
    return 4 * tree_nbytes(params, state) + METADATA_ALLOWANCE


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, altered or from an incompatible run."""


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(jax.device_get(tree))]


def _write_bytes(path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def save_checkpoint(path, *, params, state, opt_state, key, meta: dict) -> None:
    """Write one checkpoint file atomically (layout in the module docstring)."""
    arrays = {"key": np.asarray(key)}
    for name, tree in (("params", params), ("state", state), ("opt_state", opt_state)):
        for i, leaf in enumerate(_leaves(tree)):
            arrays[f"{name}/{i:05d}"] = leaf
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    payload = buf.getvalue()
    header = CHECKPOINT_MAGIC + b" " + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    _write_bytes(path, header + payload)


def _is_int(v, low=0):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low


def _is_num(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_meta(path, meta) -> None:
    """Types and ranges of the metadata, so that a file whose checksum was recomputed after an
    edit still fails here, not with a TypeError in the middle of the loop."""

    def bad(what):
        raise CheckpointError(f"checkpoint {path} has invalid metadata: {what}; refusing to load it")

    if not isinstance(meta, dict):
        bad(f"expected an object, got {type(meta).__name__}")
    for k in ("epoch", "step"):
        if not _is_int(meta.get(k), 1 if k == "epoch" else 0):
            bad(f"{k} must be an integer >= {1 if k == 'epoch' else 0}, got {meta.get(k)!r}")
    m = _CHECKPOINT_RE.search(os.path.basename(str(path)))
    if m and int(m.group(1)) != meta["epoch"]:
        bad(f"the file is named for epoch {int(m.group(1))} but holds epoch {meta['epoch']}")
    settings = meta.get("settings")
    if not isinstance(settings, dict) or not _is_int(settings.get("steps_per_epoch"), 1):
        bad(f"settings must be an object with steps_per_epoch >= 1, got {settings!r:.80}")
    if meta["step"] != meta["epoch"] * settings["steps_per_epoch"]:
        bad(f"step {meta['step']} is not epoch {meta['epoch']} x {settings['steps_per_epoch']} steps")
    if meta.get("run") is not None and not isinstance(meta["run"], dict):
        bad(f"run must be an object, got {type(meta['run']).__name__}")
    history = meta.get("history")
    if not isinstance(history, dict) or any(not isinstance(history.get(k), list) for k in HISTORY_KEYS):
        bad(f"history must be an object with the lists {', '.join(HISTORY_KEYS)}")
    if len(history["loss"]) != meta["step"] or not all(_is_num(v) for v in history["loss"]):
        bad(f"history.loss must hold {meta['step']} numbers")
    for k in HISTORY_KEYS[1:]:
        if len(history[k]) != meta["epoch"] or not all(v is None or _is_num(v) for v in history[k]):
            bad(f"history.{k} must hold {meta['epoch']} numbers")


def load_checkpoint(path, max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict:
    """Read and verify a checkpoint; returns {'params', 'state', 'opt_state'} as lists of leaves,
    'key' and 'meta'. Raises CheckpointError for a missing, truncated, altered or malformed file,
    for one with non-finite arrays, and for a path that is not a regular file or holds (or would
    decompress to) more than `max_bytes` (see `checkpoint_cap`), before reading it."""
    try:
        data = read_regular(path, fn="load_checkpoint", what="checkpoint", max_bytes=max_bytes)
    except (NotARegularFileError, TooLargeError) as e:
        raise CheckpointError(str(e).removeprefix("load_checkpoint: ")) from None
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} cannot be read: {e.strerror or e}") from None
    head, sep, payload = data.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 2 or parts[0] != CHECKPOINT_MAGIC or len(parts[1]) != 64:
        raise CheckpointError(
            f"checkpoint {path} is not a valid fnnet checkpoint (bad or truncated header); "
            "refusing to load it"
        )
    actual = hashlib.sha256(payload).hexdigest().encode()
    if actual != parts[1]:
        raise CheckpointError(
            f"checkpoint {path} failed its SHA-256 check (stored {parts[1].decode()[:12]}..., "
            f"computed {actual.decode()[:12]}...): the file is truncated or was altered; refusing to load it"
        )
    try:
        check_npz_members(payload, fn="load_checkpoint", what=f"checkpoint {path}", max_bytes=max_bytes)
    except ValueError as e:
        raise CheckpointError(str(e).removeprefix("load_checkpoint: ")) from None
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
        key = arrays.pop("key")
    except Exception as e:  # checksum matched but content is unusable: written by something else
        raise CheckpointError(f"checkpoint {path} has an unreadable payload ({e})") from None
    _check_meta(path, meta)
    out = {"key": key, "meta": meta}
    for name in ("params", "state", "opt_state"):
        keys = sorted(k for k in arrays if k.startswith(name + "/"))
        out[name] = [arrays[k] for k in keys]
        for k in keys:
            a = arrays[k]
            if a.dtype.kind in "fc" and not np.isfinite(a).all():
                raise CheckpointError(
                    f"checkpoint {path} holds NaN or infinite values ({name} array {int(k.split('/')[1])}, "
                    f"{int((~np.isfinite(a)).sum())} of {a.size}); a run never saves those (it stops when "
                    "training diverges), so the file was altered; refusing to load it"
                )
    return out


def restore_leaves(path, what, template, leaves, *, fn: str = "restore_leaves"):
    """Put checkpoint leaves (read from `path`; `what` they are, e.g. "params") into the tree
    structure of `template`, checking shapes and dtypes. A mismatch raises CheckpointError, its
    message beginning with `fn` (the caller's name)."""
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(t_leaves) != len(leaves):
        raise CheckpointError(
            f"{fn}: checkpoint {path} holds {len(leaves)} {what} arrays but this run has {len(t_leaves)}; "
            f"it was written for a different model or optimizer"
        )
    for i, (a, b) in enumerate(zip(t_leaves, leaves, strict=True)):
        if np.shape(a) != b.shape or jnp.asarray(a).dtype != b.dtype:
            raise CheckpointError(
                f"{fn}: checkpoint {path} {what} array {i} is {b.dtype}{b.shape} but this run needs "
                f"{jnp.asarray(a).dtype}{np.shape(a)}; it was written for a different model or optimizer"
            )
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(b) for b in leaves])


def check_resume(path, meta, settings: dict, run: dict | None, *, fn: str = "check_resume") -> None:
    """Refuse to resume a checkpoint written with other settings (seed, batch size, data) or
    another run description (model, optimizer, learning rate or schedule, regularisation, ...):
    the continued run would not be the run that metrics.json describes. Only RESUMABLE_CHANGES
    (more epochs) may differ. Raises CheckpointError, its message beginning with `fn` (the caller's
    name)."""
    for k, v in settings.items():
        if meta["settings"].get(k) != v:
            raise CheckpointError(
                f"{fn}: checkpoint {path} was written with {k}={meta['settings'].get(k)!r} "
                f"but this run has {k}={v!r}; resuming would not reproduce the run"
            )
    old = meta.get("run") or {}
    new = run or {}
    differ = [k for k in sorted(set(old) | set(new))
              if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)]
    if differ:
        raise CheckpointError(
            f"{fn}: checkpoint {path} belongs to a run with "
            f"{', '.join(f'{k}={old.get(k)!r}' for k in differ)} but this run has "
            f"{', '.join(f'{k}={new.get(k)!r}' for k in differ)}; resume with the run's own settings, or "
            "start a new run (another --out, or --overwrite)"
        )


def save_tree(tree, path) -> None:
    """Save the leaves of a pytree (e.g. Batch Norm running statistics) to an .npz, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{f"{i:05d}": leaf for i, leaf in enumerate(_leaves(tree))})
    _write_bytes(path, buf.getvalue())


def load_tree(path, template):
    """Load leaves saved by `save_tree` into the structure of `template` (shapes/dtypes checked)."""
    cap = 2 * tree_nbytes(template) + 2**20
    f, _ = open_regular(path, fn="load_tree", what="state file", max_bytes=cap)
    with f:
        check_npz_members(f, fn="load_tree", what=f"state file {path}", max_bytes=cap)
        with np.load(f, allow_pickle=False) as z:
            leaves = [z[k] for k in sorted(z.files)]
    return restore_leaves(path, "state", template, leaves, fn="load_tree")


def checkpoints(out_dir):
    """Checkpoint files in out_dir, newest epoch first."""
    found = []
    for p in glob.glob(os.path.join(glob.escape(str(out_dir)), "checkpoint-*.ckpt")):
        m = _CHECKPOINT_RE.search(os.path.basename(p))
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, reverse=True)]


def print_warning(line):
    """A line on stderr: where fnnet's warnings go."""
    print(line, file=sys.stderr, flush=True)


def latest_checkpoint(out_dir, log=print_warning, max_bytes: int = MAX_CHECKPOINT_BYTES):
    """(path, loaded) of the newest checkpoint in out_dir that passes verification, or (None, None).
    Invalid newer ones are reported through `log` (default: stderr) and skipped; if every one is
    invalid, the error of the newest is raised. `max_bytes` as in `load_checkpoint`."""
    errors = []
    for path in checkpoints(out_dir):
        try:
            return path, load_checkpoint(path, max_bytes)
        except CheckpointError as e:
            errors.append(e)
            log(f"warning: {e}")
    if errors:
        raise errors[0]
    return None, None
