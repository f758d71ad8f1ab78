"""Your own network: the book's layers as constructors that know their shapes, `serial`, and
chapter 8's `residual` and `concat`.

    net = serial(Convolution(6, 5, pad=2), Relu(), Pooling(2), Flatten(), Affine(10))
    out_shape, params, state = net.init(key, (1, 28, 28))    # shapes per sample, without N
    y, cache, state = net.forward(params, x, state, train=True, key=key)
    dx, grads = net.backward(cache, dy)                      # the book's reversed loop
    model = net.model((1, 28, 28))                           # + SoftmaxWithLoss: a fnnet.models.Model

Every constructor (`Affine`, `Relu`, `LeakyRelu`, `Sigmoid`, `Tanh`, `Softmax`, `Convolution`,
`Pooling`, `BatchNormalization`, `Dropout`, `Flatten`, `GlobalAveragePooling`) and `serial` itself
return a `Block`, so a `serial` goes inside a `serial`. The blocks compute with the pure layers of
`fnnet.layers` (`affine`, `relu`, `convolution`, ...). Chapter 8's branching networks are Blocks
too, and nest the same way:

    block = residual(Convolution(16, 3, pad=1), BatchNormalization(), Relu(),
                     Convolution(16, 3, pad=1), BatchNormalization())      # y = F(x) + x
    down = residual(..., shortcut=Convolution(32, 1))                      # y = F(x) + shortcut(x)
    inception = concat(Convolution(8, 1), serial(Convolution(8, 1), Relu(), Convolution(16, 3, pad=1)))

`serial` names parameters as the book does: the i-th layer with weights (Affine, Convolution)
holds `W{i}`, `b{i}`; the j-th BatchNormalization holds `gamma{j}`, `beta{j}` and the state
`running_mean{j}`, `running_var{j}`, counting the layers inside a `residual` or `concat` where
they appear. Keys: `init` splits its key into one key per layer with weights (a residual or concat
holding some counts as one and splits its key among its parts), in order; `forward` in training
splits its key into one key per Dropout (or per residual / concat holding one), in order.
A shape that does not fit fails in `init`, naming the layer's position, its name and the shapes.

`sequential(net, input_shape)` (what `net.model` calls) adds SoftmaxWithLoss and gives the `Model`
that training uses. `Model`, `sequential` and `net_loss_and_grad` live here and `fnnet.models`
re-exports them: the models are built from the layers, and the layers never import the models.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnnet._checks import require_keys, shape_of, shown
from fnnet._docs import document_fields
from fnnet.init import weight_std
from fnnet.layers import conv_fast
from fnnet.layers.conv import convolution, global_average_pooling, output_hw, pooling
from fnnet.layers.core import add, affine, leaky_relu, relu, sigmoid, softmax, softmax_with_loss, tanh
from fnnet.layers.normalization import BN_EPS, batch_norm, dropout, init_batch_norm

__all__ = ["Block", "ShapeError", "serial", "Affine", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax",
           "Convolution", "Pooling",
           "BatchNormalization", "Dropout", "Flatten", "summary", "GlobalAveragePooling", "residual",
           "concat", "Model", "sequential", "net_loss_and_grad"]

class ShapeError(ValueError):
    """An input shape that a layer cannot take; `detail` is the message without its leading
    'name: ' (the layer's, or serial's with the position)."""

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
    'batchnorm' (numbered j), 'dropout' (takes a forward key in training), '', or 'residual' /
    'concat' (numbered by the layers inside).
    param_names, state_names: the local names of its params and state ('W', 'b'), which
    `serial` suffixes with the layer's number (a residual's or concat's are numbered already).
    layers: the layers of a `serial`; a residual's F (a serial) and shortcut; a concat's
    branches; () for a single layer.
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
    kind="How `serial` numbers and seeds the layer: 'weights', 'batchnorm', 'dropout', '', or "
         "'residual' / 'concat' (numbered by the layers inside).",
    param_names="The local names of its params ('W', 'b'), which `serial` suffixes with its number.",
    state_names="The local names of its state ('running_mean', 'running_var'), suffixed likewise.",
    layers="The layers of a `serial`, in order; a residual's F and shortcut, a concat's branches; () for "
           "a single layer.",
)


def _positive_int(fn, name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        hint = ""
        if np.ndim(v) > 0:
            hint = (f"; {fn} takes sizes, e.g. Convolution(30, 5) or Affine(10), and net.init makes the "
                    "weights: weights of your own go in params")
        raise ValueError(f"{fn}: {name} must be an integer >= 1, got {shown(v)}{hint}")
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
                        f"got {shown(shape)}") from None
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
    """shape as (C, H, W); a ShapeError otherwise, which for (N, C, H, W) says to leave N out."""
    if len(shape) == 4:
        raise ShapeError("", f"needs (C, H, W) images but gets input {shape}, which has the batch axis: "
                             f"shapes are per sample, without N; give {shape[1:]}")
    if len(shape) != 3:
        raise ShapeError("", f"needs (C, H, W) images but gets input {shape}; {what}")
    return shape


# ---------------------------------------------------------------------------------------------
# The book's layers


def Affine(out: int, weight_init_std="he", dtype=jnp.float32) -> Block:
    """y = x.reshape(N, -1) @ W + b (flattening its input as the book's Affine does).
    params W (D, out) ~ weight_std(weight_init_std, D) * N(0, 1), b = 0; weight_init_std is a std
    (the book's 0.01) or 'he' / 'xavier'; dtype that of the params.

    >>> out_shape, params, state = Affine(10).init(jax.random.PRNGKey(0), (1, 28, 28))
    >>> out_shape, params["W"].shape, params["b"].shape
    ((10,), (784, 10), (10,))
    """
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
    """y = max(0, x), elementwise.

    >>> Relu().forward({}, jnp.array([[-1.0, 0.0, 2.0]]))[0].tolist()
    [[0.0, 0.0, 2.0]]
    """
    return _activation("Relu", relu)


def Sigmoid() -> Block:
    """y = 1 / (1 + exp(-x)), elementwise.

    >>> Sigmoid().forward({}, jnp.array([[0.0]]))[0].tolist()
    [[0.5]]
    """
    return _activation("Sigmoid", sigmoid)


def Tanh() -> Block:
    """y = tanh(x), elementwise: outputs in (-1, 1), centred on 0.

    >>> Tanh().forward({}, jnp.array([[0.0, 100.0]]))[0].tolist()
    [[0.0, 1.0]]
    """
    return _activation("Tanh", tanh)


def LeakyRelu(alpha: float = 0.01) -> Block:
    """y = x where x > 0, alpha * x elsewhere, elementwise; alpha a number in [0, 1).

    >>> LeakyRelu(0.5).forward({}, jnp.array([[-2.0, 3.0]]))[0].tolist()
    [[-1.0, 3.0]]
    """
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= alpha < 1.0:
        raise ValueError(f"LeakyRelu: alpha must be a number in [0, 1), got {shown(alpha)}")
    alpha = float(alpha)

    def init(key, shape):
        return shape, {}, {}

    def forward(params, x, state=None, *, train=False, key=None):
        y, cache = leaky_relu.forward({}, x, alpha=alpha)
        return y, cache, {} if state is None else state

    return _leaf(f"LeakyRelu {alpha:g}", init, forward, leaky_relu.backward)


def Softmax() -> Block:
    """y = softmax(x) over the features of flat (N, D) input: rows of probabilities that sum to 1.
    `Block.model` already ends in SoftmaxWithLoss, so a classifier to train ends before it.

    >>> Softmax().forward({}, jnp.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1000.0]]))[0].tolist()
    [[0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 1.0]]
    """

    def init(key, shape):
        if len(shape) != 1:
            raise ShapeError("", f"needs flat (D,) input but gets input {shape}; put Flatten() before it")
        return shape, {}, {}

    return _leaf("Softmax", init, _stateless(softmax), softmax.backward)


def Convolution(filters: int, size, stride: int = 1, pad: int = 0, weight_init_std="he",
                impl=None, dtype=jnp.float32) -> Block:
    """`filters` filters of size x size (or (FH, FW)) over NCHW input, through im2col.
    params W (filters, C, FH, FW) ~ weight_std(weight_init_std, C*FH*FW) * N(0, 1), b = 0.
    impl: None or 'fast' (the fast layout for JAX's default backend), 'reference' (the book's
    im2col / col2im) or a `conv_fast.ConvImpl`.

    >>> out_shape, params, state = Convolution(6, 5, pad=2).init(jax.random.PRNGKey(0), (1, 28, 28))
    >>> out_shape, params["W"].shape
    ((6, 28, 28), (6, 1, 5, 5))
    """
    fn = "Convolution"
    filters = _positive_int(fn, "filters", filters)
    fh, fw = _pair(fn, "size", size)
    stride = _positive_int(fn, "stride", stride)
    if isinstance(pad, bool) or not isinstance(pad, numbers.Integral) or pad < 0:
        raise ValueError(f"{fn}: pad must be an integer >= 0, got {shown(pad)}")
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
    """Max (or 'avg') over size x size windows (or (PH, PW)), stride = size unless given.

    >>> Pooling(2).init(jax.random.PRNGKey(0), (6, 28, 28))[0]
    (6, 14, 14)
    >>> Pooling(2).forward({}, jnp.arange(4.0).reshape(1, 1, 2, 2))[0].tolist()
    [[[[3.0]]]]
    """
    fn = "Pooling"
    ph, pw = _pair(fn, "size", size)
    stride = ph if stride is None else _positive_int(fn, "stride", stride)
    if mode not in ("max", "avg"):
        raise ValueError(f"{fn}: mode must be 'max' or 'avg', got {shown(mode)}")
    if isinstance(pad, bool) or not isinstance(pad, numbers.Integral) or pad < 0:
        raise ValueError(f"{fn}: pad must be an integer >= 0, got {shown(pad)}")
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
    form. params gamma, beta and state running_mean, running_var have one entry per statistic.

    >>> out_shape, params, state = BatchNormalization().init(jax.random.PRNGKey(0), (16, 8, 8))
    >>> params["gamma"].shape, sorted(state)
    ((16,), ['running_mean', 'running_var'])
    """
    fn = "BatchNormalization"
    axes = (axis,) if isinstance(axis, numbers.Integral) and not isinstance(axis, bool) else axis
    try:
        axes = tuple(sorted(int(a) for a in axes))
    except TypeError:
        raise TypeError(f"{fn}: axis must be an int or a tuple of ints >= 1, got {shown(axis)}") from None
    if not axes or axes[0] < 1 or len(set(axes)) != len(axes):
        raise ValueError(f"{fn}: axis must name distinct non-batch axes (>= 1), got {shown(axis)}")
    if not (isinstance(momentum, numbers.Real) and 0.0 <= momentum <= 1.0):
        raise ValueError(f"{fn}: momentum must be a number in [0, 1], got {shown(momentum)}")
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
    at inference multiply by (1 - ratio).

    >>> Dropout(0.5).forward({}, jnp.ones((1, 4)))[0].tolist()           # inference
    [[0.5, 0.5, 0.5, 0.5]]
    >>> y = Dropout(0.5).forward({}, jnp.ones((1, 4)), train=True, key=jax.random.PRNGKey(0))[0]
    >>> set(y.ravel().tolist()) <= {0.0, 1.0}
    True
    """
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 <= ratio < 1.0:
        raise ValueError(f"Dropout: ratio must be a number in [0, 1), got {shown(ratio)}")
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
    """(N, C, H, W) -> (N, C*H*W), the C-order the book's Affine uses.

    >>> Flatten().init(jax.random.PRNGKey(0), (16, 4, 4))[0]
    (256,)
    """

    def init(key, shape):
        return (math.prod(shape),), {}, {}

    def forward(params, x, state=None, *, train=False, key=None):
        x = jnp.asarray(x)
        return x.reshape(x.shape[0], -1), _FlattenCache(tuple(x.shape[1:])), {} if state is None else state

    def backward(cache, dy):
        return dy.reshape((dy.shape[0],) + cache.shape), {}

    return _leaf("Flatten", init, forward, backward)


def GlobalAveragePooling() -> Block:
    """(N, C, H, W) -> (N, C): the mean of each feature map (ResNet's and GoogLeNet's last pooling),
    so that the classifier's Affine sees C features whatever the map size.

    >>> GlobalAveragePooling().forward({}, jnp.arange(8.0).reshape(1, 2, 2, 2))[0].tolist()
    [[1.5, 5.5]]
    """

    def init(key, shape):
        c = _images(shape, "it averages feature maps")[0]
        return (c,), {}, {}

    return _leaf("GlobalAveragePooling", init, _stateless(global_average_pooling),
                 global_average_pooling.backward)


# ---------------------------------------------------------------------------------------------
# serial

_BRANCHING = ("residual", "concat")


def _branching(block) -> bool:
    """Whether block is a residual or a concat: one layer of a serial, whose parts run side by side."""
    return block.kind in _BRANCHING


def _block(fn, what, layer):
    """layer itself if it is a Block, else a TypeError naming fn and what it was given."""
    if not isinstance(layer, Block):
        named = getattr(layer, "__name__", "")
        hint = f"; call it: {named}()" if callable(layer) and named[:1].isupper() \
            else " (use the constructors Affine(out), Relu(), Convolution(...), ... or a Block)"
        raise TypeError(f"{fn}: {what} is a {type(layer).__name__}, not a layer Block{hint}")
    return layer


def _children(layers, fn="serial"):
    """The layers in order, the layers of a serial among them spliced in (a residual or a concat
    stays one layer)."""
    out = []
    for pos, layer in enumerate(layers, start=1):
        _block(fn, f"layer {pos}", layer)
        out.extend(layer.layers if layer.layers and not _branching(layer) else [layer])
    return out


def _leaves(block) -> list:
    """The plain layers inside block in the order they appear ([block] for a plain layer)."""
    if not block.layers:
        return [block]
    return [leaf for part in block.layers for leaf in _leaves(part)]


def _has(block, kind) -> bool:
    """Whether a layer of this kind is in block ('weights': it takes an init key, 'dropout': a
    forward key in training)."""
    return any(leaf.kind == kind for leaf in _leaves(block))


def _plan(children, fn="serial"):
    """[{the child's own name of a param or state: the book's name in this stack}] per child.

    Every plain layer is numbered among the layers of its kind in the order it appears, inside a
    residual or concat too ('weights' share one counter, each other kind its own), and suffixes
    its names with that number. A child's own names are 'W', 'b' for a plain layer and its own
    numbered names (W1, gamma1, ...) for a serial, residual or concat. Checks that no two layers
    claim the same name."""
    counts, plan, owner = {}, [], {}
    for pos, child in enumerate(children, start=1):
        names, local = {}, {}
        for leaf in _leaves(child):
            counts[leaf.kind] = counts.get(leaf.kind, 0) + 1
            local[leaf.kind] = local.get(leaf.kind, 0) + 1
            for base in (*leaf.param_names, *leaf.state_names):
                full = base + str(counts[leaf.kind])
                if full in owner:
                    raise ValueError(f"{fn}: layers {owner[full]} and {pos} ({child.name}) both name "
                                     f"a parameter {full!r}")
                owner[full] = pos
                names[base if leaf is child else base + str(local[leaf.kind])] = full
        plan.append(names)
    return plan


def _at(where, block, detail):
    """A ShapeError's detail with the place it came from: 'layer 5 (Pooling 2x2) does not tile ...',
    'layer 4 (residual), layer 2 (Convolution ...) ...', 'branch 2, layer 1 (...) ...' (a serial
    names its own layer)."""
    if block.layers and not _branching(block):
        return f"{where}, {detail}"
    return f"{where} ({block.name}){',' if _branching(block) else ''} {detail}"


def serial(*layers) -> Block:
    """The layers one after another: a Block whose params and state are flat dicts with the book's
    names (W1, b1, gamma1, running_mean1, ...) and whose backward is the book's reversed loop.

    >>> net = serial(Convolution(4, 3, pad=1), Relu(), Pooling(2), Affine(10))
    >>> out_shape, params, state = net.init(jax.random.PRNGKey(0), (1, 8, 8))   # per sample, no N
    >>> out_shape, list(params)
    ((10,), ['W1', 'b1', 'W2', 'b2'])
    >>> x = jnp.zeros((2, 1, 8, 8))
    >>> y, cache, state = net.forward(params, x, state)
    >>> dx, grads = net.backward(cache, jnp.ones_like(y))
    >>> y.shape, dx.shape, grads["W1"].shape
    ((2, 10), (2, 1, 8, 8), (4, 1, 3, 3))
    """
    if len(layers) == 1 and isinstance(layers[0], (list, tuple)) and not isinstance(layers[0], Block):
        layers = tuple(layers[0])
    if not layers:
        raise ValueError("serial: give at least one layer, e.g. serial(Affine(10))")
    children = _children(layers)
    plan = _plan(children)
    seeded = [_has(c, "weights") for c in children]
    keyed = [_has(c, "dropout") for c in children]
    param_names = [names[n] for c, names in zip(children, plan, strict=True) for n in c.param_names]
    state_names = [names[n] for c, names in zip(children, plan, strict=True) for n in c.state_names]

    def init(key, input_shape):
        shape = input_shape_of(input_shape, fn="serial")
        wkeys = list(jax.random.split(key, sum(seeded))) if any(seeded) else []
        params, state = {}, {}
        for pos, (child, names, seed) in enumerate(zip(children, plan, seeded, strict=True), start=1):
            k = wkeys.pop(0) if seed else jax.random.fold_in(key, pos)
            try:
                shape, p, s = child.init(k, shape)
            except ShapeError as e:
                detail = _at(f"layer {pos}", child, e.detail)
                raise ShapeError(f"serial: {detail}", detail) from None
            params.update({names[n]: p[n] for n in child.param_names})
            state.update({names[n]: s[n] for n in child.state_names})
        return tuple(shape), params, state

    def forward(params, x, state=None, *, train=False, key=None):
        require_keys("serial.forward", params, param_names)
        state = {} if state is None else state
        if state_names:
            require_keys("serial.forward", state, state_names, arg="state")
        dkeys = []
        if train and any(keyed):
            if key is None:
                raise ValueError("serial.forward: training a network with Dropout needs a PRNG key "
                                 "(key=jax.random.PRNGKey(...))")
            dkeys = list(jax.random.split(key, sum(keyed)))
        y, caches, new_state = jnp.asarray(x), [], dict(state)
        for child, names, needs_key in zip(children, plan, keyed, strict=True):
            p = {n: params[names[n]] for n in child.param_names}
            s = {n: state[names[n]] for n in child.state_names}
            k = dkeys.pop(0) if needs_key and dkeys else None
            y, cache, s = child.forward(p, y, s, train=train, key=k)
            new_state.update({names[n]: s[n] for n in child.state_names})
            caches.append(cache)
        return y, tuple(caches), new_state

    def backward(cache, dy):
        grads = {}
        for child, names, c in zip(reversed(children), reversed(plan), reversed(cache), strict=True):
            dy, g = child.backward(c, dy)
            grads.update({names[n]: g[n] for n in child.param_names})
        return dy, {n: grads[n] for n in param_names}

    name = "serial(" + ", ".join(c.name for c in children) + ")"
    return Block(name, init, forward, backward, "", tuple(param_names), tuple(state_names), tuple(children))


# ---------------------------------------------------------------------------------------------
# residual and concat: parts side by side on one input


def _parts_names(parts, plan):
    """The params and state names of a block made of parts, in the order of the parts."""
    params = tuple(names[n] for part, names in zip(parts, plan, strict=True) for n in part.param_names)
    state = tuple(names[n] for part, names in zip(parts, plan, strict=True) for n in part.state_names)
    return params, state


def _init_parts(fn, parts, wheres, plan, key, shape):
    """Each part's init on the same input shape, one key each: (output shapes, params, state)."""
    keys = [key] if len(parts) == 1 else list(jax.random.split(key, len(parts)))
    outs, params, state = [], {}, {}
    for part, where, names, k in zip(parts, wheres, plan, keys, strict=True):
        try:
            out, p, s = part.init(k, shape)
        except ShapeError as e:
            detail = e.detail if where is None else _at(where, part, e.detail)
            raise ShapeError(f"{fn}: {detail}", detail) from None
        outs.append(tuple(out))
        params.update({names[n]: p[n] for n in part.param_names})
        state.update({names[n]: s[n] for n in part.state_names})
    return outs, params, state


def _forward_parts(fn, parts, plan, names, params, x, state, train, key):
    """Each part's forward on the same x: ([y], [cache], new state). A part that holds a Dropout
    gets its own key in training, split from key in the order of the parts."""
    require_keys(f"{fn}.forward", params, names[0])
    state = {} if state is None else state
    if names[1]:
        require_keys(f"{fn}.forward", state, names[1], arg="state")
    needs = [_has(part, "dropout") for part in parts]
    keys = [None] * len(parts)
    if train and any(needs):
        if key is None:
            raise ValueError(f"{fn}.forward: training a network with Dropout needs a PRNG key "
                             "(key=jax.random.PRNGKey(...))")
        split = iter([key] if sum(needs) == 1 else jax.random.split(key, sum(needs)))
        keys = [next(split) if n else None for n in needs]
    x = jnp.asarray(x)
    ys, caches, new_state = [], [], dict(state)
    for part, part_names, k in zip(parts, plan, keys, strict=True):
        p = {n: params[part_names[n]] for n in part.param_names}
        s = {n: state[part_names[n]] for n in part.state_names}
        y, cache, s = part.forward(p, x, s, train=train, key=k)
        new_state.update({part_names[n]: s[n] for n in part.state_names})
        ys.append(y)
        caches.append(cache)
    return ys, tuple(caches), new_state


def _shortcut_hint(shape, out):
    """A shortcut that maps per-sample shape to out, as code, or '' when none comes to mind."""
    if len(shape) == len(out) == 3:
        (h, w), (oh, ow) = shape[1:], out[1:]
        for s in range(1, h + 1):
            if (h - 1) == (oh - 1) * s and (w - 1) == (ow - 1) * s:
                return f"Convolution({out[0]}, 1" + (f", stride={s}" if s > 1 else "") + ")"
        if h % oh == 0 and w % ow == 0 and h // oh == w // ow:
            return f"serial(Pooling({h // oh}, mode='avg'), Convolution({out[0]}, 1))"
    if len(out) == 1:
        return f"Affine({out[0]})"
    return ""


def residual(*layers, shortcut=None) -> Block:
    """ResNet's building block: y = F(x) + shortcut(x), with F = serial(*layers) and shortcut the
    identity (None) or a Block mapping x to F's output shape (a 1x1 Convolution where the channels
    change, with a stride where F shrinks the maps).

    Backward, by the rules of chapter 5: the AddLayer passes dy unchanged to both of its inputs,
    so dy goes into F's backward and into the shortcut's; x fed both, so its gradient is the sum
    of the two dx (for the identity, dx = F's dx + dy: the gradient that skips F). Params and
    state keep the book's flat names, F's layers numbered first, then the shortcut's."""
    if len(layers) == 1 and isinstance(layers[0], (list, tuple)) and not isinstance(layers[0], Block):
        layers = tuple(layers[0])
    if not layers:
        raise ValueError("residual: give the layers of F, e.g. residual(Convolution(16, 3, pad=1), "
                         "BatchNormalization(), Relu(), Convolution(16, 3, pad=1), BatchNormalization())")
    F = serial(*_children(layers, "residual"))
    parts = (F,) if shortcut is None else (F, _block("residual", "shortcut", shortcut))
    plan = _plan(parts, "residual")
    names = _parts_names(parts, plan)

    def init(key, input_shape):
        shape = input_shape_of(input_shape, fn="residual")
        outs, params, state = _init_parts("residual", parts, (None, "shortcut")[: len(parts)], plan, key,
                                            shape)
        added = outs[1] if shortcut is not None else shape
        if outs[0] != added:
            what = (f"the shortcut's {added}, so the two cannot be added" if shortcut is not None else
                    f"their input {added}, which the identity shortcut adds to it")
            hint = _shortcut_hint(shape, outs[0])
            detail = (f"the layers' output {outs[0]} differs from {what}; give a shortcut that maps "
                      f"{shape} to {outs[0]}" + (f", e.g. shortcut={hint}" if hint else ""))
            raise ShapeError(f"residual: {detail}", detail)
        return outs[0], params, state

    def forward(params, x, state=None, *, train=False, key=None):
        ys, caches, state = _forward_parts("residual", parts, plan, names, params, x, state, train, key)
        y, _ = add.forward({}, ys[0], ys[1] if shortcut is not None else jnp.asarray(x))  # F(x) + shortcut(x)
        return y, caches, state

    def backward(cache, dy):
        (dy_f, dy_shortcut), _ = add.backward(None, dy)  # the AddLayer: dy to both inputs
        dx, g = F.backward(cache[0], dy_f)
        grads = {plan[0][n]: g[n] for n in F.param_names}
        if shortcut is None:
            return dx + dy_shortcut, grads  # x was used twice: its two gradients add
        dx_shortcut, g = shortcut.backward(cache[1], dy_shortcut)
        grads.update({plan[1][n]: g[n] for n in shortcut.param_names})
        return dx + dx_shortcut, {n: grads[n] for n in names[0]}

    return Block("residual", init, forward, backward, "residual", *names, parts)


@dataclasses.dataclass(frozen=True)
class _ConcatCache:
    caches: tuple
    sizes: tuple = dataclasses.field(metadata=dict(static=True))


jax.tree_util.register_dataclass(_ConcatCache, data_fields=["caches"], meta_fields=["sizes"])


def concat(*branches) -> Block:
    """GoogLeNet's inception idea: every branch (a layer, a serial, a residual, ...) takes the same
    input, and their outputs are joined on the channel axis (axis 1 of NCHW; the features of flat
    output), so branches may differ in channels but not in the other sizes.

    Backward: dy is split back into the branches' parts, each goes through its branch's backward,
    and, since x fed every branch, the branches' dx are summed. Params and state keep the book's
    flat names, numbered branch after branch."""
    if len(branches) == 1 and isinstance(branches[0], (list, tuple)) and not isinstance(branches[0], Block):
        branches = tuple(branches[0])
    if not branches:
        raise ValueError("concat: give the branches, e.g. concat(Convolution(8, 1), "
                         "serial(Convolution(8, 1), Relu(), Convolution(16, 3, pad=1)))")
    parts = tuple(_block("concat", f"branch {i}", b) for i, b in enumerate(branches, start=1))
    plan = _plan(parts, "concat")
    names = _parts_names(parts, plan)

    def init(key, input_shape):
        shape = input_shape_of(input_shape, fn="concat")
        wheres = tuple(f"branch {i}" for i in range(1, len(parts) + 1))
        outs, params, state = _init_parts("concat", parts, wheres, plan, key, shape)
        for i, out in enumerate(outs[1:], start=2):
            if out[1:] != outs[0][1:] or len(out) != len(outs[0]):
                detail = (f"branch 1 gives {outs[0]} and branch {i} gives {out}; concat joins them on the "
                          "channels (the first size per sample), so the other sizes must agree")
                raise ShapeError(f"concat: {detail}", detail)
        return (sum(out[0] for out in outs),) + outs[0][1:], params, state

    def forward(params, x, state=None, *, train=False, key=None):
        ys, caches, state = _forward_parts("concat", parts, plan, names, params, x, state, train, key)
        sizes = tuple(int(y.shape[1]) for y in ys)
        return jnp.concatenate(ys, axis=1), _ConcatCache(caches, sizes), state

    def backward(cache, dy):
        ends = list(itertools.accumulate(cache.sizes))
        dys = jnp.split(dy, ends[:-1], axis=1)  # each branch's channels of dy
        dx, grads = None, {}
        for part, part_names, c, d in zip(parts, plan, cache.caches, dys, strict=True):
            dx_part, g = part.backward(c, d)
            dx = dx_part if dx is None else dx + dx_part  # x fed every branch: the gradients add
            grads.update({part_names[n]: g[n] for n in part.param_names})
        return dx, {n: grads[n] for n in names[0]}

    return Block("concat", init, forward, backward, "concat", *names, parts)


# ---------------------------------------------------------------------------------------------
# summary


def summary(net: Block, input_shape) -> str:
    """One line per layer: its position, name, output shape and parameter names (a printed table).
    The layers inside a residual or concat are indented below it, numbered from 1 in each part,
    under a title for a shortcut or a branch."""
    shape = input_shape_of(input_shape, fn="summary")
    layers = net.layers if net.layers and not _branching(net) else (net,)
    names = iter(_plan(_leaves(net), "summary"))
    rows = []
    _rows(rows, layers, names, shape, 0)
    width = max([28] + [len(row[1]) + 2 for row in rows])
    lines = [f"{'':>3}  {'layer':<{width}} {'output':<16} params",
             f"{'':>3}  {'input':<{width}} {str(shape):<16}"]
    lines += [f"{pos:>3}  {name:<{width}} {str(out):<16} {params}" for pos, name, out, params in rows]
    return "\n".join(lines)


def _rows(rows, layers, names, shape, depth):
    """Append (position, indented name, output shape, params) for layers one after another from
    shape; `names` yields each plain layer's {own name: book name} in order. Returns the output shape."""
    for pos, layer in enumerate(layers, start=1):
        label, indent = (pos, "") if depth == 0 else ("", "  " * depth + f"{pos}  ")
        out, p = _shapes(layer, shape)
        if not _branching(layer):
            book = next(names)
            params = ", ".join(f"{book[n]} {shape_of(p[n])}" for n in layer.param_names)
            rows.append((label, indent + layer.name, out, params))
        else:
            rows.append((label, indent + layer.name, out, ""))
            titles = ["branch " + str(i) for i in range(1, len(layer.layers) + 1)]
            if layer.kind == "residual":
                titles = [None, "shortcut"]
            for title, part in zip(titles, layer.layers, strict=False):
                inner = part.layers if part.layers and not _branching(part) else (part,)
                if title is None:
                    _rows(rows, inner, names, shape, depth + 1)
                    continue
                rows.append(("", "  " * (depth + 1) + title, _shapes(part, shape)[0], ""))
                _rows(rows, inner, names, shape, depth + 2)
            if layer.kind == "residual" and len(layer.layers) == 1:
                rows.append(("", "  " * (depth + 1) + "shortcut: identity", shape, ""))
        shape = out
    return shape


def _shapes(block, shape):
    """(output shape per sample, params as shapes) of block.init on shape, computed abstractly."""
    out, p, _ = jax.eval_shape(lambda k: _shapes_only(block, k, shape), jax.random.PRNGKey(0))
    return tuple(int(d) for d in out.shape[1:]), p


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
    net: Block | None = None


document_fields(
    Model,
    init="init(key) -> (params, state): fresh parameters and state, dicts of arrays.",
    apply="apply(params, state, x, train=False, key=None) -> (scores (N, classes), state).",
    loss_and_grad="loss_and_grad(params, state, x, t, key) -> (loss, grads, state), in training mode.",
    input_shape="The shape of one sample, without N: (784,), (1, 28, 28).",
    net="The layer stack it was built from (`sequential` gives it), or None: what `fnnet.inference` "
        "runs up to the first convolution for the feature maps.",
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

    return Model(init, apply, loss_and_grad, input_shape, net)


def net_loss_and_grad(net, params, state, x, t, *, train=True, key=None):
    """(loss, grads, new state) of a layer stack with SoftmaxWithLoss on top, by hand: `net.forward`,
    the loss, then `net.backward` from dout = 1 (the book's TwoLayerNet.gradient for any net)."""
    y, cache, state = net.forward(params, x, state, train=train, key=key)
    value, c = softmax_with_loss.forward({}, y, t)
    dy, _ = softmax_with_loss.backward(c, 1.0)
    _, grads = net.backward(cache, dy)
    return value, grads, state
