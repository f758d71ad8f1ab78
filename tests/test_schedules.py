"""fnnet.schedules: values at chosen steps against hand-computed ones, jit/vmap, argument errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet import schedules as S

# (schedule, {step: value by hand})
CASES = {
    "constant": (S.constant(0.1), {0: 0.1, 7: 0.1, 10**6: 0.1}),
    "step": (S.step_decay(0.1, [10, 20], 0.5), {0: 0.1, 9: 0.1, 10: 0.05, 19: 0.05, 20: 0.025, 10**6: 0.025}),
    "step_default_factor": (S.step_decay(1e-3, [5]), {4: 1e-3, 5: 1e-4}),
    "exponential": (S.exponential_decay(0.1, 100, 0.5),
                    {0: 0.1, 50: 0.1 * math.sqrt(0.5), 100: 0.05, 300: 0.0125}),
    "cosine": (S.cosine_decay(1.0, 100, final=0.1),
               {0: 1.0, 25: 0.1 + 0.45 * (1 + math.cos(math.pi / 4)), 50: 0.55, 100: 0.1, 250: 0.1}),
    "cosine_to_zero": (S.cosine_decay(0.4, 8), {0: 0.4, 4: 0.2, 8: 0.0, 9: 0.0}),
    "warmup_number": (S.linear_warmup(0.2, 4), {0: 0.0, 1: 0.05, 2: 0.1, 3: 0.15, 4: 0.2, 100: 0.2}),
    "warmup_cosine": (S.linear_warmup(S.cosine_decay(1.0, 100), 10),
                      {0: 0.0, 5: 0.5, 9: 0.9, 10: 1.0, 35: 0.5 * (1 + math.cos(math.pi / 4)), 60: 0.5,
                       110: 0.0, 1000: 0.0}),
    "warmup_step": (S.linear_warmup(S.step_decay(0.1, [50]), 10, start=0.01),
                    {0: 0.01, 5: 0.055, 10: 0.1, 59: 0.1, 60: 0.01, 500: 0.01}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_values_eager_and_jit(name):
    sched, want = CASES[name]
    jitted = jax.jit(sched)
    steps = np.array(list(want), np.int32)
    by_vmap = jax.vmap(sched)(jnp.asarray(steps))
    for i, (step, value) in enumerate(want.items()):
        eager = sched(step)
        assert eager.shape == () and eager.dtype == jnp.float32, (name, step)
        np.testing.assert_allclose(float(eager), value, rtol=2e-6, atol=1e-8, err_msg=f"{name} step {step}")
        assert float(jitted(jnp.int32(step))) == pytest.approx(float(eager), rel=1e-6, abs=1e-9)
        assert float(by_vmap[i]) == pytest.approx(float(eager), rel=1e-6, abs=1e-9)


def test_step_decay_is_a_float32_table_of_double_products():
    """Each piece is float32(lr * factor**k) computed in double: what a hand-built optimizer at
    that rate multiplies by."""
    sched = S.step_decay(1e-3, [3, 6, 9], 0.1)
    for k, step in enumerate((0, 3, 6, 9)):
        assert np.float32(sched(step)) == np.float32(1e-3 * 0.1**k)
        assert np.float32(sched(step + 2)) == np.float32(1e-3 * 0.1**k)
    assert np.float32(S.step_decay(1e-3, [5])(5)) == np.float32(1e-3 * 0.1)
    assert float(S.step_decay(0.3, [])(10**5)) == pytest.approx(0.3)


def test_float32_under_x64_and_traced_steps():
    with jax.enable_x64(True):
        for sched, _ in CASES.values():
            assert sched(jnp.int64(3)).dtype == jnp.float32
            assert jax.jit(sched)(5).dtype == jnp.float32

    def run(step):
        return jax.lax.fori_loop(0, 3, lambda i, acc: acc + CASES["warmup_step"][0](step + i), 0.0)

    assert float(jax.jit(run)(jnp.int32(8))) == pytest.approx(0.082 + 0.091 + 0.1, rel=1e-6)


def test_as_schedule():
    const = S.as_schedule(0.25)
    assert float(const(0)) == pytest.approx(0.25) and float(const(99)) == pytest.approx(0.25)
    cos = S.cosine_decay(1.0, 10)
    assert S.as_schedule(cos) is cos
    assert float(S.as_schedule(lambda step: 0.5 * jnp.ones(()))(3)) == 0.5
    with pytest.raises(TypeError, match=r"as_schedule: lr must be a number or a schedule .*got '0.1'"):
        S.as_schedule("0.1")
    with pytest.raises(TypeError, match="fails on an int32 scalar step"):
        S.as_schedule(lambda: 0.1)
    with pytest.raises(TypeError, match=r"must return a floating-point scalar, got shape \(3,\)"):
        S.as_schedule(lambda step: jnp.ones(3))
    with pytest.raises(TypeError, match="must return a floating-point scalar, got shape \\(\\) dtype int32"):
        S.as_schedule(lambda step: step)


@pytest.mark.parametrize("build,exc,match", [
    (lambda: S.constant(0.0), ValueError, "constant: lr must be > 0"),
    (lambda: S.constant(True), TypeError, "constant: lr must be a number or a schedule"),
    (lambda: S.constant(float("nan")), ValueError, "constant: lr must be finite"),
    (lambda: S.step_decay(0.1, [20, 10]), ValueError, r"step_decay: boundaries must be strictly increasing, "
                                                      r"got \[20, 10\]"),
    (lambda: S.step_decay(0.1, [10, 10]), ValueError, "strictly increasing"),
    (lambda: S.step_decay(0.1, [0]), ValueError, "step_decay: boundaries must be >= 1, got 0"),
    (lambda: S.step_decay(0.1, [2.5]), TypeError, "step_decay: boundaries must be an integer, got 2.5"),
    (lambda: S.step_decay(0.1, 10), TypeError, "step_decay: boundaries must be a sequence of steps, got 10"),
    (lambda: S.step_decay(0.1, [10], 0.0), ValueError, "step_decay: factor must be > 0"),
    (lambda: S.step_decay(0.1, [10], 1.5), ValueError, "step_decay: factor must be <= 1"),
    (lambda: S.step_decay("1e-3", [10]), TypeError, "step_decay: lr must be a number or a schedule"),
    (lambda: S.exponential_decay(0.1, 0, 0.5), ValueError, "exponential_decay: decay_steps must be >= 1"),
    (lambda: S.exponential_decay(0.1, 10, 2.0), ValueError, "exponential_decay: rate must be <= 1"),
    (lambda: S.exponential_decay(0.1, 10, 0.0), ValueError, "exponential_decay: rate must be > 0"),
    (lambda: S.cosine_decay(0.1, 10, final=0.2), ValueError, r"cosine_decay: final must be <= lr \(0.1\)"),
    (lambda: S.cosine_decay(0.1, 10, final=-0.1), ValueError, "cosine_decay: final must be >= 0"),
    (lambda: S.cosine_decay(0.1, True), TypeError, "cosine_decay: decay_steps must be an integer, got True"),
    (lambda: S.linear_warmup(0.1, 0), ValueError, "linear_warmup: warmup_steps must be >= 1"),
    (lambda: S.linear_warmup(0.1, 5, start=float("inf")), ValueError, "linear_warmup: start must be finite"),
    (lambda: S.linear_warmup("x", 5), TypeError, "linear_warmup: schedule_or_lr must be a number or a sched"),
])
def test_bad_arguments(build, exc, match):
    with pytest.raises(exc, match=match):
        build()
