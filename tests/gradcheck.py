"""The three-way gradient check every layer and model goes through.

`check_layer(layer, params, *inputs)` asserts, for a random upstream gradient dy:
  1. backward == jax.vjp of forward (in the inputs' dtype, float32 by default);
  2. jitted forward/backward give results identical to eager ones;
  3. in float64, backward == numerical_gradient, with relative error < 1e-7.
It returns the largest relative errors measured, and records them in `MEASURED` (per test
function) so that the pytest session ends with a table of the largest discrepancies.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from fnnet.gradient import numerical_gradient

MEASURED: dict = {}  # test function -> [max error vs jax.vjp, max error vs numerical]


def record(err_vjp: float, err_num: float, test: str | None = None) -> None:
    """Keep the largest errors per test function (default: the one pytest is running now)."""
    import os

    if test is None:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].split("[")[0]
    worst = MEASURED.setdefault(test, [0.0, 0.0])
    worst[0], worst[1] = max(worst[0], err_vjp), max(worst[1], err_num)


def rel_error(a, b) -> float:
    """max |a - b| / max(|a| + |b|, tiny) over all leaves of two pytrees."""
    errs = jax.tree_util.tree_map(
        lambda x, y: float(jnp.max(jnp.abs(x - y)) / max(float(jnp.max(jnp.abs(x) + jnp.abs(y))), 1e-30)),
        a, b,
    )
    return max(jax.tree_util.tree_leaves(errs), default=0.0)


def _to64(tree):
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(x, jnp.float64) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x,
        tree,
    )


def _float_mask(inputs):
    return [jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) for x in inputs]


def check_layer(layer, params, *inputs, dy_seed=0, nondiff=(), vjp_tol=1e-5, num_tol=1e-7, **kwargs):
    """Assert backward == vjp (float32) and == numerical (float64); return the errors.

    Only floating inputs are differentiated (integer labels pass through); `nondiff` lists the
    positions of floating inputs that are data, not variables (e.g. one-hot targets). `kwargs` go
    to `layer.forward` (stride, pad, train, key, ...). A layer whose forward returns a third
    value (new state) is handled: only (y, cache) matter here.
    """
    floats = [f and i not in nondiff for i, f in enumerate(_float_mask(inputs))]

    def fwd(p, *xs):
        return layer.forward(p, *xs, **kwargs)[:2]

    def split_dx(dx):
        dxs = dx if isinstance(dx, tuple) else (dx,)
        return tuple(d for d, f in zip(dxs, floats, strict=True) if f) if len(dxs) == len(inputs) else dxs

    y, cache = fwd(params, *inputs)
    dy = jax.random.normal(jax.random.PRNGKey(dy_seed), jnp.shape(y), jnp.asarray(y).dtype)
    dx, grads = layer.backward(cache, dy)
    chex.assert_trees_all_equal_shapes(grads, params)

    diff_idx = [i for i, f in enumerate(floats) if f]

    def f_for_vjp(p, *fx):
        xs = list(inputs)
        for i, v in zip(diff_idx, fx, strict=True):
            xs[i] = v
        return fwd(p, *xs)[0]

    _, vjp = jax.vjp(f_for_vjp, params, *[inputs[i] for i in diff_idx])
    ref = vjp(dy)
    err_vjp = rel_error((grads, split_dx(dx)), (ref[0], tuple(ref[1:])))
    assert err_vjp < vjp_tol, f"backward vs jax.vjp: relative error {err_vjp:.3g}"

    jit_y, jit_cache = jax.jit(fwd)(params, *inputs)
    jit_dx, jit_grads = jax.jit(layer.backward)(jit_cache, dy)
    chex.assert_trees_all_close((jit_y, jit_dx, jit_grads), (y, dx, grads), rtol=1e-5, atol=1e-6)

    with jax.enable_x64(True):
        p64, in64, dy64 = _to64(params), _to64(list(inputs)), jnp.asarray(dy, jnp.float64)

        def scalar(p, fx):
            xs = list(in64)
            for i, v in zip(diff_idx, fx, strict=True):
                xs[i] = v
            return jnp.sum(fwd(p, *xs)[0] * dy64)

        fx64 = tuple(in64[i] for i in diff_idx)
        y64, cache64 = fwd(p64, *in64)
        dx64, grads64 = layer.backward(cache64, dy64)
        num = numerical_gradient(lambda z: scalar(*z), (p64, fx64))
        err_num = rel_error((grads64, split_dx(dx64)), num)
    assert err_num < num_tol, f"backward vs numerical (float64): relative error {err_num:.3g}"
    record(err_vjp, err_num)
    return err_vjp, err_num


def assert_close_report(name, a, b, tol):
    err = rel_error(a, b)
    assert err < tol, f"{name}: relative error {err:.3g} >= {tol}"
    return err


__all__ = ["check_layer", "rel_error", "assert_close_report", "np"]
