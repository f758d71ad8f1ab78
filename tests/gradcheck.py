"""The three-way gradient check every layer and model goes through, as assertions.

`check_layer(layer, params, *inputs)` runs `fnnet.gradcheck.check_layer` and asserts, for a
random upstream gradient dy:
  1. backward == jax.vjp of forward (in the inputs' dtype, float32 by default);
  2. jitted forward/backward give results identical to eager ones;
  3. in float64, backward == numerical_gradient, with relative error < 1e-7.
It returns the largest relative errors measured, and records them in `MEASURED` (per test
function) so that the pytest session ends with a table of the largest discrepancies.
"""

from __future__ import annotations

import os

import numpy as np

from fnnet import gradcheck
from fnnet.gradcheck import rel_error

MEASURED: dict = {}  # test function -> [max error vs jax.vjp, max error vs numerical]


def record(err_vjp: float, err_num: float, test: str | None = None) -> None:
    """Keep the largest errors per test function (default: the one pytest is running now)."""
    if test is None:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].split("[")[0]
    worst = MEASURED.setdefault(test, [0.0, 0.0])
    worst[0], worst[1] = max(worst[0], err_vjp), max(worst[1], err_num)


def check_layer(layer, params, *inputs, **kwargs):
    """Assert backward == vjp (float32), jit == eager, and backward == numerical (float64);
    return (error vs vjp, error vs numerical). Arguments as `fnnet.gradcheck.check_layer`."""
    report = gradcheck.check_layer(layer, params, *inputs, **kwargs)
    for problem in report.problems:
        raise AssertionError(problem)
    assert report.err_vjp < report.vjp_tol, f"backward vs jax.vjp: relative error {report.err_vjp:.3g}"
    assert report.jit_close, f"jit vs eager: relative difference {report.jit_error:.3g}"
    assert report.err_num < report.num_tol, \
        f"backward vs numerical (float64): relative error {report.err_num:.3g}"
    record(report.err_vjp, report.err_num)
    return report.err_vjp, report.err_num


def assert_close_report(name, a, b, tol):
    err = rel_error(a, b)
    assert err < tol, f"{name}: relative error {err:.3g} >= {tol}"
    return err


__all__ = ["check_layer", "rel_error", "record", "MEASURED", "assert_close_report", "np"]
