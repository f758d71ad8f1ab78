"""`fit`: the training loop, built from the pieces of this package.

    result = fit(model, optimizer, (x_train, t_train), (x_test, t_test), epochs=17)
    result.params, result.state, result.opt_state, result.history

How an epoch runs:
- The data is checked once (shapes, finite values, labels in range for the model's outputs),
  cast to float32, reshaped to (N,) + model.input_shape and put on the device once.
- Each epoch draws a permutation of the N samples from its own key (`fold_in(key, epoch)`) and
  trains on the first `N // batch_size` full batches (the tail is dropped; the shuffle changes
  every epoch, so every sample takes part). One epoch is `N // batch_size` iterations.
- The iterations run in at most `chunks` jitted `lax.scan` chunks (`epoch.make_chunk`), so that
  the progress bar moves and a NaN/inf loss or parameter is caught while the epoch runs.
- After each epoch: train accuracy on the first `train_eval_size` training samples and test
  accuracy on the whole test set, in inference mode; images/s is the epoch's training
  throughput (the first epoch includes compilation).

Same seed, same data, same machine -> bit-identical parameters. With `out_dir`, a checkpoint is
written atomically after every epoch; `resume=True` continues from the latest valid one and
reproduces the uninterrupted run exactly. The folder is checked before training starts
(`outputs.prepare_run_dir`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnnet import distributed as dist
from fnnet._checks import MAX_STEPS, check_dataset, check_int, check_seed, labels_of
from fnnet._docs import document_fields
from fnnet.training import checkpoint as ckpt
from fnnet.training.epoch import accuracy, epoch_plan, make_chunk, make_counter
from fnnet.training.outputs import claim_run_dir, prepare_run_dir, write_outputs

__all__ = ["FitResult", "TrainingDiverged", "fit", "evaluate", "output_size"]


class FitResult(NamedTuple):
    """What `fit` returns: the trained parameters, the model and optimizer states, the history."""

    params: dict
    state: dict
    opt_state: object
    history: dict


document_fields(
    FitResult,
    params="The trained parameters, a dict of arrays with the model's names (W1, b1, ...).",
    state="The model's state after training (Batch Norm running statistics), {} if none.",
    opt_state="The optimizer's state after the last update (see fnnet.optimizers).",
    history="{'loss': one per iteration, 'train_acc', 'test_acc', 'images_per_s': one per epoch}.",
)


class TrainingDiverged(FloatingPointError):
    """The training loss or the parameters became NaN or infinite."""


def output_size(model) -> int:
    """The number of classes the model scores (from its output shape; nothing is computed)."""
    params, state = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    x = jax.ShapeDtypeStruct((1,) + tuple(model.input_shape), jnp.float32)
    out = jax.eval_shape(lambda p, s, x: model.apply(p, s, x, train=False, key=None)[0], params, state, x)
    return int(out.shape[-1])


def evaluate(model, params, state, x, t, batch_size: int = 1000, devices=None) -> float:
    """Accuracy (a float in [0, 1]) of `model` in inference mode on x, t (labels or one-hot),
    computed in jitted batches of `batch_size` (split over `devices`, as in `fit`)."""
    batch_size = check_int("evaluate", "batch_size", batch_size, 1)
    x, t = check_dataset("evaluate", "(x, t)", (x, t), model.input_shape, output_size(model))
    mesh = dist.make_mesh(devices, fn="evaluate")
    params, state = dist.put_replicated((params, state), mesh)
    batches = dist.eval_batches(x, labels_of(t), batch_size, mesh)
    return accuracy(make_counter(model, mesh), params, state, batches)


def _restore(fn, out_dir, log, settings, run, trees, epochs):
    """(params, state, opt_state, loop_key, history, epoch, path) from the newest valid checkpoint,
    or None when the folder has none. A run that has done more than `epochs` epochs is refused:
    its metrics.json would describe fewer epochs than it holds."""
    warn = _quiet if log is _quiet else ckpt.print_warning  # a skipped checkpoint is a warning: stderr
    path, ck = ckpt.latest_checkpoint(out_dir, log=warn, max_bytes=ckpt.checkpoint_cap(trees[0], trees[1]))
    if ck is None:
        log(f"no checkpoint in {out_dir}; starting from scratch")
        return None
    meta = ck["meta"]
    ckpt.check_resume(path, meta, settings, run, fn=fn)
    if meta["epoch"] > epochs:
        raise ValueError(
            f"{fn}: the run in {out_dir} has done {meta['epoch']} epochs ({path}); resuming it with "
            f"epochs={epochs} would leave its metrics.json describing fewer epochs than it holds. "
            f"Resume with epochs >= {meta['epoch']}, or evaluate {path} as it is"
        )
    restored = [ckpt.restore_leaves(path, what, tree, ck[name], fn=fn) for what, name, tree in
                zip(("params", "model state", "optimizer state"), ("params", "state", "opt_state"), trees,
                    strict=True)]
    key = np.asarray(ck["key"])
    if key.shape != (2,) or key.dtype != np.uint32:
        raise ckpt.CheckpointError(f"{fn}: checkpoint {path} holds a PRNG key of {key.dtype}{key.shape}")
    log(f"resuming from {path} (epoch {meta['epoch']}, step {meta['step']})")
    return (*restored, jnp.asarray(key), meta["history"], meta["epoch"], path)


def _run_epoch(fn, run_chunk, carry, data, plan, bounds, where, progress, mesh):
    """Train one epoch chunk by chunk, with a progress bar if `progress`; returns (carry, losses).
    Stops with TrainingDiverged at the first chunk whose loss or parameters are not finite."""
    idx, keys = plan
    if mesh is not None:
        idx, keys = np.asarray(idx), np.asarray(keys)
    losses = []
    with _progress_bar(progress, where) as bar:
        for s0, s1 in bounds:
            i, k = idx[s0:s1], keys[s0:s1]
            if mesh is not None:  # each process transfers only the columns of idx its devices hold
                i, k = dist.put_sharded(i, mesh, axis=1), dist.put_replicated(k, mesh)
            carry, chunk_losses, finite = run_chunk(*carry, *data, i, k)
            chunk_losses = np.asarray(chunk_losses)
            bad = np.flatnonzero(~np.isfinite(chunk_losses))
            if bad.size or not bool(finite):
                raise TrainingDiverged(_diverged(fn, where, chunk_losses, bad, s0, s1))
            losses.append(chunk_losses)
            if bar is not None:
                bar.update(s1 - s0)
                bar.set_postfix(loss=f"{float(chunk_losses[-1]):.4f}")
    return carry, np.concatenate(losses)


def _diverged(fn, where, chunk_losses, bad, s0, s1) -> str:
    """TrainingDiverged's message: where the loss (or a parameter) stopped being finite, and why."""
    what = (f"the loss became {chunk_losses[bad[0]]} at epoch {where['epoch']}, step "
            f"{s0 + int(bad[0]) + 1} of {where['steps']}" if bad.size else
            f"a parameter became NaN or infinite at epoch {where['epoch']}, steps {s0 + 1}-{s1} "
            f"of {where['steps']}")
    return (f"{fn}: {what}; training stopped ({where['kept']}). The data was checked (finite, labels in "
            "range), so the updates diverged: try a smaller learning rate, a warm-up or gradient clipping.")


def _quiet(*args, **kwargs):
    pass


def _progress_bar(progress, where):
    """The epoch's tqdm bar (closed on leaving a `with`), or a context that gives None."""
    if not progress:
        return contextlib.nullcontext()
    from tqdm.auto import tqdm

    desc = f"epoch {where['epoch']}/{where['epochs']}"
    return tqdm(total=where["steps"], desc=desc, unit="it", leave=False)


def _checkpoint(out_dir, epoch, steps, carry, loop_key, settings, run, history):
    path = os.path.join(out_dir, ckpt.CHECKPOINT_PATTERN.format(epoch=epoch))
    meta = {"epoch": epoch, "step": epoch * steps, "settings": settings, "run": run, "history": history}
    params, state, opt_state = carry
    ckpt.save_checkpoint(path, params=params, state=state, opt_state=opt_state, key=loop_key, meta=meta)
    for old in ckpt.checkpoints(out_dir)[2:]:
        os.unlink(old)
    return path


class _Data(NamedTuple):
    """What fit computes once from its arguments: device arrays, eval batches, the step plan."""

    train: tuple  # (x, t) on the device
    n: int
    steps: int
    bounds: list  # (first, end) step of each chunk
    train_eval: tuple
    test_eval: tuple | None
    settings: dict  # what a checkpoint must share with the run that resumes it


def _prepare_data(fn, model, train_data, test_data, epochs, batch_size, seed, chunks, train_eval_size,
                  eval_batch_size, mesh) -> _Data:
    classes = output_size(model)
    x, t = check_dataset(fn, "train_data", train_data, model.input_shape, classes)
    n = x.shape[0]
    if batch_size > n:
        raise ValueError(f"{fn}: batch_size {batch_size} is larger than the {n} training samples")
    test = test_data and check_dataset(fn, "test_data", test_data, model.input_shape, classes)
    steps = n // batch_size
    if epochs * steps > MAX_STEPS:
        raise ValueError(f"{fn}: {epochs:,} epochs of {steps:,} steps are {epochs * steps:,} steps, more "
                         f"than the {MAX_STEPS:,} that the int32 step counter counts")
    chunk_len = -(-steps // min(chunks, steps))
    m = min(train_eval_size, n)
    return _Data(
        dist.put_replicated((x, t), mesh), n, steps,
        [(s, min(s + chunk_len, steps)) for s in range(0, steps, chunk_len)],
        dist.eval_batches(x[:m], labels_of(t[:m]), eval_batch_size, mesh),
        None if test is None else dist.eval_batches(test[0], labels_of(test[1]), eval_batch_size, mesh),
        {"seed": seed, "batch_size": batch_size, "n_train": n, "input_shape": list(model.input_shape),
         "steps_per_epoch": steps},
    )


def _check_args(fn, resume, overwrite, out_dir, info, ints):
    if resume and overwrite:
        raise ValueError(f"{fn}: resume=True and overwrite=True contradict each other; choose one")
    if resume and out_dir is None:
        raise ValueError(f"{fn}: resume=True needs out_dir, the folder holding the checkpoints")
    try:
        json.dumps(info)
    except TypeError as e:
        raise TypeError(f"{fn}: info must be JSON-serialisable ({e})") from None
    return [check_int(fn, name, v, low) for name, (v, low) in ints.items()]


def fit(
    model, optimizer, train_data, test_data, *, epochs: int, batch_size: int = 100, seed: int = 0,
    out_dir=None, resume: bool = False, overwrite: bool = False, augment: Callable | None = None,
    progress: bool = True, log: Callable = print, chunks: int = 10, train_eval_size: int = 10_000,
    eval_batch_size: int = 1000, info: dict | None = None, devices=None,
) -> FitResult:
    """Train `model` with `optimizer` for `epochs` epochs of shuffled mini-batches.

    train_data, test_data: pairs (x, t), t labels (N,) or one-hot (N, C); test_data may be None.
    augment(key, x_batch) -> x_batch (jit-compatible) is applied to every training batch.
    out_dir: checkpoints (the last two epochs), params.npz, metrics.json and curves.png go there; a
    folder holding a run is refused unless resume=True (continue it from its latest valid
    checkpoint) or overwrite=True (delete its files first). info: a JSON description of the run
    (model, optimizer, schedule, ...) kept in metrics.json and checkpoints; resuming refuses a
    different one (only 'epochs' may change). Returns FitResult(params, state, opt_state,
    history) with history = {'loss': per iteration, 'train_acc', 'test_acc', 'images_per_s': per
    epoch}. A NaN/inf loss or parameter raises TrainingDiverged; the last checkpoint stays.

    devices: None trains on the default device. An int N, 'all', a list of devices or a Mesh
    with one axis 'data' (see `fnnet.distributed`) splits every batch over those devices, with
    params, state and optimizer state replicated; each step's results are those of one device
    within float32 rounding (over a run ReLU can amplify it: see `fnnet.distributed`), and
    checkpoints resume on any device count. Across processes (after
    `fnnet.distributed.initialize`) only process 0 prints and writes files; every process reads
    the checkpoint it resumes from, so out_dir must be on a shared filesystem.

    >>> import numpy as np
    >>> from fnnet import optimizers
    >>> from fnnet.layers import Affine, Relu, serial
    >>> x = np.random.default_rng(0).random((200, 4), np.float32)
    >>> t = (x.sum(axis=1) > 2).astype(np.int32)                  # two classes
    >>> model = serial(Affine(8), Relu(), Affine(2)).model((4,))
    >>> result = fit(model, optimizers.sgd(0.1), (x, t), None, epochs=2, batch_size=50,
    ...              progress=False, log=lambda line: None)
    >>> len(result.history["loss"]), len(result.history["train_acc"])   # 4 iterations per epoch
    (8, 2)
    >>> sorted(result.params)
    ['W1', 'W2', 'b1', 'b2']
    """
    fn = "fit"
    epochs, batch_size, seed, chunks, train_eval_size, eval_batch_size = _check_args(
        fn, resume, overwrite, out_dir, info, {
            "epochs": (epochs, 0), "batch_size": (batch_size, 1), "seed": (seed, 0), "chunks": (chunks, 1),
            "train_eval_size": (train_eval_size, 1), "eval_batch_size": (eval_batch_size, 1)})
    seed = check_seed(fn, seed)
    mesh = dist.make_mesh(devices, fn=fn)
    dist.check_batch(batch_size, mesh, fn=fn)
    if not dist.is_main_process():
        progress, log = False, _quiet
    d = _prepare_data(fn, model, train_data, test_data, epochs, batch_size, seed, chunks, train_eval_size,
                      eval_batch_size, mesh)
    init_key, loop_key = jax.random.split(jax.random.PRNGKey(seed))
    params, state = model.init(init_key)
    trees = (params, state, optimizer.init(params))
    history = {k: [] for k in ckpt.HISTORY_KEYS}
    writes = out_dir is not None and dist.is_main_process()
    lock = prepare_run_dir(out_dir, resume=resume, overwrite=overwrite, fn=fn) if writes else None
    with lock if lock is not None else contextlib.nullcontext():  # the folder is ours until the end
        start, kept = 0, None
        restored = _restore(fn, out_dir, log, d.settings, info, trees, epochs) if resume else None
        if restored is not None:
            *trees, loop_key, history, start, kept = restored
        if lock is not None:
            claim_run_dir(lock)
        carry = dist.put_replicated(tuple(trees), mesh)  # a copy: the chunks donate their inputs
        count, run_chunk = make_counter(model, mesh), make_chunk(model, optimizer, augment, mesh)
        outputs = {"run": info, **d.settings} if info is not None else d.settings

        for epoch in range(start + 1, epochs + 1):
            where = {"epoch": epoch, "epochs": epochs, "steps": d.steps,
                     "kept": f"{kept} is kept" if kept else "no checkpoint"}
            plan = epoch_plan(loop_key, epoch - 1, d.n, d.steps, batch_size)
            t0 = time.perf_counter()
            carry, losses = _run_epoch(fn, run_chunk, carry, d.train, plan, d.bounds, where, progress, mesh)
            ips = d.steps * batch_size / (time.perf_counter() - t0)
            train_acc = accuracy(count, carry[0], carry[1], d.train_eval)
            test_acc = None if d.test_eval is None else accuracy(count, carry[0], carry[1], d.test_eval)
            for k, v in zip(ckpt.HISTORY_KEYS[1:], (train_acc, test_acc, ips), strict=True):
                history[k].append(v)
            history["loss"].extend(float(v) for v in losses)
            log(f"epoch {epoch:>3}/{epochs}  loss {float(losses.mean()):.4f}  train acc {train_acc:.4f}  "
                f"test acc {'-' if test_acc is None else f'{test_acc:.4f}'}  {ips:,.0f} images/s")
            if writes:
                kept = _checkpoint(out_dir, epoch, d.steps, carry, loop_key, d.settings, info, history)
                write_outputs(out_dir, None, None, history, outputs)
        if writes:
            write_outputs(out_dir, carry[0], carry[1], history, outputs)
        return FitResult(*carry, history)
