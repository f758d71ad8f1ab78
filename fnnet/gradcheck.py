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
(a conv bias followed by Batch Norm) pass when both sides are rounding noise.

Kinks. A central difference is wrong where a step of h = 1e-4 crosses a kink: a ReLU input that
changes sign, a max-pooling window whose winner changes. The forward records such a choice in its
cache as a boolean or integer array (relu's mask, pooling's argmax), so `check_layer` compares
those arrays after every step with the unmoved ones: an entry whose step changed one is judged by
float64 jax.vjp instead (exact there: it has no h), and the report counts the kinks crossed (a
ReLU input, a pooling window) and names the entries. A layer of your own that caches only floats
gets no such help: keep its inputs away from its kinks.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from fnnet.gradient import H

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
    gradients (nan: not measured). Each error is relative with an absolute floor (see the module
    docstring) and passes below its tol: vjp_tol / vjp_atol, num_tol / num_atol, jit_tol / jit_atol.
    problems: what kept a comparison from being made (a backward that raised or did not return
    (dx, grads), grads not shaped like params, a wrong number of input gradients).
    kinks: {where: indices} of the kinks a step of h crossed, where names the cache array that
    recorded the choice ('layer 2 (Relu)', or 'cache' for a plain layer) and each index is a ReLU
    input or a pooling window in it. kink_entries: {argument: indices} of the entries whose step
    crossed one; `numerical` judges these by float64 jax.vjp instead of central differences.
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
    kinks: dict = dataclasses.field(default_factory=dict)
    kink_entries: dict = dataclasses.field(default_factory=dict)

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
    def notes(self) -> list:
        """What the report says besides passing or failing: the kinks crossed, and by what the
        entries whose steps crossed them were judged."""
        if not self.kinks:
            return []
        total = sum(len(v) for v in self.kinks.values())
        entries = sum(len(v) for v in self.kink_entries.values())
        return [f"numerical check unreliable here: {total} input{'s' * (total != 1)} on a kink "
                f"({_listed(self.kinks)})",
                f"judged by jax.vjp in float64 instead: the {entries} entr{'ies' if entries != 1 else 'y'} "
                f"whose step of h crosses one ({_listed(self.kink_entries)})"]

    @property
    def failures(self) -> list:
        """One line per failed comparison; empty when the check passed."""
        out = list(self.problems)
        if self.err_vjp >= self.vjp_tol:
            out.append(f"backward vs jax.vjp: relative error {self.err_vjp:.3g} >= {self.vjp_tol:g}")
        if not self.jit_close and not math.isnan(self.jit_error):
            out.append(f"jit vs eager: relative difference {self.jit_error:.3g} >= {self.jit_tol:g}")
        if self.err_num >= self.num_tol:
            out.append(f"backward vs numerical (float64): relative error {self.err_num:.3g} "
                       f">= {self.num_tol:g}")
        if not out and math.isnan(self.jit_error):
            out.append("jit vs eager: not compared")
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
        if math.isnan(self.jit_error):
            lines.append("jit == eager: not compared")
        else:
            same = "yes" if self.jit_close else "no"
            lines.append(f"jit == eager: {same} (difference {self.jit_error:.2e}; tolerance relative "
                         f"{self.jit_tol:.0e}, absolute {self.jit_atol:.0e})")
        lines.extend(self.notes)
        lines.extend(self.failures or ["passed"])
        return "\n".join(lines)


def _listed(found, show=3) -> str:
    """'layer 2 (Relu): 2 at (0, 1, 3, 4), (1, 0, 2, 2)' for {where: indices}, the first `show`
    indices of each."""
    parts = []
    for where, idx in found.items():
        at = ", ".join(str(i) for i in idx[:show]) + (", ..." if len(idx) > show else "")
        parts.append(f"{where}: {len(idx)} at {at}")
    return "; ".join(parts)


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


def _described(out) -> str:
    """What a backward returned, in a few words: 'a tuple of 3 values', 'an array of shape (3, 4)'."""
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} value{'s' * (len(out) != 1)}"
    if hasattr(out, "shape"):
        return f"an array of shape {tuple(out.shape)}"
    return f"a {type(out).__name__}"


def _run_backward(what, backward, problems, *args):
    """backward(*args) as (dx, grads), or None with the reason added to problems: a backward that
    raises or returns something else is a failed check, not an exception."""
    try:
        out = backward(*args)
    except Exception as e:  # the learner's code: any error it raises is a finding
        first = (str(e).strip().splitlines() or [""])[0]
        problems.append(f"{what} raised {type(e).__name__}: {first}")
        return None
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        problems.append(f"{what} returned {_described(out)}; it must return (dx, grads): the input's "
                        "gradient and a dict with the keys of params ({} without params)")
        return None
    return tuple(out)


def _is_decision(leaf) -> bool:
    """A boolean or integer array in a cache: a choice the forward made (relu's mask, pooling's argmax)."""
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and (jnp.issubdtype(dtype, jnp.bool_) or jnp.issubdtype(dtype, jnp.integer))


def _central_differences(f, v, h=H):
    """Central differences of f(v) = (value, [decision arrays]) for every entry of the flat vector v.

    Returns (gradient like v, crossed: bool like v, True where the step +h or -h of that entry
    changed a decision, [per decision array: bool, True where some step changed it]). Batches of
    up to 64 entries are vmapped inside one lax.scan, as `fnnet.gradient.numerical_gradient` does."""
    _, base = f(v)
    size = v.size

    def diff(j):
        (up, d_up), (down, d_down) = f(v.at[j].add(h)), f(v.at[j].add(-h))
        flips = [(a != b) | (c != b) for a, c, b in zip(d_up, d_down, base, strict=True)]
        crossed = functools.reduce(jnp.logical_or, [jnp.any(fl) for fl in flips], jnp.zeros((), bool))
        return (up - down) / (2 * h), crossed, flips

    def body(seen, idx):
        g, crossed, flips = jax.vmap(diff)(idx)
        return [s | jnp.any(fl, axis=0) for s, fl in zip(seen, flips, strict=True)], (g, crossed)

    batch = max(1, min(size, 64, (1 << 22) // max(size, 1)))
    n = -(-size // batch)
    idx = jnp.minimum(jnp.arange(n * batch), size - 1).reshape(n, batch)  # the last batch repeats its end
    seen, (g, crossed) = lax.scan(body, [jnp.zeros(b.shape, bool) for b in base], idx)
    return g.reshape(-1)[:size], crossed.reshape(-1)[:size], seen


def _place(layer, path) -> str:
    """Where a cache array sits, in the terms of the layer: 'layer 4 (Relu)', 'layer 2 (residual),
    layer 1 (Relu)', 'layer 3 (concat), branch 2, ...'; 'cache' + its path for a plain layer."""
    names, block = [], layer
    keys = [k.idx for k in path if isinstance(k, jax.tree_util.SequenceKey)]
    while getattr(block, "layers", ()) and keys and keys[0] < len(block.layers):
        i = keys.pop(0)
        if block.kind == "residual":
            names += ["shortcut"] if i == 1 else []
        elif block.kind == "concat":
            names.append(f"branch {i + 1}")
        else:
            names.append(f"layer {i + 1} ({block.layers[i].name})")
        block = block.layers[i]
    return ", ".join(names) if names else "cache" + jax.tree_util.keystr(path)


def _indices(mask) -> tuple:
    """The indices where a boolean array is True, as tuples of ints."""
    return tuple(tuple(int(i) for i in row) for row in np.argwhere(np.asarray(mask)))


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
    an error reaches its tolerance or backward is malformed (raises, or does not return
    (dx, grads)); entries whose step of h crosses a kink are judged by float64 jax.vjp and listed
    (see the module docstring).
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
        dxs = tuple(dx) if isinstance(dx, (tuple, list)) else (dx,)
        if len(dxs) == len(inputs) and len(inputs) != len(diff_idx):
            dxs = tuple(dxs[i] for i in diff_idx)
        return dxs

    def in_params_order(path):
        return order.get(getattr(path[0], "key", None), len(order)) if path else 0

    def shapes(tree):
        return jax.tree_util.tree_map(lambda a: tuple(np.shape(a)), tree)

    def pairs(grads, dxs, ref_grads, ref_dxs):
        """[(argument, backward, reference)], params in the order of their keys in params (W1, b1,
        gamma1, ... for a serial net); problems are noted and their arguments left out."""
        out = []
        g_paths = jax.tree_util.tree_flatten_with_path(grads)[0]
        r_leaves, r_def = jax.tree_util.tree_flatten(ref_grads)
        if jax.tree_util.tree_structure(grads) != r_def or any(
            np.shape(g) != np.shape(r) for (_, g), r in zip(g_paths, r_leaves, strict=True)
        ):
            problems.append(f"backward's grads {shapes(grads)} do not match params {shapes(ref_grads)}")
        else:
            ordered = sorted(zip(g_paths, r_leaves, strict=True), key=lambda pr: in_params_order(pr[0][0]))
            out += [(f"params{jax.tree_util.keystr(path)}", g, r) for (path, g), r in ordered]
        if len(dxs) != len(ref_dxs):
            problems.append(f"backward returned {len(dxs)} input gradient(s) for "
                            f"{len(ref_dxs)} differentiable input(s)")
        else:
            for i, d, r in zip(diff_idx, dxs, ref_dxs, strict=True):
                if np.shape(d) != np.shape(r):
                    problems.append(f"the gradient of {in_names[i]} has shape {np.shape(d)}, "
                                    f"the input has {np.shape(r)}")
                else:
                    out.append((in_names[i], d, r))
        return out

    def errors(named, floor):
        return {name: _leaf_error(a, b, floor) for name, a, b in named}

    def report(vjp_errors, num_errors, jit_error, kinks=None, kink_entries=None):
        return GradCheckReport(vjp_errors, num_errors, jit_error, vjp_tol=vjp_tol, vjp_atol=vjp_atol,
                               num_tol=num_tol, num_atol=num_atol, jit_tol=jit_tol, jit_atol=jit_atol,
                               problems=tuple(dict.fromkeys(problems)), kinks=kinks or {},
                               kink_entries=kink_entries or {})

    # 1. backward against jax.vjp, in the inputs' dtype.
    y, cache = fwd(params, *inputs)
    dy = jax.random.normal(jax.random.PRNGKey(dy_seed), jnp.shape(y), jnp.asarray(y).dtype)
    out = _run_backward("backward", layer.backward, problems, cache, dy)
    if out is None:
        return report({}, {}, float("nan"))
    dx, grads = out

    def reference(p, fx, g, base=inputs, kw=kwargs):
        return jax.vjp(lambda p, *fx: fwd(p, *with_diff(base, fx), kw=kw)[0], p, *fx)[1](g)

    # jitted: one compilation instead of one per primitive (the eager pass is step 2's baseline).
    ref = jax.jit(reference)(params, tuple(inputs[i] for i in diff_idx), dy)
    vjp_errors = errors(pairs(grads, input_grads(dx), ref[0], ref[1:]), vjp_floor)

    # 2. jitted against eager.
    jit_y, jit_cache = jax.jit(fwd)(params, *inputs)
    jit_out = _run_backward("jax.jit(backward)", jax.jit(layer.backward), problems, jit_cache, dy)
    eager = jax.tree_util.tree_leaves((y, dx, grads))
    jitted = jax.tree_util.tree_leaves((jit_y, jit_out))
    if jit_out is None:
        jit_error = float("nan")
    elif len(eager) != len(jitted):
        jit_error = float("inf")
    else:
        jit_error = max((_leaf_error(a, b, jit_floor) for a, b in zip(jitted, eager, strict=True)),
                        default=0.0)

    # 3. backward against central differences, everything in float64; the differences of all the
    # arguments as one flat vector (one compiled scan, not one per array). Entries whose step
    # changed a decision of the forward (a kink) are judged by float64 jax.vjp instead.
    with jax.enable_x64(True):
        p64, in64, dy64, kw64 = _to64(params), _to64(list(inputs)), jnp.asarray(dy, jnp.float64), \
            _arrays_to64(kwargs)
        fx64 = tuple(in64[i] for i in diff_idx)
        out64 = _run_backward("backward in float64", jax.jit(
            lambda p, xs, g: layer.backward(fwd(p, *xs, kw=kw64)[1], g)), problems, p64, in64, dy64)
        if out64 is None:
            return report(vjp_errors, {}, jit_error)
        dx64, grads64 = out64
        flat, unravel = ravel_pytree((p64, fx64))
        paths = []

        def f(v):
            p, fx = unravel(v)
            y, c = fwd(p, *with_diff(in64, fx), kw=kw64)
            found = [(path, leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(c)[0]
                     if _is_decision(leaf)]
            paths[:] = [path for path, _ in found]
            return jnp.sum(y * dy64), [leaf for _, leaf in found]

        if flat.size:
            grad, crossed, seen = jax.jit(lambda v: _central_differences(f, v))(flat)
        else:
            grad, crossed, seen = flat, jnp.zeros(0, bool), []
        num, moved = unravel(grad), unravel(crossed.astype(flat.dtype))
        kinks = {}
        for path, s in zip(paths, seen, strict=True):
            if bool(jnp.any(s)):
                kinks.setdefault(_place(layer, path), ())
                kinks[_place(layer, path)] += _indices(s)
        if bool(jnp.any(crossed)):
            ref64 = jax.jit(functools.partial(reference, base=in64, kw=kw64))(p64, fx64, dy64)
            num = jax.tree_util.tree_map(lambda n, r, m: jnp.where(m > 0, r, n), num, (ref64[0], ref64[1:]),
                                         moved)
        named_moved = [(name, m) for name, m, _ in pairs(moved[0], moved[1], moved[0], moved[1])]
        kink_entries = {name: _indices(m > 0) for name, m in named_moved if bool(jnp.any(m > 0))}
        num_errors = errors(pairs(grads64, input_grads(dx64), num[0], num[1]), num_floor)

    return report(vjp_errors, num_errors, jit_error, kinks, kink_entries)
