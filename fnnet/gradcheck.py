"""Check a hand-written backward pass three ways (chapter 5's gradient check, for any layer).

    report = check_layer(layer, params, x)
    print(report)            # the largest error per argument, the tolerances, and whether it passed
    assert report.passed

`layer` is anything in fnnet's layer form (see `fnnet.layers.core`):

    y, cache = layer.forward(params, *inputs, **kwargs)
    dx, grads = layer.backward(cache, dy)

or a `fnnet.layers.compose.Block` (a `serial` net): its forward returns (y, cache, new_state), and
without a `state=` keyword `check_layer` takes the state from `layer.init(PRNGKey(0), x.shape[1:])`.
For a random upstream gradient dy, `check_layer` compares `backward` with
  1. `jax.vjp` of `forward`, in the inputs' own dtype (float32: tolerance VJP_TOL, floor VJP_ATOL);
  2. the jitted `forward`/`backward`, which must give what the eager ones give (JIT_RTOL, JIT_ATOL);
  3. central differences of sum(forward(...) * dy) in float64 (NUM_TOL, floor NUM_ATOL).
It never raises on a mismatch: it returns a `GradCheckReport` to read or assert on.

The error of two arrays is max|a - b| / max(max(|a| + |b|), atol / tol), one number per argument
(each entry of params, each floating input); it passes when below tol, i.e. when
max|a - b| < max(tol * max(|a| + |b|), atol). The absolute floor atol lets an exactly-zero gradient
(a conv bias followed by Batch Norm) pass when both sides are rounding noise. Central differences
straddle a kink (ReLU at 0) when an input lies within h = 1e-4 of it; keep test inputs away from kinks.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fnnet.gradient import numerical_gradient

__all__ = ["check_layer", "rel_error", "GradCheckReport", "VJP_TOL", "VJP_ATOL", "NUM_TOL", "NUM_ATOL",
           "JIT_RTOL", "JIT_ATOL"]

# An exactly-zero gradient computed in float32 is the rounding noise of a cancelling sum, about eps32 times
# the gradients around it: 1e-6..2e-6 for a conv bias before Batch Norm whose neighbours' gradients are
# ~10 (batches of 4-6, 8x8 maps). So against jax.vjp (float32): relative 1e-5 (~100 ulps), floor 1e-5,
# which only matters for arguments whose gradient entries are all below 0.5; an error it hides (under
# 1e-5 absolute) still fails the float64 check.
VJP_TOL, VJP_ATOL = 1e-5, 1e-5
# float64 against central differences with h = 1e-4: truncation h**2 * f''' / 6 is ~1e-9 relative, so
# 1e-7. An exact zero there is the rounding of the difference, eps64 * |f| / h ~ 1e-12 * |f| (5e-11 in
# the case above), so the floor 1e-9 keeps a 20x margin, applies only to arguments whose gradients are
# all below 0.01, and still fails an error of 1e-9 on a gradient of 1e-7.
NUM_TOL, NUM_ATOL = 1e-7, 1e-9
# jit against eager, both float32: XLA fuses and reorders sums, a few ulps apart; an exact zero differs
# by the same noise as against jax.vjp.
JIT_RTOL, JIT_ATOL = 1e-5, 1e-5


def _leaf_error(a, b, floor=0.0) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0:
        return 0.0
    scale = float(np.max(np.abs(a) + np.abs(b)))
    return float(np.max(np.abs(a - b))) / max(scale, floor, 1e-30)


def rel_error(a, b, floor: float = 0.0) -> float:
    """max |a - b| / max(max(|a| + |b|), floor, tiny), the largest over the leaves of two pytrees of
    the same structure; floor = atol / tol makes `< tol` mean max|a - b| < max(tol * scale, atol)."""
    errs = jax.tree_util.tree_map(lambda x, y: _leaf_error(x, y, floor), a, b)
    return max(jax.tree_util.tree_leaves(errs), default=0.0)


@dataclasses.dataclass(frozen=True)
class GradCheckReport:
    """What `check_layer` measured.

    vjp, numerical: {argument: largest error} against jax.vjp and against float64 central
    differences; arguments are named "params['W']", ... (in the order of params) and "x" (one
    input) or "inputs[i]". jit_error: the same measure between jitted and eager outputs and
    gradients. Each error is relative with an absolute floor (see the module docstring) and
    passes below its tol: vjp_tol / vjp_atol, num_tol / num_atol, jit_tol / jit_atol.
    problems: what kept a comparison from being made (grads not shaped like params, a wrong
    number of input gradients).
    """

    vjp: dict
    numerical: dict
    jit_error: float
    vjp_tol: float = VJP_TOL
    vjp_atol: float = VJP_ATOL
    num_tol: float = NUM_TOL
    num_atol: float = NUM_ATOL
    jit_tol: float = JIT_RTOL
    jit_atol: float = JIT_ATOL
    problems: tuple = ()

    @property
    def err_vjp(self) -> float:
        return max(self.vjp.values(), default=0.0)

    @property
    def err_num(self) -> float:
        return max(self.numerical.values(), default=0.0)

    @property
    def jit_close(self) -> bool:
        """Whether jitted and eager agree: jit_error below jit_tol (the number the report prints)."""
        return self.jit_error < self.jit_tol

    @property
    def failures(self) -> list:
        """One line per failed comparison; empty when the check passed."""
        out = list(self.problems)
        if self.err_vjp >= self.vjp_tol:
            out.append(f"backward vs jax.vjp: relative error {self.err_vjp:.3g} >= {self.vjp_tol:g}")
        if not self.jit_close:
            out.append(f"jit vs eager: relative difference {self.jit_error:.3g} >= {self.jit_tol:g}")
        if self.err_num >= self.num_tol:
            out.append(f"backward vs numerical (float64): relative error {self.err_num:.3g} "
                       f">= {self.num_tol:g}")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        width = max([len("relative tol")] + [len(k) for k in self.vjp])
        lines = [f"{'argument':<{width}}  {'vs jax.vjp':>10}  {'vs numerical':>12}"]
        for name in self.vjp:
            num = self.numerical.get(name, np.nan)
            lines.append(f"{name:<{width}}  {self.vjp[name]:>10.2e}  {num:>12.2e}")
        lines.append(f"{'relative tol':<{width}}  {self.vjp_tol:>10.0e}  {self.num_tol:>12.0e}")
        lines.append(f"{'absolute tol':<{width}}  {self.vjp_atol:>10.0e}  {self.num_atol:>12.0e}")
        same = "yes" if self.jit_close else "no"
        lines.append(f"jit == eager: {same} (difference {self.jit_error:.2e}; tolerance relative "
                     f"{self.jit_tol:.0e}, absolute {self.jit_atol:.0e})")
        lines.extend(self.failures or ["passed"])
        return "\n".join(lines)


def _to64(tree):
    def cast(x):
        x = jnp.asarray(x)
        return x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree_util.tree_map(cast, tree)


def _arrays_to64(tree):
    """The floating arrays in tree (a state dict, ...) as float64; Python numbers, keys and other
    leaves (stride, pad, train, impl) as they are."""

    def cast(x):
        if isinstance(x, (jax.Array, np.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(x, jnp.float64)
        return x

    return jax.tree_util.tree_map(cast, tree)


def _floor(tol, atol) -> float:
    if not (tol > 0 and atol >= 0):
        raise ValueError(f"check_layer: tolerances must be > 0 and absolute ones >= 0, got {tol!r}, {atol!r}")
    return atol / tol


def check_layer(layer, params, *inputs, dy_seed=0, nondiff=(), vjp_tol=VJP_TOL, vjp_atol=VJP_ATOL,
                num_tol=NUM_TOL, num_atol=NUM_ATOL, jit_tol=JIT_RTOL, jit_atol=JIT_ATOL,
                **kwargs) -> GradCheckReport:
    """Compare `layer.backward` with jax.vjp, with its jitted self and with float64 numerical
    differentiation, for params (a dict of arrays, {} if none) and the positional `inputs`.

    Only floating inputs are differentiated (integer labels pass through); `nondiff` lists the
    positions of floating inputs that are data, not variables (e.g. one-hot targets). `kwargs` go
    to `layer.forward` (stride, pad, state, train, key, ...), the same in all three passes, so a
    Dropout key gives one mask; the float64 pass casts their floating arrays (a state) to float64.
    A forward that returns a third value (new state) is fine: only (y, cache) matter. A Block
    (anything with `init`) given no `state=` gets the one its init makes for inputs[0]'s shape.
    dy ~ N(0, 1) from PRNGKey(dy_seed). Returns a `GradCheckReport`; `report.passed` is False when
    an error reaches its tolerance (see the module docstring for the error and the tolerances).
    """
    vjp_floor, num_floor, jit_floor = _floor(vjp_tol, vjp_atol), _floor(num_tol, num_atol), \
        _floor(jit_tol, jit_atol)
    if hasattr(layer, "init") and "state" not in kwargs and inputs:
        kwargs["state"] = layer.init(jax.random.PRNGKey(0), jnp.shape(inputs[0])[1:])[2]
    floating = [jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) for x in inputs]
    diff_idx = [i for i, f in enumerate(floating) if f and i not in nondiff]
    in_names = ["x"] if len(inputs) == 1 else [f"inputs[{i}]" for i in range(len(inputs))]
    order = {k: n for n, k in enumerate(params)} if isinstance(params, dict) else {}
    problems = []

    def fwd(p, *xs, kw=kwargs):
        return layer.forward(p, *xs, **kw)[:2]

    def with_diff(base, fx):
        xs = list(base)
        for i, v in zip(diff_idx, fx, strict=True):
            xs[i] = v
        return xs

    def input_grads(dx):
        """The backward's gradients for the differentiated inputs, in diff_idx order."""
        dxs = dx if isinstance(dx, tuple) else (dx,)
        if len(dxs) == len(inputs) and len(inputs) != len(diff_idx):
            dxs = tuple(dxs[i] for i in diff_idx)
        return dxs

    def in_params_order(path):
        return order.get(getattr(path[0], "key", None), len(order)) if path else 0

    def pairs(grads, dxs, ref_grads, ref_dxs):
        """[(argument, backward, reference)], params in the order of their keys in params (W1, b1,
        gamma1, ... for a serial net); problems are noted and their arguments left out."""
        out = []
        g_paths = jax.tree_util.tree_flatten_with_path(grads)[0]
        r_leaves, r_def = jax.tree_util.tree_flatten(ref_grads)
        if jax.tree_util.tree_structure(grads) != r_def or any(
            jnp.shape(g) != jnp.shape(r) for (_, g), r in zip(g_paths, r_leaves, strict=True)
        ):
            problems.append(f"backward's grads {jax.tree_util.tree_map(jnp.shape, grads)} do not match "
                            f"params {jax.tree_util.tree_map(jnp.shape, ref_grads)}")
        else:
            ordered = sorted(zip(g_paths, r_leaves, strict=True), key=lambda pr: in_params_order(pr[0][0]))
            out += [(f"params{jax.tree_util.keystr(path)}", g, r) for (path, g), r in ordered]
        if len(dxs) != len(ref_dxs):
            problems.append(f"backward returned {len(dxs)} input gradient(s) for "
                            f"{len(ref_dxs)} differentiable input(s)")
        else:
            for i, d, r in zip(diff_idx, dxs, ref_dxs, strict=True):
                if jnp.shape(d) != jnp.shape(r):
                    problems.append(f"the gradient of {in_names[i]} has shape {jnp.shape(d)}, "
                                    f"the input has {jnp.shape(r)}")
                else:
                    out.append((in_names[i], d, r))
        return out

    def errors(named, floor):
        return {name: _leaf_error(a, b, floor) for name, a, b in named}

    # 1. backward against jax.vjp, in the inputs' dtype.
    y, cache = fwd(params, *inputs)
    dy = jax.random.normal(jax.random.PRNGKey(dy_seed), jnp.shape(y), jnp.asarray(y).dtype)
    dx, grads = layer.backward(cache, dy)

    def reference(p, fx, g):
        return jax.vjp(lambda p, *fx: fwd(p, *with_diff(inputs, fx))[0], p, *fx)[1](g)

    # jitted: one compilation instead of one per primitive (the eager pass is step 2's baseline).
    ref = jax.jit(reference)(params, tuple(inputs[i] for i in diff_idx), dy)
    vjp_errors = errors(pairs(grads, input_grads(dx), ref[0], ref[1:]), vjp_floor)

    # 2. jitted against eager.
    jit_y, jit_cache = jax.jit(fwd)(params, *inputs)
    jit_dx, jit_grads = jax.jit(layer.backward)(jit_cache, dy)
    eager = jax.tree_util.tree_leaves((y, dx, grads))
    jitted = jax.tree_util.tree_leaves((jit_y, jit_dx, jit_grads))
    if len(eager) != len(jitted):
        jit_error = float("inf")
    else:
        jit_error = max((_leaf_error(a, b, jit_floor) for a, b in zip(jitted, eager, strict=True)),
                        default=0.0)

    # 3. backward against central differences, everything in float64; the differences of all the
    # arguments as one flat vector (one compiled lax.map, not one per array).
    with jax.enable_x64(True):
        p64, in64, dy64, kw64 = _to64(params), _to64(list(inputs)), jnp.asarray(dy, jnp.float64), \
            _arrays_to64(kwargs)
        fx64 = tuple(in64[i] for i in diff_idx)
        dx64, grads64 = jax.jit(lambda p, xs, g: layer.backward(fwd(p, *xs, kw=kw64)[1], g))(p64, in64, dy64)
        flat, unravel = ravel_pytree((p64, fx64))

        def f(v):
            p, fx = unravel(v)
            return jnp.sum(fwd(p, *with_diff(in64, fx), kw=kw64)[0] * dy64)

        num = unravel(numerical_gradient(f, flat))
        num_errors = errors(pairs(grads64, input_grads(dx64), num[0], num[1]), num_floor)

    return GradCheckReport(vjp_errors, num_errors, jit_error, vjp_tol=vjp_tol, vjp_atol=vjp_atol,
                           num_tol=num_tol, num_atol=num_atol, jit_tol=jit_tol, jit_atol=jit_atol,
                           problems=tuple(dict.fromkeys(problems)))
