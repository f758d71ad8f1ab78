"""Check a hand-written backward pass three ways (chapter 5's gradient check, for any layer).

    report = check_layer(layer, params, x)
    print(report)            # the largest relative error per argument, and whether it passed
    assert report.passed

`layer` is anything in fnnet's layer form (see `fnnet.layers.core`):

    y, cache = layer.forward(params, *inputs, **kwargs)
    dx, grads = layer.backward(cache, dy)

For a random upstream gradient dy, `check_layer` compares `backward` with
  1. `jax.vjp` of `forward`, in the inputs' own dtype (float32: tolerance 1e-5);
  2. the jitted `forward`/`backward`, which must give what the eager ones give;
  3. central differences of sum(forward(...) * dy) in float64 (tolerance 1e-7).
It never raises on a mismatch: it returns a `GradCheckReport` to read or assert on.

The relative error of two arrays is max|a - b| / max(|a| + |b|), one number per argument
(each entry of params, each floating input). Central differences straddle a kink (ReLU at 0)
when an input lies within h = 1e-4 of it; keep test inputs away from kinks.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from fnnet.gradient import numerical_gradient

__all__ = ["check_layer", "rel_error", "GradCheckReport", "VJP_TOL", "NUM_TOL", "JIT_RTOL", "JIT_ATOL"]

VJP_TOL = 1e-5
NUM_TOL = 1e-7
JIT_RTOL, JIT_ATOL = 1e-5, 1e-6


def _leaf_error(a, b) -> float:
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.size == 0:
        return 0.0
    return float(jnp.max(jnp.abs(a - b)) / max(float(jnp.max(jnp.abs(a) + jnp.abs(b))), 1e-30))


def rel_error(a, b) -> float:
    """max |a - b| / max(|a| + |b|, tiny) over all leaves of two pytrees of the same structure."""
    errs = jax.tree_util.tree_map(_leaf_error, a, b)
    return max(jax.tree_util.tree_leaves(errs), default=0.0)


@dataclasses.dataclass(frozen=True)
class GradCheckReport:
    """What `check_layer` measured.

    vjp, numerical: {argument: largest relative error} against jax.vjp and against float64 central
    differences; arguments are named "params['W']", ... and "x" (one input) or "inputs[i]".
    jit_error: largest relative difference between jitted and eager outputs; jit_close: whether
    they agree within rtol JIT_RTOL and atol JIT_ATOL. problems: what kept a comparison from being
    made (grads not shaped like params, a wrong number of input gradients).
    """

    vjp: dict
    numerical: dict
    jit_error: float
    jit_close: bool
    vjp_tol: float = VJP_TOL
    num_tol: float = NUM_TOL
    problems: tuple = ()

    @property
    def err_vjp(self) -> float:
        return max(self.vjp.values(), default=0.0)

    @property
    def err_num(self) -> float:
        return max(self.numerical.values(), default=0.0)

    @property
    def failures(self) -> list:
        """One line per failed comparison; empty when the check passed."""
        out = list(self.problems)
        if self.err_vjp >= self.vjp_tol:
            out.append(f"backward vs jax.vjp: relative error {self.err_vjp:.3g} >= {self.vjp_tol:g}")
        if not self.jit_close:
            out.append(f"jit vs eager: relative difference {self.jit_error:.3g}")
        if self.err_num >= self.num_tol:
            out.append(f"backward vs numerical (float64): relative error {self.err_num:.3g} "
                       f">= {self.num_tol:g}")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        width = max([len("argument")] + [len(k) for k in self.vjp])
        lines = [f"{'argument':<{width}}  {'vs jax.vjp':>10}  {'vs numerical':>12}"]
        for name in self.vjp:
            num = self.numerical.get(name, np.nan)
            lines.append(f"{name:<{width}}  {self.vjp[name]:>10.2e}  {num:>12.2e}")
        lines.append(f"{'tolerance':<{width}}  {self.vjp_tol:>10.0e}  {self.num_tol:>12.0e}")
        same = "yes" if self.jit_close else "no"
        lines.append(f"jit == eager: {same} (relative difference {self.jit_error:.1e})")
        lines.extend(self.failures or ["passed"])
        return "\n".join(lines)


def _to64(tree):
    def cast(x):
        x = jnp.asarray(x)
        return x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree_util.tree_map(cast, tree)


def _named_errors(names_and_pairs) -> dict:
    return {name: _leaf_error(a, b) for name, a, b in names_and_pairs}


def check_layer(layer, params, *inputs, dy_seed=0, nondiff=(), vjp_tol=VJP_TOL, num_tol=NUM_TOL,
                **kwargs) -> GradCheckReport:
    """Compare `layer.backward` with jax.vjp, with its jitted self and with float64 numerical
    differentiation, for params (a dict of arrays, {} if none) and the positional `inputs`.

    Only floating inputs are differentiated (integer labels pass through); `nondiff` lists the
    positions of floating inputs that are data, not variables (e.g. one-hot targets). `kwargs` go
    to `layer.forward` (stride, pad, train, ...). A forward that returns a third value (new state)
    is fine: only (y, cache) matter. dy ~ N(0, 1) from PRNGKey(dy_seed). Returns a
    `GradCheckReport`; `report.passed` is False when an error reaches its tolerance.
    """
    floating = [jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) for x in inputs]
    diff_idx = [i for i, f in enumerate(floating) if f and i not in nondiff]
    in_names = ["x"] if len(inputs) == 1 else [f"inputs[{i}]" for i in range(len(inputs))]
    problems = []

    def fwd(p, *xs):
        return layer.forward(p, *xs, **kwargs)[:2]

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

    def pairs(grads, dxs, ref_grads, ref_dxs):
        """[(argument, backward, reference)]; problems are noted and their arguments left out."""
        out = []
        g_paths = jax.tree_util.tree_flatten_with_path(grads)[0]
        r_leaves, r_def = jax.tree_util.tree_flatten(ref_grads)
        if jax.tree_util.tree_structure(grads) != r_def or any(
            jnp.shape(g) != jnp.shape(r) for (_, g), r in zip(g_paths, r_leaves, strict=True)
        ):
            problems.append(f"backward's grads {jax.tree_util.tree_map(jnp.shape, grads)} do not match "
                            f"params {jax.tree_util.tree_map(jnp.shape, ref_grads)}")
        else:
            out += [(f"params{jax.tree_util.keystr(path)}", g, r)
                    for (path, g), r in zip(g_paths, r_leaves, strict=True)]
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

    # 1. backward against jax.vjp, in the inputs' dtype.
    y, cache = fwd(params, *inputs)
    dy = jax.random.normal(jax.random.PRNGKey(dy_seed), jnp.shape(y), jnp.asarray(y).dtype)
    dx, grads = layer.backward(cache, dy)
    _, vjp = jax.vjp(lambda p, *fx: fwd(p, *with_diff(inputs, fx))[0], params, *[inputs[i] for i in diff_idx])
    ref = vjp(dy)
    vjp_errors = _named_errors(pairs(grads, input_grads(dx), ref[0], ref[1:]))

    # 2. jitted against eager.
    jit_y, jit_cache = jax.jit(fwd)(params, *inputs)
    jit_dx, jit_grads = jax.jit(layer.backward)(jit_cache, dy)
    eager = jax.tree_util.tree_leaves((y, dx, grads))
    jitted = jax.tree_util.tree_leaves((jit_y, jit_dx, jit_grads))
    if len(eager) != len(jitted):
        jit_error, jit_close = float("inf"), False
    else:
        jit_error = max((_leaf_error(a, b) for a, b in zip(jitted, eager, strict=True)), default=0.0)
        jit_close = all(np.allclose(np.asarray(a), np.asarray(b), rtol=JIT_RTOL, atol=JIT_ATOL)
                        for a, b in zip(jitted, eager, strict=True))

    # 3. backward against central differences, everything in float64.
    with jax.enable_x64(True):
        p64, in64, dy64 = _to64(params), _to64(list(inputs)), jnp.asarray(dy, jnp.float64)
        fx64 = tuple(in64[i] for i in diff_idx)
        dx64, grads64 = layer.backward(fwd(p64, *in64)[1], dy64)
        num = numerical_gradient(lambda z: jnp.sum(fwd(z[0], *with_diff(in64, z[1]))[0] * dy64), (p64, fx64))
        num_errors = _named_errors(pairs(grads64, input_grads(dx64), num[0], num[1]))

    return GradCheckReport(vjp_errors, num_errors, jit_error, jit_close, vjp_tol, num_tol,
                           tuple(dict.fromkeys(problems)))
