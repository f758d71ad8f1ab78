"""Layers of chapter 5 as pure forward/backward pairs.

The one form every layer in fnnet follows:

    y, cache = layer.forward(params, x, ...)     # params: dict of arrays ({} if none)
    dx, grads = layer.backward(cache, dy)        # grads: dict with the keys of params

`cache` is a pytree of arrays holding whatever backward needs (no Python ints or shapes, so
that it can cross a `jax.jit` boundary); nothing is stored anywhere else. Layers with
several inputs (`mul`, `add`) take them as extra positional arguments and return their
gradients as a tuple in place of `dx`. Layers with running state (batch_norm)
take it as an argument and return the new state as a third value.

Each layer says in its help() (`help(affine)`, `affine?` in Jupyter) what it computes, its shapes
and its cache.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp

from fnnet._checks import (
    check_targets,
    require_features,
    require_keys,
    require_ndim,
    require_nonempty,
    shape_of,
)
from fnnet._docs import document_fields
from fnnet.functions import log_softmax, to_one_hot
from fnnet.functions import sigmoid as _sigmoid
from fnnet.functions import softmax as _softmax

__all__ = ["Layer", "mul", "add", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "affine",
           "softmax_with_loss"]


class Layer(NamedTuple):
    """A layer of the book as two pure functions, in place of a class with `forward` and `backward`
    methods that keeps its inputs in `self`:

        y, cache = layer.forward(params, x, ...)    # params: dict of arrays, {} if none
        dx, grads = layer.backward(cache, dy)       # dy shaped like y; dx like x; grads like params

    `cache` is what forward keeps for backward (the book's `self.x`, `self.mask`, ...), returned
    instead of stored, so that both functions stay pure and jit-compatible. Each built-in layer
    (`affine`, `relu`, ...) is a Layer whose help() says what it computes, its shapes and its
    cache; `Layer(forward, backward)` makes one of your own (check it with
    `fnnet.gradcheck.check_layer`).
    """

    forward: Callable
    backward: Callable


document_fields(
    Layer,
    forward="forward(params, x, ...) -> (y, cache): the output, and what backward needs.",
    backward="backward(cache, dy) -> (dx, grads): dy = dL/dy gives dx = dL/dx and grads = dL/dparams.",
)


def _layer(forward: Callable, backward: Callable):
    """Class decorator: `@_layer(f, b)` over `class name(Layer): "doc"` defines the layer
    `name = Layer(f, b)` with that docstring.

    Python attaches no string that follows `name = Layer(...)`; a class docstring it does. So each
    layer is the one instance of a subclass of Layer of its own, carrying its text to help(),
    `inspect.getdoc`, Jupyter's `?` and the API reference. It is still a Layer: fields, tuple
    unpacking, equality and jit are those of `Layer(f, b)`."""

    def make(cls):
        extra = [k for k in vars(cls) if not k.startswith("__")]
        if cls.__bases__ != (Layer,) or not cls.__doc__ or extra:
            raise TypeError(f"_layer: {cls.__name__} must subclass Layer alone, with a docstring and "
                            f"nothing else (got bases {cls.__bases__}, members {extra})")
        namespace = {"__doc__": cls.__doc__, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
                     "__slots__": (), "__reduce__": _reduce_layer}
        return type(cls.__name__, (Layer,), namespace)(forward, backward)

    return make


def _reduce_layer(layer):
    """Pickle a module's layer by name (it unpickles as that same layer), any other as a Layer."""
    cls = type(layer)
    if getattr(sys.modules.get(cls.__module__), cls.__name__, None) is layer:
        return cls.__name__
    return Layer, tuple(layer)


def _same_shape(fn, x, y):
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"{fn}: x shape {x.shape} and y shape {y.shape} differ (no broadcasting)")
    return x, y


def _mul_forward(params, x, y):
    """x, y of one shape, e.g. (N, D) -> (x * y of that shape, cache (x, y))."""
    x, y = _same_shape("mul.forward", x, y)
    return x * y, (x, y)


def _mul_backward(cache, dout):
    """cache (x, y), dout of x's shape, e.g. (N, D) -> ((dx, dy) = (dout * y, dout * x), {})."""
    x, y = cache
    return (dout * y, dout * x), {}


@_layer(_mul_forward, _mul_backward)
class mul(Layer):
    """The multiplication node of chapter 5 (the book's MulLayer): out = x * y.

        out, cache = mul.forward({}, x, y)     # x, y of one shape, e.g. (N, D); out the same
        (dx, dy), grads = mul.backward(cache, dout)

    Each input's gradient is dout times the other input: dx = dout * y, dy = dout * x.
    Cache: (x, y), the two inputs. No params, so grads is {}.
    """


def _add_forward(params, x, y):
    """x, y of one shape, e.g. (N, D) -> (x + y of that shape, cache None)."""
    x, y = _same_shape("add.forward", x, y)
    return x + y, None


def _add_backward(cache, dout):
    """cache None, dout of x's shape, e.g. (N, D) -> ((dx, dy) = (dout, dout), {})."""
    return (dout, dout), {}


@_layer(_add_forward, _add_backward)
class add(Layer):
    """The addition node of chapter 5 (the book's AddLayer): out = x + y.

        out, cache = add.forward({}, x, y)     # x, y of one shape, e.g. (N, D); out the same
        (dx, dy), grads = add.backward(cache, dout)

    Both inputs receive dout unchanged: dx = dy = dout.
    Cache: None (backward needs nothing). No params, so grads is {}.
    """


def _relu_forward(params, x):
    """x (N, ...) -> (max(0, x) of x's shape, cache the mask x > 0 of that shape)."""
    x = jnp.asarray(x)
    mask = x > 0
    return jnp.where(mask, x, 0), mask


def _relu_backward(mask, dy):
    """mask (N, ...), dy (N, ...) -> (dy where x > 0, else 0; {})."""
    return jnp.where(mask, dy, 0), {}


@_layer(_relu_forward, _relu_backward)
class relu(Layer):
    """The ReLU layer of chapter 5: y = max(0, x), elementwise.

        y, mask = relu.forward({}, x)          # x of any shape, e.g. (N, D); y the same
        dx, grads = relu.backward(mask, dy)    # dx = dy where x > 0, else 0

    Cache: the boolean mask x > 0 (x's shape), the book's `self.mask` with its sense flipped.
    No params, so grads is {}.
    """


def _sigmoid_forward(params, x):
    """x (N, ...) -> (y = sigmoid(x) of x's shape, cache y)."""
    out = _sigmoid(jnp.asarray(x))
    return out, out


def _sigmoid_backward(out, dy):
    """cache y (N, ...), dy (N, ...) -> (dy * (1 - y) * y, {})."""
    return dy * (1.0 - out) * out, {}


@_layer(_sigmoid_forward, _sigmoid_backward)
class sigmoid(Layer):
    """The Sigmoid layer of chapter 5: y = 1 / (1 + exp(-x)), elementwise.

        y, cache = sigmoid.forward({}, x)      # x of any shape, e.g. (N, D); y the same
        dx, grads = sigmoid.backward(cache, dy)

    The derivative is written with the output alone: dx = dy * y * (1 - y).
    Cache: y, the output (the book's `self.out`). No params, so grads is {}.
    """


def _leaky_relu_forward(params, x, alpha=0.01):
    """x (N, ...) -> (where(x > 0, x, alpha * x) of x's shape, cache (mask x > 0, alpha as an array))."""
    x = jnp.asarray(x)
    mask = x > 0
    alpha = jnp.asarray(alpha, x.dtype)
    return jnp.where(mask, x, alpha * x), (mask, alpha)


def _leaky_relu_backward(cache, dy):
    """cache (mask (N, ...), alpha ()), dy (N, ...) -> (dy where x > 0, else alpha * dy; {})."""
    mask, alpha = cache
    return jnp.where(mask, dy, alpha * dy), {}


@_layer(_leaky_relu_forward, _leaky_relu_backward)
class leaky_relu(Layer):
    """Leaky ReLU: y = x where x > 0, alpha * x elsewhere, elementwise (ReLU with a small slope
    below 0, so that a unit whose input stays negative still learns).

        y, cache = leaky_relu.forward({}, x, alpha=0.01)   # x of any shape, e.g. (N, D); y the same
        dx, grads = leaky_relu.backward(cache, dy)         # dx = dy where x > 0, else alpha * dy

    Cache: (mask, alpha), the boolean mask x > 0 (x's shape) as relu's, and alpha as a 0-d array.
    No params, so grads is {}.
    """


def _tanh_forward(params, x):
    """x (N, ...) -> (y = tanh(x) of x's shape, cache y)."""
    out = jnp.tanh(jnp.asarray(x))
    return out, out


def _tanh_backward(out, dy):
    """cache y (N, ...), dy (N, ...) -> (dy * (1 - y**2), {})."""
    return dy * (1.0 - out * out), {}


@_layer(_tanh_forward, _tanh_backward)
class tanh(Layer):
    """The hyperbolic tangent: y = tanh(x), elementwise, a sigmoid centred on 0 with outputs in (-1, 1).

        y, cache = tanh.forward({}, x)         # x of any shape, e.g. (N, D); y the same
        dx, grads = tanh.backward(cache, dy)

    As with sigmoid, the derivative is written with the output alone: dx = dy * (1 - y**2).
    Cache: y, the output. No params, so grads is {}.
    """


def _softmax_forward(params, x):
    """x (N, D) -> (y = softmax(x) over D, (N, D); cache y)."""
    out = _softmax(jnp.asarray(x))
    return out, out


def _softmax_backward(out, dy):
    """cache y (N, D), dy (N, D) -> (y * (dy - sum(dy * y over D)), {})."""
    return out * (dy - jnp.sum(dy * out, axis=-1, keepdims=True)), {}


@_layer(_softmax_forward, _softmax_backward)
class softmax(Layer):
    """The softmax of chapter 3 as a layer: y = exp(x) / sum(exp(x)) over the last axis.

        y, cache = softmax.forward({}, x)      # x (N, D) scores; y (N, D), each row sums to 1
        dx, grads = softmax.backward(cache, dy)

    Every output depends on every input of its row, so the Jacobian is diag(y) - y y^T and
    dx = y * (dy - sum(dy * y)) per row. For training, `softmax_with_loss` joins it to the loss,
    whose gradient is simpler (y - t) / N.
    Cache: y, the output (N, D). No params, so grads is {}.
    """


def _affine_forward(params, x):
    """params {'W': (D, M), 'b': (M,)}, x (N, D) or (N, ...) -> (y (N, M), cache (x, W));
    one sample x (D,) gives y (M,)."""
    require_keys("affine.forward", params, ("W", "b"))
    x = jnp.asarray(x)
    require_nonempty("affine.forward", "x", x)
    require_features("affine.forward", x, params["W"])
    if shape_of(params["b"]) != shape_of(params["W"])[1:]:
        raise ValueError(
            f"affine.forward: params['b'] must have shape {shape_of(params['W'])[1:]} to match "
            f"params['W'] of shape {shape_of(params['W'])}, got shape {shape_of(params['b'])}"
        )
    x2 = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
    y = x2 @ params["W"] + params["b"]
    return (y if x.ndim > 1 else y[0]), (x, params["W"])


def _affine_backward(cache, dy):
    """cache (x, W), dy (N, M) -> (dx in x's shape, {'W': (D, M), 'b': (M,)})."""
    x, W = cache
    x2 = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
    dy2 = dy.reshape(x2.shape[0], -1)
    dx = (dy2 @ W.T).reshape(x.shape)
    return dx, {"W": x2.T @ dy2, "b": jnp.sum(dy2, axis=0)}


@_layer(_affine_forward, _affine_backward)
class affine(Layer):
    """The Affine layer of chapter 5: y = x @ W + b, the product of a fully connected layer.

        y, cache = affine.forward({'W': W, 'b': b}, x)
        dx, grads = affine.backward(cache, dy)    # grads {'W', 'b'}

    Shapes: x (N, D), W (D, M), b (M,), y (N, M). Input of higher rank, such as images
    (N, C, H, W), is flattened to x.reshape(N, -1) as the book's Affine does, and dx comes back
    in x's own shape; one sample x (D,) gives y (M,).
    Backward: dx = dy @ W.T, dW = x.T @ dy, db = the sum of dy over the batch.
    Cache: (x, W), the input in its own shape and the weights.
    """


def _softmax_with_loss_forward(params, x, t):
    """x (N, C), t (N,) or (N, C) -> (loss (), cache (softmax(x) (N, C), one-hot t (N, C)))."""
    x, t = jnp.asarray(x), jnp.asarray(t)
    require_ndim("softmax_with_loss.forward", "x", x, (2,))
    require_nonempty("softmax_with_loss.forward", "x", x)
    check_targets("softmax_with_loss.forward", t, x.shape[0], x.shape[1])
    if t.shape == x.shape:
        t1 = t.astype(x.dtype)
    else:
        t1 = to_one_hot(t.reshape(-1), x.shape[1], x.dtype)
    loss = -jnp.sum(t1 * log_softmax(x)) / x.shape[0]
    return loss, (_softmax(x), t1)


def _softmax_with_loss_backward(cache, dout=1.0):
    """cache (y (N, C), t (N, C)), dout () -> (dout * (y - t) / N of shape (N, C), {})."""
    y, t1 = cache
    return dout * (y - t1) / y.shape[0], {}


@_layer(_softmax_with_loss_forward, _softmax_with_loss_backward)
class softmax_with_loss(Layer):
    """The Softmax-with-Loss layer of chapter 5: the mean cross-entropy of softmax(x) against t.

        loss, cache = softmax_with_loss.forward({}, x, t)    # x (N, C) scores; loss a scalar
        dx, grads = softmax_with_loss.backward(cache)        # dout = 1, dx (N, C)

    t is labels (N,) or one-hot (N, C). The loss is computed from log-softmax, with no 1e-7
    delta, so dx = dout * (softmax(x) - t) / N is its exact gradient.
    Cache: (y, t), softmax(x) (N, C) and t one-hot (N, C). No params, so grads is {}.
    """
