"""Learning-rate schedules: pure functions `step -> lr`.

    sched = schedules.linear_warmup(schedules.cosine_decay(0.01, 9000), 1000)
    opt = optimizers.sgd(lr=sched)        # every optimizer takes a number or a schedule

A schedule takes the step count (an int32 scalar, possibly traced under `jax.jit`; the first
update is step 0) and returns the learning rate as a float32 scalar. Any function of that form
is a schedule; the ones here check their arguments when built. Step counts and boundaries must
fit the int32 counter (at most MAX_STEPS = 2**31 - 1); larger ones are refused, not wrapped:

- constant(lr):                 lr
- step_decay(lr, boundaries, f): lr * f**k, k = number of boundaries <= step
- exponential_decay(lr, n, r):   lr * r**(step / n)
- cosine_decay(lr, n, final):    final + (lr - final) * (1 + cos(pi * min(step, n) / n)) / 2
- linear_warmup(s, w, start):    start -> s(0) linearly over w steps, then s(step - w)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fnnet._checks import MAX_STEPS, check_number, check_steps, is_concrete

__all__ = [
    "MAX_STEPS", "constant", "step_decay", "exponential_decay", "cosine_decay", "linear_warmup",
    "as_schedule",
]

Schedule = Callable[[jax.Array], jax.Array]


def _check_lr(fn: str, arg: str, lr) -> None:
    if is_concrete(lr) and isinstance(lr, (str, bytes, bool, np.bool_)):
        raise TypeError(f"{fn}: {arg} must be a number or a schedule (a function step -> lr), got {lr!r}")
    check_number(fn, arg, lr, low=0.0, low_open=True)


def _step(step) -> jax.Array:
    return jnp.asarray(step)


def as_schedule(lr, fn: str = "as_schedule", arg: str = "lr") -> Schedule:
    """The schedule for `lr`: a number > 0 becomes constant(lr); a function is checked to map an
    int32 scalar step to a floating-point scalar (by shape only, nothing runs) and returned as is."""
    if not callable(lr):
        _check_lr(fn, arg, lr)
        return constant(lr)
    try:
        out = jax.eval_shape(lr, jax.ShapeDtypeStruct((), jnp.int32))
    except Exception as e:
        raise TypeError(f"{fn}: {arg} schedule {lr!r} fails on an int32 scalar step: {e}") from e
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    if shape != () or dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{fn}: {arg} schedule must return a floating-point scalar, got "
                        f"shape {shape} dtype {dtype} from {lr!r}")
    return lr


def constant(lr: float) -> Schedule:
    """lr at every step."""
    _check_lr("constant", "lr", lr)

    def schedule(step):
        return jnp.full((), lr, jnp.float32)

    return schedule


def step_decay(lr: float, boundaries: Sequence[int], factor: float = 0.1) -> Schedule:
    """lr * factor**k, where k is the number of `boundaries` (steps, increasing, >= 1) that are <= step.

    The rates lr * factor**k are computed once in double precision and rounded to float32, so an
    optimizer on this schedule takes the same steps as one rebuilt by hand at lr * factor**k at
    each boundary."""
    fn = "step_decay"
    _check_lr(fn, "lr", lr)
    check_number(fn, "factor", factor, low=0.0, high=1.0, low_open=True)
    if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Sequence | np.ndarray):
        raise TypeError(f"{fn}: boundaries must be a sequence of steps, got {boundaries!r}")
    bounds = [check_steps(fn, "boundaries", b) for b in boundaries]
    if any(b >= c for b, c in zip(bounds, bounds[1:], strict=False)):
        raise ValueError(f"{fn}: boundaries must be strictly increasing, got {bounds}")
    table = np.array([float(lr) * float(factor) ** k for k in range(len(bounds) + 1)], np.float32)
    edges = np.array(bounds, np.int64)

    def schedule(step):
        s = _step(step)
        k = jnp.sum(s >= edges.astype(s.dtype)) if len(bounds) else 0
        return jnp.asarray(table)[k]

    return schedule


def exponential_decay(lr: float, decay_steps: int, rate: float) -> Schedule:
    """lr * rate**(step / decay_steps), continuous in step; rate in (0, 1]."""
    fn = "exponential_decay"
    _check_lr(fn, "lr", lr)
    n = check_steps(fn, "decay_steps", decay_steps)
    check_number(fn, "rate", rate, low=0.0, high=1.0, low_open=True)

    def schedule(step):
        s = _step(step).astype(jnp.float32)
        return lr * jnp.power(jnp.float32(rate), s / n)

    return schedule


def cosine_decay(lr: float, decay_steps: int, final: float = 0.0) -> Schedule:
    """final + (lr - final) * (1 + cos(pi * min(step, decay_steps) / decay_steps)) / 2: from lr at
    step 0 down to `final` (0 <= final <= lr) at decay_steps, then final."""
    fn = "cosine_decay"
    _check_lr(fn, "lr", lr)
    n = check_steps(fn, "decay_steps", decay_steps)
    check_number(fn, "final", final, low=0.0)
    if is_concrete(final) and is_concrete(lr) and float(final) > float(lr):
        raise ValueError(f"{fn}: final must be <= lr ({lr}), got {final}")

    def schedule(step):
        s = jnp.minimum(_step(step).astype(jnp.float32), n)
        return final + (lr - final) * 0.5 * (1.0 + jnp.cos(math.pi * s / n))

    return schedule


def linear_warmup(schedule_or_lr, warmup_steps: int, start: float = 0.0) -> Schedule:
    """Rise linearly from `start` at step 0 to the wrapped schedule's first value at warmup_steps,
    then follow it. The wrapped schedule sees step - warmup_steps (its own count starts after the
    warm-up), so a decay after warm-up begins at its peak; a number is a constant schedule."""
    fn = "linear_warmup"
    inner = as_schedule(schedule_or_lr, fn, "schedule_or_lr")
    w = check_steps(fn, "warmup_steps", warmup_steps)
    check_number(fn, "start", start, low=0.0)

    def schedule(step):
        s = _step(step)
        peak = inner(jnp.zeros_like(s))
        warm = start + (peak - start) * (s.astype(jnp.float32) / w)
        after = inner(jnp.maximum(s - w, 0))
        return jnp.where(s < w, warm, after).astype(jnp.float32)

    return schedule
