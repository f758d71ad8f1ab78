"""A compiled, reproducible training loop with checkpoints and resume.

    result = fit(model, optimizer, (x_train, t_train), (x_test, t_test), epochs=17)
    result.params, result.state, result.opt_state, result.history

`model` is a `fnnet.models.Model` (init, apply, loss_and_grad, input_shape) and `optimizer` a
`fnnet.optimizers.Optimizer` (init, update). How an epoch runs:

- x is cast to float32, reshaped to (N,) + model.input_shape and put on the device once; t stays
  labels (N,) or one-hot (N, C).
- Each epoch draws a permutation of the N samples from its own key (`fold_in(key, epoch)`) and
  trains on the first `N // batch_size` full batches of it; the incomplete tail batch is dropped,
  and since the shuffle changes every epoch, every sample still takes part. One epoch is thus
  `N // batch_size` iterations (the book's `iters_per_epoch = max(N / batch_size, 1)`, rounded down).
- The iterations run inside a jitted `lax.scan` (batches are gathered from the device arrays inside
  the step; no Python loop per batch). The epoch is cut into at most `chunks` scans so that the
  progress bar moves and a NaN/inf loss is caught while the epoch runs; parameters and optimizer
  state are donated to each chunk.
- After each epoch: train accuracy on the first `train_eval_size` (10,000) training samples (a
  fixed subset, so that evaluation costs little) and test accuracy on the whole test set, both in
  inference mode (`train=False`) with a jitted batched predict; images/s is the training
  throughput of the epoch (the first epoch includes compilation).

Same seed, same data, same machine -> bit-identical parameters. With `out_dir`, a checkpoint is
written atomically after every epoch (see `save_checkpoint`); `resume=True` continues from the
latest valid one and reproduces the uninterrupted run exactly. At the end `out_dir` also gets
params.npz, metrics.json and curves.png.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import math
import os
import re
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnnet.io import atomic_write, save_params

__all__ = [
    "FitResult",
    "CheckpointError",
    "TrainingDiverged",
    "fit",
    "evaluate",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "restore_leaves",
    "save_tree",
    "load_tree",
    "with_weight_decay",
]

CHECKPOINT_MAGIC = b"FNNET-CHECKPOINT-1"
CHECKPOINT_PATTERN = "checkpoint-{epoch:04d}.ckpt"
_CHECKPOINT_RE = re.compile(r"checkpoint-(\d{4,})\.ckpt$")


class FitResult(NamedTuple):
    params: dict
    state: dict
    opt_state: object
    history: dict


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, altered or from an incompatible run."""


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite."""


# ----------------------------------------------------------------------------- input handling


def _as_arrays(fn, name, data, input_shape):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{fn}: {name} must be a pair (x, t), got {type(data).__name__}")
    x, t = np.asarray(data[0]), np.asarray(data[1])
    if x.ndim < 1 or t.ndim not in (1, 2):
        raise ValueError(
            f"{fn}: {name} must be x (N, ...) and t (N,) labels or (N, C) one-hot, "
            f"got x {x.shape} and t {t.shape}"
        )
    if x.shape[0] != t.shape[0]:
        raise ValueError(
            f"{fn}: {name} has {x.shape[0]} inputs but {t.shape[0]} targets (x {x.shape}, t {t.shape})"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{fn}: {name} is empty (x {x.shape})")
    per_sample = math.prod(x.shape[1:])
    if per_sample != math.prod(input_shape):
        raise ValueError(
            f"{fn}: {name} has {per_sample} values per sample (x {x.shape}) but the model expects "
            f"input_shape {tuple(input_shape)} ({math.prod(input_shape)} values)"
        )
    if t.ndim == 1 and not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"{fn}: {name} labels t must be integers, got dtype {t.dtype} (shape {t.shape})")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{fn}: {name} x must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False).reshape((x.shape[0],) + tuple(input_shape))
    if t.ndim == 2:
        t = t.astype(np.float32, copy=False)
    else:
        t = t.astype(np.int32, copy=False)
    return x, t


def _labels(t):
    return np.argmax(t, axis=1).astype(np.int32) if t.ndim == 2 else t


# ----------------------------------------------------------------------------- evaluation

_EVAL_CACHE: dict = {}


def _eval_fn(model):
    """A jitted count of correct predictions over (B, batch, ...) padded batches (label -1 = padding)."""
    fn = _EVAL_CACHE.get(model)
    if fn is None:

        def count(params, state, xb, tb):
            def one(carry, batch):
                x, t = batch
                scores, _ = model.apply(params, state, x, train=False, key=None)
                return carry + jnp.sum(jnp.argmax(scores, axis=-1) == t), None

            return jax.lax.scan(one, jnp.zeros((), jnp.int32), (xb, tb))[0]

        fn = _EVAL_CACHE[model] = jax.jit(count)
    return fn


def _eval_batches(x, labels, batch_size):
    """Pad to a multiple of batch_size (padding labels -1 never match) and reshape to batches."""
    n = x.shape[0]
    b = min(batch_size, n)
    nb = -(-n // b)
    pad = nb * b - n
    if pad:
        x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
        labels = np.concatenate([labels, np.full(pad, -1, np.int32)])
    return jnp.asarray(x.reshape((nb, b) + x.shape[1:])), jnp.asarray(labels.reshape(nb, b)), n


def _accuracy(model, params, state, batches):
    xb, tb, n = batches
    return int(_eval_fn(model)(params, state, xb, tb)) / n


def evaluate(model, params, state, x, t, batch_size: int = 1000) -> float:
    """Accuracy (a float in [0, 1]) of `model` in inference mode on x, t (labels or one-hot),
    computed in jitted batches of `batch_size`."""
    if int(batch_size) < 1:
        raise ValueError(f"evaluate: batch_size must be >= 1, got {batch_size}")
    x, t = _as_arrays("evaluate", "(x, t)", (x, t), model.input_shape)
    return _accuracy(model, params, state, _eval_batches(x, _labels(t), int(batch_size)))


# ----------------------------------------------------------------------------- checkpoints


def _atomic_write_bytes(path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(jax.device_get(tree))]


def save_checkpoint(path, *, params, state, opt_state, key, meta: dict) -> None:
    """Write one checkpoint file atomically.

    Layout: a header line `FNNET-CHECKPOINT-1 <sha256 of payload>` then the payload, an .npz
    holding the leaves of params, model state and optimizer state (in tree order), the PRNG key
    and `meta` (epoch, step, history, run settings) as JSON. The checksum is verified on load.
    """
    arrays = {"key": np.asarray(key)}
    for name, tree in (("params", params), ("state", state), ("opt_state", opt_state)):
        for i, leaf in enumerate(_leaves(tree)):
            arrays[f"{name}/{i:05d}"] = leaf
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    payload = buf.getvalue()
    header = CHECKPOINT_MAGIC + b" " + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    _atomic_write_bytes(path, header + payload)


def load_checkpoint(path) -> dict:
    """Read and verify a checkpoint; returns {'params', 'state', 'opt_state'} as lists of leaves,
    'key' and 'meta'. Raises CheckpointError for a missing, truncated or altered file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} cannot be read: {e.strerror}") from None
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
        with np.load(io.BytesIO(payload), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except Exception as e:  # checksum matched but content is unusable: written by something else
        raise CheckpointError(f"checkpoint {path} has an unreadable payload ({e})") from None
    out = {"key": arrays.pop("key"), "meta": meta}
    for name in ("params", "state", "opt_state"):
        keys = sorted(k for k in arrays if k.startswith(name + "/"))
        out[name] = [arrays[k] for k in keys]
    return out


def restore_leaves(fn, path, what, template, leaves):
    """Put checkpoint leaves into the tree structure of `template`, checking shapes and dtypes."""
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


def save_tree(tree, path) -> None:
    """Save the leaves of a pytree (e.g. Batch Norm running statistics) to an .npz, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{f"{i:05d}": leaf for i, leaf in enumerate(_leaves(tree))})
    _atomic_write_bytes(path, buf.getvalue())


def load_tree(path, template):
    """Load leaves saved by `save_tree` into the structure of `template` (shapes/dtypes checked)."""
    with np.load(path, allow_pickle=False) as z:
        leaves = [z[k] for k in sorted(z.files)]
    return restore_leaves("load_tree", path, "state", template, leaves)


def _checkpoints(out_dir):
    """Checkpoint files in out_dir, newest epoch first."""
    found = []
    for p in glob.glob(os.path.join(glob.escape(str(out_dir)), "checkpoint-*.ckpt")):
        m = _CHECKPOINT_RE.search(os.path.basename(p))
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, reverse=True)]


def latest_checkpoint(out_dir, log=print):
    """(path, loaded) of the newest checkpoint in out_dir that passes verification, or (None, None).
    Invalid newer ones are reported through `log` and skipped; if every one is invalid, the error
    of the newest is raised."""
    errors = []
    for path in _checkpoints(out_dir):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as e:
            errors.append(e)
            log(f"warning: {e}")
    if errors:
        raise errors[0]
    return None, None


# ----------------------------------------------------------------------------- output files


def _write_outputs(out_dir, params, state, history, settings):
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
    _atomic_write_bytes(os.path.join(out_dir, "metrics.json"), json.dumps(metrics, indent=1).encode())
    if params is not None:
        save_params(params, os.path.join(out_dir, "params.npz"))
        if jax.tree_util.tree_leaves(state):
            save_tree(state, os.path.join(out_dir, "state.npz"))
        plot_curves(history, os.path.join(out_dir, "curves.png"))


# ----------------------------------------------------------------------------- the loop


def with_weight_decay(model, weight_decay_lambda: float):
    """`model` with L2 weight decay: loss + 0.5*lambda*sum(W**2) over the weight arrays (the params
    whose name starts with 'W', as in the book; biases and Batch Norm parameters are left out), and
    lambda*W added to their gradients."""
    lam = float(weight_decay_lambda)
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"with_weight_decay: weight_decay_lambda must be >= 0, got {weight_decay_lambda}")

    def is_weight(path):
        last = path[-1]
        name = getattr(last, "key", getattr(last, "name", None))
        return isinstance(name, str) and name.startswith("W")

    def loss_and_grad(params, state, x, t, key=None):
        loss, grads, state = model.loss_and_grad(params, state, x, t, key)
        flat = jax.tree_util.tree_leaves_with_path(params)
        loss = loss + 0.5 * lam * sum(jnp.sum(p * p) for path, p in flat if is_weight(path))
        grads = jax.tree_util.tree_map_with_path(
            lambda path, g, p: g + lam * p if is_weight(path) else g, grads, params
        )
        return loss, grads, state

    return model._replace(loss_and_grad=loss_and_grad)


def _make_chunk(model, optimizer, augment):
    """A jitted scan of training steps over index batches idx (L, batch) and keys (L, 2)."""

    def step(carry, inp, x, t):
        params, state, opt_state = carry
        idx, key = inp
        xb, tb = x[idx], t[idx]
        aug_key, model_key = jax.random.split(key)
        if augment is not None:
            xb = augment(aug_key, xb)
        loss, grads, state = model.loss_and_grad(params, state, xb, tb, model_key)
        params, opt_state = optimizer.update(params, grads, opt_state)
        return (params, state, opt_state), loss

    def chunk(params, state, opt_state, x, t, idx, keys):
        carry, losses = jax.lax.scan(
            lambda c, i: step(c, i, x, t), (params, state, opt_state), (idx, keys)
        )
        return carry, losses

    return jax.jit(chunk, donate_argnums=(0, 1, 2))


def _check_int(fn, name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{fn}: {name} must be >= {low}, got {value}")
    return int(value)


def fit(
    model,
    optimizer,
    train_data,
    test_data,
    *,
    epochs: int,
    batch_size: int = 100,
    seed: int = 0,
    out_dir=None,
    resume: bool = False,
    augment: Callable | None = None,
    progress: bool = True,
    log: Callable = print,
    chunks: int = 10,
    train_eval_size: int = 10_000,
    eval_batch_size: int = 1000,
    info: dict | None = None,
) -> FitResult:
    """Train `model` with `optimizer` for `epochs` epochs of shuffled mini-batches.

    train_data, test_data: pairs (x, t) of arrays, t labels (N,) or one-hot (N, C); test_data may
    be None. augment(key, x_batch) -> x_batch (jit-compatible) is applied to every training batch.
    out_dir: where checkpoints (one per epoch, the last two kept), params.npz, metrics.json and
    curves.png go. resume: continue from the latest valid checkpoint in out_dir (a fresh start if
    there is none); without it, existing checkpoints in out_dir are removed first.
    Returns FitResult(params, state, opt_state, history) with history = {'loss': per iteration,
    'train_acc', 'test_acc', 'images_per_s': per epoch}. A NaN or infinite loss raises
    TrainingDiverged naming the epoch and step; the checkpoint of the last finished epoch stays.
    info: a JSON-serialisable description of the run (model, optimizer, ...) kept in metrics.json.
    """
    fn = "fit"
    epochs = _check_int(fn, "epochs", epochs, 0)
    batch_size = _check_int(fn, "batch_size", batch_size, 1)
    seed = _check_int(fn, "seed", seed, 0)
    chunks = _check_int(fn, "chunks", chunks, 1)
    train_eval_size = _check_int(fn, "train_eval_size", train_eval_size, 1)
    eval_batch_size = _check_int(fn, "eval_batch_size", eval_batch_size, 1)
    if resume and out_dir is None:
        raise ValueError(f"{fn}: resume=True needs out_dir, the folder holding the checkpoints")
    x_tr, t_tr = _as_arrays(fn, "train_data", train_data, model.input_shape)
    n = x_tr.shape[0]
    if batch_size > n:
        raise ValueError(f"{fn}: batch_size {batch_size} is larger than the {n} training samples")
    if test_data is not None:
        x_te, t_te = _as_arrays(fn, "test_data", test_data, model.input_shape)
    steps = n // batch_size
    chunk_len = -(-steps // min(chunks, steps))
    bounds = [(s, min(s + chunk_len, steps)) for s in range(0, steps, chunk_len)]

    settings = {
        "seed": seed,
        "batch_size": batch_size,
        "n_train": n,
        "input_shape": list(model.input_shape),
        "steps_per_epoch": steps,
    }
    if info is not None:
        settings_out = {"run": info}
        try:
            json.dumps(info)
        except TypeError as e:
            raise TypeError(f"{fn}: info must be JSON-serialisable ({e})") from None
    else:
        settings_out = {}
    key = jax.random.PRNGKey(seed)
    init_key, loop_key = jax.random.split(key)
    params, state = model.init(init_key)
    opt_state = optimizer.init(params)
    history = {"loss": [], "train_acc": [], "test_acc": [], "images_per_s": []}
    start_epoch = 0
    last_ckpt = None

    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        if resume:
            path, ck = latest_checkpoint(out_dir, log=log)
            if ck is None:
                log(f"no checkpoint in {out_dir}; starting from scratch")
            else:
                meta = ck["meta"]
                for k, v in settings.items():
                    if meta["settings"].get(k) != v:
                        raise CheckpointError(
                            f"{fn}: checkpoint {path} was written with {k}={meta['settings'].get(k)!r} "
                            f"but this run has {k}={v!r}; resuming would not reproduce the run"
                        )
                params = restore_leaves(fn, path, "params", params, ck["params"])
                state = restore_leaves(fn, path, "model state", state, ck["state"])
                opt_state = restore_leaves(fn, path, "optimizer state", opt_state, ck["opt_state"])
                loop_key = jnp.asarray(ck["key"])
                history = meta["history"]
                start_epoch = meta["epoch"]
                last_ckpt = path
                log(f"resuming from {path} (epoch {start_epoch}, step {meta['step']})")
        else:
            for p in _checkpoints(out_dir):
                os.unlink(p)

    # Everything on the device once; the training arrays are donated nowhere and reused each epoch.
    x_dev, t_dev = jnp.asarray(x_tr), jnp.asarray(t_tr)
    m = min(train_eval_size, n)
    train_eval = _eval_batches(x_tr[:m], _labels(t_tr[:m]), eval_batch_size)
    test_eval = _eval_batches(x_te, _labels(t_te), eval_batch_size) if test_data is not None else None
    run_chunk = _make_chunk(model, optimizer, augment)
    # Copy the (possibly shared) initial arrays: the first chunk donates its inputs.
    params, state, opt_state = jax.tree_util.tree_map(jnp.array, (params, state, opt_state))

    tqdm = None
    if progress:
        from tqdm.auto import tqdm

    for epoch in range(start_epoch, epochs):
        e1 = epoch + 1
        ekey = jax.random.fold_in(loop_key, epoch)
        perm_key, steps_key = jax.random.split(ekey)
        idx = jax.random.permutation(perm_key, n)[: steps * batch_size].reshape(steps, batch_size)
        keys = jax.random.split(steps_key, steps)
        bar = tqdm(total=steps, desc=f"epoch {e1}/{epochs}", unit="it", leave=False) if tqdm else None
        t0 = time.perf_counter()
        epoch_losses = []
        try:
            for s0, s1 in bounds:
                (params, state, opt_state), losses = run_chunk(
                    params, state, opt_state, x_dev, t_dev, idx[s0:s1], keys[s0:s1]
                )
                losses = np.asarray(losses)
                bad = np.flatnonzero(~np.isfinite(losses))
                if bad.size:
                    i = s0 + int(bad[0])
                    where = f"the last good checkpoint {last_ckpt} is kept" if last_ckpt else "no checkpoint"
                    raise TrainingDiverged(
                        f"{fn}: the loss became {losses[bad[0]]} at epoch {e1}, step {i + 1} of {steps} "
                        f"(iteration {epoch * steps + i + 1} overall); training stopped ({where}). "
                        f"Try a smaller learning rate."
                    )
                epoch_losses.append(losses)
                if bar is not None:
                    bar.update(s1 - s0)
                    bar.set_postfix(loss=f"{float(losses[-1]):.4f}")
        finally:
            if bar is not None:
                bar.close()
        elapsed = time.perf_counter() - t0
        ips = steps * batch_size / elapsed
        epoch_losses = np.concatenate(epoch_losses)
        train_acc = _accuracy(model, params, state, train_eval)
        test_acc = _accuracy(model, params, state, test_eval) if test_eval is not None else None
        history["loss"].extend(float(v) for v in epoch_losses)
        history["train_acc"].append(train_acc)
        history["test_acc"].append(test_acc)
        history["images_per_s"].append(ips)
        test_txt = f"{test_acc:.4f}" if test_acc is not None else "-"
        log(
            f"epoch {e1:>3}/{epochs}  loss {float(epoch_losses.mean()):.4f}  train acc {train_acc:.4f}  "
            f"test acc {test_txt}  {ips:,.0f} images/s"
        )
        if out_dir is not None:
            path = os.path.join(out_dir, CHECKPOINT_PATTERN.format(epoch=e1))
            meta = {"epoch": e1, "step": e1 * steps, "settings": settings, "history": history}
            save_checkpoint(path, params=params, state=state, opt_state=opt_state, key=loop_key, meta=meta)
            last_ckpt = path
            for old in _checkpoints(out_dir)[2:]:
                os.unlink(old)
            _write_outputs(out_dir, None, None, history, {**settings_out, **settings})

    if out_dir is not None:
        _write_outputs(out_dir, params, state, history, {**settings_out, **settings})
    return FitResult(params, state, opt_state, history)
