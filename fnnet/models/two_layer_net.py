"""TwoLayerNet (chapters 4 and 5): Affine - ReLU|Sigmoid - Affine - SoftmaxWithLoss.

The network is `net(hidden_size, output_size, activation)`, a `serial` stack of the book's layers;
the functions below are the book's methods as thin wrappers around it.

params = {'W1': (in, hidden), 'b1': (hidden,), 'W2': (hidden, out), 'b2': (out,)}.
`t` may be integer labels (N,) or one-hot (N, out) everywhere. The hidden activation is the
keyword `activation` of every function: 'relu' (chapter 5's net, the default) or 'sigmoid'
(chapter 4's net, trained there with `numerical_gradient`).
"""

from __future__ import annotations

import functools
import math
import numbers

import jax.numpy as jnp

from fnnet import gradient as _gradient
from fnnet._checks import check_targets, require_features, require_keys, require_ndim, shape_of
from fnnet.layers import Affine, Relu, Sigmoid, serial, softmax_with_loss
from fnnet.models import Model, net_loss_and_grad, sequential

KEYS = ("W1", "b1", "W2", "b2")
ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid}


@functools.lru_cache(maxsize=64)
def net(hidden_size, output_size, activation="relu", weight_init_std=0.01, dtype=jnp.float32):
    """serial(Affine(hidden_size), Relu() or Sigmoid(), Affine(output_size)): params W1, b1, W2, b2."""
    _check_activation("two_layer_net.net", activation)
    return serial(Affine(hidden_size, weight_init_std, dtype), ACTIVATIONS[activation](),
                  Affine(output_size, weight_init_std, dtype))


def init(key, input_size, hidden_size, output_size, weight_init_std=0.01, dtype=jnp.float32):
    """W ~ std * N(0, 1), b = 0, as in the book; sizes are integers >= 1. weight_init_std is the
    std (the book's 0.01) or a rule of `fnnet.init.weight_std` ('xavier', 'he') applied per layer."""
    sizes = {"input_size": input_size, "hidden_size": hidden_size, "output_size": output_size}
    for name, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"two_layer_net.init: {name} must be an integer >= 1, got {v!r}")
    stack = net(int(hidden_size), int(output_size), "relu", weight_init_std, dtype)
    return stack.init(key, (int(input_size),))[1]


def _check(fn, params, x):
    """Keys and shapes of params and x, checked before any computation (static under jit)."""
    require_keys(fn, params, KEYS)
    require_ndim(fn, "x", x, (1, 2))
    for w in ("W1", "W2"):
        require_ndim(fn, f"params['{w}']", params[w], (2,))
    require_features(fn, x, params["W1"], w_arg="params['W1']")
    hidden, out = shape_of(params["W1"])[1], shape_of(params["W2"])[1]
    expected = {"b1": (hidden,), "W2": (hidden, out), "b2": (out,)}
    for k, shape in expected.items():
        if shape_of(params[k]) != shape:
            raise ValueError(
                f"{fn}: params['{k}'] must have shape {shape} to match params['W1'] {shape_of(params['W1'])} "
                f"and params['W2'] {shape_of(params['W2'])}, got shape {shape_of(params[k])}"
            )


def _check_activation(fn, activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"{fn}: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")


def _batch(fn, params, x, t):
    """x (N, in) and t (N,) or (N, out), checked; one sample (in,) becomes a batch of 1."""
    x, t = jnp.asarray(x), jnp.asarray(t)
    _check(fn, params, x)
    if x.ndim == 1:
        x, t = x[None], (t[None] if t.ndim == 1 else t.reshape(1))
    if x.shape[0] == 0:
        raise ValueError(f"{fn}: x has no samples (shape {shape_of(x)}, t shape {shape_of(t)}); the mean "
                         "over the batch needs at least one")
    check_targets(fn, t, x.shape[0], shape_of(params["W2"])[1])
    return x, t


def _net_of(params, activation):
    """The net that params (already checked) belong to."""
    return net(shape_of(params["W1"])[1], shape_of(params["W2"])[1], activation)


def _forward(params, x, activation):
    return _net_of(params, activation).forward(params, x)[0]


def predict(params, x, *, activation="relu"):
    """Scores before softmax: x (N, in) -> (N, out), or (in,) -> (out,)."""
    fn = "two_layer_net.predict"
    _check_activation(fn, activation)
    x = jnp.asarray(x)
    _check(fn, params, x)
    if x.ndim == 2 and x.shape[0] == 0:
        raise ValueError(f"{fn}: x has no samples (shape {shape_of(x)})")
    return _forward(params, x, activation)


def loss(params, x, t, *, activation="relu"):
    """Mean cross-entropy of softmax(predict(params, x)) against labels (N,) or one-hot (N, out)."""
    fn = "two_layer_net.loss"
    _check_activation(fn, activation)
    x, t = _batch(fn, params, x, t)
    return softmax_with_loss.forward({}, _forward(params, x, activation), t)[0]


def accuracy(params, x, t, *, activation="relu"):
    """Fraction of samples whose argmax score equals the label (t labels or one-hot)."""
    fn = "two_layer_net.accuracy"
    _check_activation(fn, activation)
    x, t = _batch(fn, params, x, t)
    y = jnp.argmax(_forward(params, x, activation), axis=-1)
    if t.ndim == 2:
        t = jnp.argmax(t, axis=1)
    return jnp.mean(y == t)


def gradient(params, x, t, *, activation="relu"):
    """Hand-written backprop through the four layers; a dict with the keys of params."""
    return loss_and_gradient(params, x, t, activation=activation)[1]


def loss_and_gradient(params, x, t, *, activation="relu"):
    """(loss, gradient) from one forward and one backward pass through the layers, reversed."""
    fn = "two_layer_net.gradient"
    _check_activation(fn, activation)
    x, t = _batch(fn, params, x, t)
    value, grads, _ = net_loss_and_grad(_net_of(params, activation), params, {}, x, t)
    return value, grads


def numerical_gradient(params, x, t, *, activation="relu"):
    """Central differences of `loss` for every parameter, 2 * (number of parameters) evaluations of
    the loss (chapter 4's way to train; slow, and used since chapter 5 to check backprop)."""
    _batch("two_layer_net.numerical_gradient", params, x, t)
    return _gradient.numerical_gradient(lambda p: loss(p, x, t, activation=activation), params)


def model(input_shape, output_size, *, hidden_size=50, weight_init_std=0.01, activation="relu") -> Model:
    """The uniform `Model` view used by fnnet.training and the CLI: `sequential(net(...), (in,))`."""
    _check_activation("two_layer_net.model", activation)
    return sequential(net(hidden_size, output_size, activation, weight_init_std), (math.prod(input_shape),))
