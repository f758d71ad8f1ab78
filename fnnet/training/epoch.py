"""The compiled pieces of an epoch: a `lax.scan` chunk of training steps and a batched evaluation.

    run_chunk = make_chunk(model, optimizer, augment, mesh)
    (params, state, opt_state), losses, finite = run_chunk(params, state, opt_state, x, t, idx, keys)

x and t are the whole training set on the device; idx (L, batch) holds the sample indices of L
steps and keys (L, 2) their PRNG keys. Each step gathers its batch from x and t inside the scan
(no Python loop per batch), splits its key into an augmentation key and a model key (dropout),
and applies the model's hand-written `loss_and_grad` and the optimizer's update. `finite` is
False when any parameter became NaN or infinite during the chunk.

With a device mesh (`fnnet.distributed`), the same function is compiled with shardings: idx is
split along its batch axis, everything else replicated, and the compiler turns the batch means
of the hand-written backward pass into all-reduces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnnet.distributed import shard_chunk, shard_eval

__all__ = ["make_chunk", "epoch_plan", "make_counter", "accuracy"]


def make_chunk(model, optimizer, augment=None, mesh=None):
    """A jitted scan of training steps; params, state and opt_state are donated."""

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
        carry, losses = jax.lax.scan(lambda c, i: step(c, i, x, t), (params, state, opt_state), (idx, keys))
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree_util.tree_leaves(carry[0])]))
        return carry, losses, finite

    return shard_chunk(chunk, mesh)


def epoch_plan(loop_key, epoch: int, n: int, steps: int, batch_size: int):
    """The epoch's shuffled index batches (steps, batch_size) and per-step keys (steps, 2), drawn
    from `fold_in(loop_key, epoch)`: the first steps*batch_size samples of a fresh permutation."""
    perm_key, steps_key = jax.random.split(jax.random.fold_in(loop_key, epoch))
    idx = jax.random.permutation(perm_key, n)[: steps * batch_size].reshape(steps, batch_size)
    return idx, jax.random.split(steps_key, steps)


def make_counter(model, mesh=None):
    """A jitted count of correct predictions over (B, batch, ...) padded batches (label -1 = padding),
    in inference mode (train=False)."""

    def count(params, state, xb, tb):
        def one(carry, batch):
            x, t = batch
            scores, _ = model.apply(params, state, x, train=False, key=None)
            return carry + jnp.sum(jnp.argmax(scores, axis=-1) == t), None

        return jax.lax.scan(one, jnp.zeros((), jnp.int32), (xb, tb))[0]

    return shard_eval(count, mesh)


def accuracy(counter, params, state, batches) -> float:
    """Fraction correct over (xb, tb, n) from `fnnet.distributed.eval_batches`."""
    xb, tb, n = batches
    return int(counter(params, state, xb, tb)) / n
