"""Your own network: the book's layers as constructors that know their shapes, and `serial`.

    net = serial(Convolution(6, 5, pad=2), Relu(), Pooling(2), Flatten(), Affine(10))
    out_shape, params, state = net.init(key, (1, 28, 28))    # shapes per sample, without N
    y, cache, state = net.forward(params, x, state, train=True, key=key)
    dx, grads = net.backward(cache, dy)                      # the book's reversed loop
    model = net.model((1, 28, 28))                           # + SoftmaxWithLoss: a fnnet.models.Model

Every constructor (`Affine`, `Relu`, `Sigmoid`, `Convolution`, `Pooling`, `BatchNormalization`,
`Dropout`, `Flatten`) and `serial` itself return a `Block`, so a `serial` goes inside a `serial`.
The blocks compute with the pure layers of `fnnet.layers` (`affine`, `relu`, `convolution`, ...).

`serial` names parameters as the book does: the i-th layer with weights (Affine, Convolution)
holds `W{i}`, `b{i}`; the j-th BatchNormalization holds `gamma{j}`, `beta{j}` and the state
`running_mean{j}`, `running_var{j}`. Keys: `init` splits its key into one key per layer with
weights, in order; `forward` in training splits its key into one key per Dropout, in order.
A shape that does not fit fails in `init`, naming the layer's position, its name and the shapes.

`sequential(net, input_shape)` (what `net.model` calls) adds SoftmaxWithLoss and gives the `Model`
that training uses. `Model`, `sequential` and `net_loss_and_grad` live here and `fnnet.models`
re-exports them: the models are built from the layers, and the layers never import the models.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fnnet._checks import require_keys, shape_of
from fnnet._docs import document_fields
from fnnet.init import weight_std
from fnnet.layers import conv_fast
from fnnet.layers.conv import convolution, output_hw, pooling
from fnnet.layers.core import affine, relu, sigmoid, softmax_with_loss
from fnnet.layers.normalization import BN_EPS, batch_norm, dropout, init_batch_norm

__all__ = ["Block", "ShapeError", "serial", "Affine", "Relu", "Sigmoid", "Convolution", "Pooling",
           "BatchNormalization", "Dropout", "Flatten", "summary", "Model", "sequential", "net_loss_and_grad"]

class ShapeError(ValueError):
    """An input shape that a layer cannot take; `detail` is the message without the layer's name."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail or message


class Block(NamedTuple):
    """A layer that knows its shapes; every constructor and `serial` return one.

        init(key, input_shape) -> (output_shape, params, state)   # per-sample shapes, no N
        forward(params, x, state=None, *, train=False, key=None) -> (y, cache, new_state)
        backward(cache, dy) -> (dx, grads)                         # grads: the keys of params

    name: how messages show the layer ('Affine 50', 'Pooling 2x2').
    kind: how `serial` numbers and seeds it: 'weights' (numbered i, takes an init key),
    'batchnorm' (numbered j), 'dropout' (takes a forward key in training) or ''.
    param_names, state_names: the local names of its params and state ('W', 'b'), which
    `serial` suffixes with the layer's number. layers: the layers of a `serial`, else ().
    """

    name: str
    init: Callable
    forward: Callable
    backward: Callable
    kind: str = ""
    param_names: tuple = ()
    state_names: tuple = ()
    layers: tuple = ()

    def model(self, input_shape):
        """This network + SoftmaxWithLoss as a `Model` (`sequential`) for input_shape (C, H, W) or (D,)."""
        return sequential(self, input_shape)

    def __repr__(self):
        return f"Block({self.name})"


document_fields(
    Block,
    name="How messages show the layer: 'Affine 50', 'Pooling 2x2', 'serial(...)'.",
    init="init(key, input_shape) -> (output_shape, params, state), shapes per sample without N.",
    forward="forward(params, x, state=None, *, train=False, key=None) -> (y, cache, new_state).",
    backward="backward(cache, dy) -> (dx, grads), grads with the keys of params.",
    kind="How `serial` numbers and seeds the layer: 'weights', 'batchnorm', 'dropout' or ''.",
    param_names="The local names of its params ('W', 'b'), which `serial` suffixes with its number.",
    state_names="The local names of its state ('running_mean', 'running_var'), suffixed likewise.",
    layers="The layers of a `serial`, in order; () for a single layer.",
)


def _positive_int(fn, name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{fn}: {name} must be an integer >= 1, got {v!r}")
    return int(v)


def _pair(fn, name, v):
    if isinstance(v, (tuple, list)) and len(v) == 2:
        return tuple(_positive_int(fn, name, d) for d in v)
    v = _positive_int(fn, name, v)
    return v, v


def input_shape_of(shape, *, fn: str = "input_shape_of") -> tuple:
    """A per-sample shape as a tuple of positive ints (no batch axis)."""
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{fn}: input_shape must be a tuple of sizes such as (1, 28, 28), "
                        f"got {shape!r}") from None
    if not shape or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in shape):
        raise ValueError(f"{fn}: input_shape must be positive sizes per sample such as (1, 28, 28) or "
                         f"(784,), got {shape}")
    return tuple(int(d) for d in shape)


def _leaf(name, init_shapes, forward, backward, kind="", param_names=(), state_names=()):
    """A Block whose init checks the shape and names itself in a ShapeError."""

    def init(key, input_shape):
        shape = input_shape_of(input_shape, fn=name)
        try:
            return init_shapes(key, shape)
        except ShapeError as e:
            raise ShapeError(f"{name}: {e.detail}", e.detail) from None

    return Block(name, init, forward, backward, kind, tuple(param_names), tuple(state_names))


def _stateless(layer):
    """forward(params, x, state, train, key) of a pure layer forward(params, x) -> (y, cache)."""

    def forward(params, x, state=None, *, train=False, key=None):
        y, cache = layer.forward(params, x)
        return y, cache, {} if state is None else state

    return forward


def _images(shape, what):
    if len(shape) != 3:
        raise ShapeError("", f"needs (C, H, W) images but gets input {shape}; {what}")
    return shape


# ---------------------------------------------------------------------------------------------
# The book's layers


def Affine(out: int, weight_init_std="he", dtype=jnp.float32) -> Block:
    """y = x.reshape(N, -1) @ W + b (flattening its input as the book's Affine does).
    params W (D, out) ~ weight_std(weight_init_std, D) * N(0, 1), b = 0; weight_init_std is a std
    (the book's 0.01) or 'he' / 'xavier'; dtype that of the params."""
    out = _positive_int("Affine", "out", out)
    weight_std(weight_init_std, 1)  # an unknown rule fails here, not at init

    def init(key, shape):
        d = math.prod(shape)
        W = weight_std(weight_init_std, d) * jax.random.normal(key, (d, out), dtype)
        return (out,), {"W": W, "b": jnp.zeros(out, dtype)}, {}

    return _leaf(f"Affine {out}", init, _stateless(affine), affine.backward, "weights", ("W", "b"))


def _activation(name, layer):
    def init(key, shape):
        return shape, {}, {}

    return _leaf(name, init, _stateless(layer), layer.backward)


def Relu() -> Block:
    """y = max(0, x), elementwise."""
    return _activation("Relu", relu)


def Sigmoid() -> Block:
    """y = 1 / (1 + exp(-x)), elementwise."""
    return _activation("Sigmoid", sigmoid)


def Convolution(filters: int, size, stride: int = 1, pad: int = 0, weight_init_std="he",
                impl=None, dtype=jnp.float32) -> Block:
    """`filters` filters of size x size (or (FH, FW)) over NCHW input, through im2col.
    params W (filters, C, FH, FW) ~ weight_std(weight_init_std, C*FH*FW) * N(0, 1), b = 0.
    impl: None or 'fast' (the fast layout for JAX's default backend), 'reference' (the book's
    im2col / col2im) or a `conv_fast.ConvImpl`."""
    fn = "Convolution"
    filters = _positive_int(fn, "filters", filters)
    fh, fw = _pair(fn, "size", size)
    stride = _positive_int(fn, "stride", stride)
    if isinstance(pad, bool) or not isinstance(pad, numbers.Integral) or pad < 0:
        raise ValueError(f"{fn}: pad must be an integer >= 0, got {pad!r}")
    conv_fast.resolve(impl, backend="cpu")  # an unknown impl fails here
    weight_std(weight_init_std, 1)
    name = f"Convolution {filters}x{fh}x{fw}" + (f" stride {stride}" if stride > 1 else "") \
        + (f" pad {pad}" if pad else "")

    def init(key, shape):
        c, h, w = _images(shape, "put it first, or load the data unflattened")
        oh, ow = _fits(shape, fh, fw, stride, pad, "filter")
        std = weight_std(weight_init_std, c * fh * fw)
        W = std * jax.random.normal(key, (filters, c, fh, fw), dtype)
        return (filters, oh, ow), {"W": W, "b": jnp.zeros(filters, dtype)}, {}

    def forward(params, x, state=None, *, train=False, key=None):
        y, cache = convolution.forward(params, x, stride=stride, pad=int(pad), impl=conv_fast.resolve(impl))
        return y, cache, {} if state is None else state

    return _leaf(name, init, forward, convolution.backward, "weights", ("W", "b"))


def _fits(shape, fh, fw, stride, pad, what):
    """(OH, OW), or a ShapeError saying why the window does not tile the input."""
    try:
        return output_hw(shape, fh, fw, stride, pad, what)
    except ValueError as e:
        reason = str(e).split(": ", 1)[1].split(" (input shape")[0]
        verb = "does not fit" if "larger than" in reason else "does not tile"
        raise ShapeError("", f"{verb} input {shape}: {reason}") from None


def Pooling(size, stride=None, mode: str = "max", pad: int = 0) -> Block:
    """Max (or 'avg') over size x size windows (or (PH, PW)), stride = size unless given."""
    fn = "Pooling"
    ph, pw = _pair(fn, "size", size)
    stride = ph if stride is None else _positive_int(fn, "stride", stride)
    if mode not in ("max", "avg"):
        raise ValueError(f"{fn}: mode must be 'max' or 'avg', got {mode!r}")
    if isinstance(pad, bool) or not isinstance(pad, numbers.Integral) or pad < 0:
        raise ValueError(f"{fn}: pad must be an integer >= 0, got {pad!r}")
    name = f"Pooling {ph}x{pw}" + (f" stride {stride}" if stride != ph else "") + \
        (" avg" if mode == "avg" else "")

    def init(key, shape):
        c = _images(shape, "pooling takes feature maps")[0]
        oh, ow = _fits(shape, ph, pw, stride, pad, "window")
        return (c, oh, ow), {}, {}

    def forward(params, x, state=None, *, train=False, key=None):
        y, cache = pooling.forward({}, x, ph, pw, stride=stride, pad=int(pad), mode=mode)
        return y, cache, {} if state is None else state

    return _leaf(name, init, forward, pooling.backward)


def BatchNormalization(momentum: float = 0.9, axis=1, eps: float = BN_EPS, dtype=jnp.float32) -> Block:
    """Batch Normalization with statistics per index of `axis` (counted with the batch axis 0).

    axis=1 (the default): per feature of flat (N, D) input, per channel of (N, C, H, W) input
    (as PyTorch's BatchNorm2d). axis=(1, 2, 3): every (C, H, W) position on its own, the book's
    form. params gamma, beta and state running_mean, running_var have one entry per statistic."""
    fn = "BatchNormalization"
    axes = (axis,) if isinstance(axis, numbers.Integral) and not isinstance(axis, bool) else axis
    try:
        axes = tuple(sorted(int(a) for a in axes))
    except TypeError:
        raise TypeError(f"{fn}: axis must be an int or a tuple of ints >= 1, got {axis!r}") from None
    if not axes or axes[0] < 1 or len(set(axes)) != len(axes):
        raise ValueError(f"{fn}: axis must name distinct non-batch axes (>= 1), got {axis!r}")
    if not (isinstance(momentum, numbers.Real) and 0.0 <= momentum <= 1.0):
        raise ValueError(f"{fn}: momentum must be a number in [0, 1], got {momentum!r}")
    name = fn if axes == (1,) else f"{fn} axis {axes}"

    def perm(ndim):
        """Axis order with the kept axes last; the identity for the book's per-feature forms."""
        return [0] + [a for a in range(1, ndim) if a not in axes] + list(axes)

    def init(key, shape):
        if axes[-1] > len(shape):
            raise ShapeError("", f"has no axis {axes[-1]} in input {shape} (axis counts the batch as 0)")
        params, state = init_batch_norm(math.prod(shape[a - 1] for a in axes), dtype)
        return shape, params, state

    def forward(params, x, state=None, *, train=False, key=None):
        x = jnp.asarray(x)
        p = perm(x.ndim)
        xt = x.transpose(p) if p != sorted(p) else x
        y2, cache, state = batch_norm.forward(params, xt.reshape(-1, math.prod(x.shape[a] for a in axes)),
                                              state, train=train, momentum=momentum, eps=eps)
        return _untranspose(y2.reshape(xt.shape), p), cache, state

    def backward(cache, dy):
        p = perm(dy.ndim)
        dyt = dy.transpose(p) if p != sorted(p) else dy
        dx2, grads = batch_norm.backward(cache, dyt.reshape(-1, cache["xn"].shape[1]))
        return _untranspose(dx2.reshape(dyt.shape), p), grads

    return _leaf(name, init, forward, backward, "batchnorm", ("gamma", "beta"),
                 ("running_mean", "running_var"))


def _untranspose(y, p):
    """Undo y = x.transpose(p) (nothing to undo for the identity)."""
    return y if p == sorted(p) else y.transpose(sorted(range(len(p)), key=p.__getitem__))


def Dropout(ratio: float = 0.5) -> Block:
    """The book's Dropout: in training keep a unit where uniform(key) > ratio (no rescaling);
    at inference multiply by (1 - ratio)."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 <= ratio < 1.0:
        raise ValueError(f"Dropout: ratio must be a number in [0, 1), got {ratio!r}")
    ratio = float(ratio)

    def init(key, shape):
        return shape, {}, {}

    def forward(params, x, state=None, *, train=False, key=None):
        y, cache = dropout.forward({}, x, key=key, ratio=ratio, train=train)
        return y, cache, {} if state is None else state

    return _leaf(f"Dropout {ratio:g}", init, forward, dropout.backward, "dropout")


@dataclasses.dataclass(frozen=True)
class _FlattenCache:
    shape: tuple = dataclasses.field(metadata=dict(static=True))


jax.tree_util.register_dataclass(_FlattenCache, data_fields=[], meta_fields=["shape"])


def Flatten() -> Block:
    """(N, C, H, W) -> (N, C*H*W), the C-order the book's Affine uses."""

    def init(key, shape):
        return (math.prod(shape),), {}, {}

    def forward(params, x, state=None, *, train=False, key=None):
        x = jnp.asarray(x)
        return x.reshape(x.shape[0], -1), _FlattenCache(tuple(x.shape[1:])), {} if state is None else state

    def backward(cache, dy):
        return dy.reshape((dy.shape[0],) + cache.shape), {}

    return _leaf("Flatten", init, forward, backward)


# ---------------------------------------------------------------------------------------------
# serial


def _children(layers):
    out = []
    for pos, layer in enumerate(layers, start=1):
        if not isinstance(layer, Block):
            named = getattr(layer, "__name__", "")
            hint = f"; call it: {named}()" if callable(layer) and named[:1].isupper() \
                else " (use the constructors Affine(out), Relu(), Convolution(...), ... or a Block)"
            raise TypeError(f"serial: layer {pos} is a {type(layer).__name__}, not a layer Block{hint}")
        out.extend(layer.layers if layer.layers else [layer])
    return out


def _plan(children):
    """[(suffix, kind)] per layer: its number among the layers of its kind ('weights' share one
    counter, each other kind its own); and checks that no two layers claim the same name."""
    counts, plan, owner = {}, [], {}
    for pos, child in enumerate(children, start=1):
        counts[child.kind] = counts.get(child.kind, 0) + 1
        suffix = str(counts[child.kind]) if (child.param_names or child.state_names) else ""
        plan.append(suffix)
        for name in (*child.param_names, *child.state_names):
            full = name + suffix
            if full in owner:
                raise ValueError(f"serial: layers {owner[full]} and {pos} ({child.name}) both name "
                                 f"a parameter {full!r}")
            owner[full] = pos
    return plan


def serial(*layers) -> Block:
    """The layers one after another: a Block whose params and state are flat dicts with the book's
    names (W1, b1, gamma1, running_mean1, ...) and whose backward is the book's reversed loop."""
    if len(layers) == 1 and isinstance(layers[0], (list, tuple)) and not isinstance(layers[0], Block):
        layers = tuple(layers[0])
    if not layers:
        raise ValueError("serial: give at least one layer, e.g. serial(Affine(10))")
    children = _children(layers)
    plan = _plan(children)
    n_weights = sum(c.kind == "weights" for c in children)
    n_dropout = sum(c.kind == "dropout" for c in children)
    param_names = [n + s for c, s in zip(children, plan, strict=True) for n in c.param_names]
    state_names = [n + s for c, s in zip(children, plan, strict=True) for n in c.state_names]

    def init(key, input_shape):
        shape = input_shape_of(input_shape, fn="serial")
        wkeys = list(jax.random.split(key, n_weights)) if n_weights else []
        params, state = {}, {}
        for pos, (child, suffix) in enumerate(zip(children, plan, strict=True), start=1):
            k = wkeys.pop(0) if child.kind == "weights" else jax.random.fold_in(key, pos)
            try:
                shape, p, s = child.init(k, shape)
            except ShapeError as e:
                raise ShapeError(f"serial: layer {pos} ({child.name}) {e.detail}", e.detail) from None
            params.update({n + suffix: p[n] for n in child.param_names})
            state.update({n + suffix: s[n] for n in child.state_names})
        return tuple(shape), params, state

    def forward(params, x, state=None, *, train=False, key=None):
        require_keys("serial.forward", params, param_names)
        state = {} if state is None else state
        if state_names:
            require_keys("serial.forward", state, state_names, arg="state")
        dkeys = []
        if train and n_dropout:
            if key is None:
                raise ValueError("serial.forward: training a network with Dropout needs a PRNG key "
                                 "(key=jax.random.PRNGKey(...))")
            dkeys = list(jax.random.split(key, n_dropout))
        y, caches, new_state = jnp.asarray(x), [], dict(state)
        for child, suffix in zip(children, plan, strict=True):
            p = {n: params[n + suffix] for n in child.param_names}
            s = {n: state[n + suffix] for n in child.state_names}
            k = dkeys.pop(0) if child.kind == "dropout" and dkeys else None
            y, cache, s = child.forward(p, y, s, train=train, key=k)
            new_state.update({n + suffix: s[n] for n in child.state_names})
            caches.append(cache)
        return y, tuple(caches), new_state

    def backward(cache, dy):
        grads = {}
        for child, suffix, c in zip(reversed(children), reversed(plan), reversed(cache), strict=True):
            dy, g = child.backward(c, dy)
            grads.update({n + suffix: g[n] for n in child.param_names})
        return dy, {n: grads[n] for n in param_names}

    name = "serial(" + ", ".join(c.name for c in children) + ")"
    return Block(name, init, forward, backward, "", tuple(param_names), tuple(state_names), tuple(children))


def summary(net: Block, input_shape) -> str:
    """One line per layer: its position, name, output shape and parameter names (a printed table)."""
    shape = input_shape_of(input_shape, fn="summary")
    children = net.layers or (net,)
    plan = _plan(children)
    lines = [f"{'':>3}  {'layer':<28} {'output':<16} params", f"{'':>3}  {'input':<28} {str(shape):<16}"]
    for pos, (child, suffix) in enumerate(zip(children, plan, strict=True), start=1):
        out, p, _ = jax.eval_shape(lambda k, c=child, s=shape: _shapes_only(c, k, s), jax.random.PRNGKey(0))
        shape = tuple(int(d) for d in out.shape[1:])
        names = ", ".join(f"{n}{suffix} {shape_of(p[n])}" for n in child.param_names)
        lines.append(f"{pos:>3}  {child.name:<28} {str(shape):<16} {names}")
    return "\n".join(lines)


def _shapes_only(child, key, shape):
    out, p, s = child.init(key, shape)
    return jnp.zeros((1,) + tuple(out)), p, s


# ---------------------------------------------------------------------------------------------
# The Model of a network: what fnnet.models, fnnet.training and the CLI use


class Model(NamedTuple):
    """A network as the pure functions that training, evaluation and the CLI call (the contract in
    `fnnet.models`' docstring); `fnnet.models.get_model`, each model module's `model(...)` and
    `sequential` build one."""

    init: Callable
    apply: Callable
    loss_and_grad: Callable
    input_shape: tuple


document_fields(
    Model,
    init="init(key) -> (params, state): fresh parameters and state, dicts of arrays.",
    apply="apply(params, state, x, train=False, key=None) -> (scores (N, classes), state).",
    loss_and_grad="loss_and_grad(params, state, x, t, key) -> (loss, grads, state), in training mode.",
    input_shape="The shape of one sample, without N: (784,), (1, 28, 28).",
)


def sequential(net, input_shape) -> Model:
    """The `Model` of a layer stack `net` (a `fnnet.layers.Block`, e.g. from `serial`) for inputs of
    `input_shape` per sample: its last layer's scores plus SoftmaxWithLoss, with the hand-written
    backward pass. The shapes are checked now: a layer that does not fit raises here, and so does
    an output that is not one score per class."""
    if not isinstance(net, Block):
        raise TypeError(f"sequential: net must be a layer Block such as serial(...), "
                        f"got {type(net).__name__}")
    input_shape = input_shape_of(input_shape, fn="sequential")
    out = {}

    def shapes(key):
        out["shape"], params, state = net.init(key, input_shape)
        return params, state

    try:
        jax.eval_shape(shapes, jax.random.PRNGKey(0))
    except ShapeError as e:  # raised while tracing: drop the note JAX appends
        raise ShapeError(str(e).splitlines()[0], e.detail) from None
    if len(out["shape"]) != 1:
        raise ValueError(f"sequential: {net.name} gives output {out['shape']} per sample for input "
                         f"{input_shape}; a classifier ends in one score per class, e.g. Affine(10)")

    def init(key):
        _, params, state = net.init(key, input_shape)
        return params, state

    def apply(params, state, x, train=False, key=None):
        y, _, state = net.forward(params, x.reshape((x.shape[0],) + input_shape), state, train=train, key=key)
        return y, state

    def loss_and_grad(params, state, x, t, key=None):
        return net_loss_and_grad(net, params, state, x.reshape((x.shape[0],) + input_shape), t, key=key)

    return Model(init, apply, loss_and_grad, input_shape)


def net_loss_and_grad(net, params, state, x, t, *, train=True, key=None):
    """(loss, grads, new state) of a layer stack with SoftmaxWithLoss on top, by hand: `net.forward`,
    the loss, then `net.backward` from dout = 1 (the book's TwoLayerNet.gradient for any net)."""
    y, cache, state = net.forward(params, x, state, train=train, key=key)
    value, c = softmax_with_loss.forward({}, y, t)
    dy, _ = softmax_with_loss.backward(c, 1.0)
    _, grads = net.backward(cache, dy)
    return value, grads, state
