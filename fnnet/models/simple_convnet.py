"""SimpleConvNet (chapter 7): Conv - ReLU - MaxPool 2x2 - Affine - ReLU - Affine - SoftmaxWithLoss.

params = {'W1': (FN, C, FS, FS), 'b1': (FN,), 'W2': (FN*PH*PW, hidden), 'b2': (hidden,),
          'W3': (hidden, out), 'b3': (out,)}, the book's layouts: with the default configuration
W1 (30, 1, 5, 5) and W2 (4320, 100). x is NCHW; the pooled maps are flattened in C-order of
(C, H, W) like the book, so the book's trained weights (params.pkl) load as they are.

The conv filter size comes from W1's shape; pad and stride are static Python ints taken from
`conv_param` (default: the book's pad 0, stride 1), never from traced values. `conv_impl` (a
static `ConvImpl`) says how the convolution runs: the book's im2col in the functions below unless
given; `model` resolves the fast layout for JAX's default backend once, when it builds the Model.

The network is `net(...)`, a `serial` stack of the book's layers; the functions below are thin
wrappers around it.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from fnnet import gradient as _gradient
from fnnet._checks import require_images, require_keys, shape_of
from fnnet.layers import Affine, Convolution, Pooling, Relu, conv_fast, serial
from fnnet.layers.core import softmax_with_loss
from fnnet.models import Model, batched_accuracy, net_loss_and_grad, sequential

KEYS = ("W1", "b1", "W2", "b2", "W3", "b3")
DEFAULT_CONV_PARAM = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}
POOL = 2  # max pooling 2x2, stride 2


def _conv_param(conv_param):
    cp = dict(DEFAULT_CONV_PARAM)
    if conv_param:
        unknown = set(conv_param) - set(cp)
        if unknown:
            raise ValueError(
                f"simple_convnet: unknown conv_param keys {sorted(unknown)}; known: {sorted(cp)}"
            )
        cp.update(conv_param)
    return cp


@functools.lru_cache(maxsize=64)
def _net(filter_num, filter_size, pad, stride, hidden_size, output_size, weight_init_std, conv_impl, dtype):
    conv = Convolution(filter_num, filter_size, stride, pad, weight_init_std, conv_impl, dtype)
    return serial(conv, Relu(), Pooling(POOL, stride=POOL), Affine(hidden_size, weight_init_std, dtype),
                  Relu(), Affine(output_size, weight_init_std, dtype))


def net(conv_param=None, hidden_size=100, output_size=10, weight_init_std=0.01, conv_impl=None,
        dtype=jnp.float32):
    """serial(Convolution, Relu, Pooling 2x2, Affine(hidden_size), Relu, Affine(output_size)):
    params W1, b1 (the filters), W2, b2, W3, b3."""
    cp = _conv_param(conv_param)
    return _net(cp["filter_num"], cp["filter_size"], cp["pad"], cp["stride"], hidden_size, output_size,
                weight_init_std, conv_impl, dtype)


def init(
    key,
    input_dim=(1, 28, 28),
    conv_param=None,
    hidden_size=100,
    output_size=10,
    weight_init_std=0.01,
    dtype=jnp.float32,
):
    """W ~ std * N(0, 1), b = 0, as in the book. `weight_init_std` is a float or, per layer,
    'he'/'relu' or 'xavier'/'sigmoid' (fnnet.init.weight_std)."""
    if len(tuple(input_dim)) != 3:
        raise ValueError(f"simple_convnet.init: input_dim must be (C, H, W), got {tuple(input_dim)}")
    stack = net(conv_param, hidden_size, output_size, weight_init_std, dtype=dtype)
    return stack.init(key, tuple(int(d) for d in input_dim))[1]


def _check(fn, params, x):
    require_keys(fn, params, KEYS)
    require_images(fn, x, params["W1"], "params['W1']")


def _net_of(params, conv_param, conv_impl):
    """The net that params (already checked) belong to."""
    fnum, _, fs, _ = shape_of(params["W1"])
    cp = {**_conv_param(conv_param), "filter_num": fnum, "filter_size": fs}
    return net(cp, shape_of(params["W2"])[1], shape_of(params["W3"])[1], conv_impl=conv_impl)


def predict(params, x, train=False, key=None, *, conv_param=None, conv_impl=conv_fast.REFERENCE):
    """Scores (N, out) before softmax for x (N, C, H, W). `train`/`key` are accepted for the
    common interface (this network has no dropout)."""
    x = jnp.asarray(x)
    _check("simple_convnet.predict", params, x)
    return _net_of(params, conv_param, conv_impl).forward(params, x)[0]


def loss(params, x, t, train=True, key=None, *, conv_param=None, conv_impl=conv_fast.REFERENCE):
    """Mean cross-entropy of softmax(predict(params, x)) against labels (N,) or one-hot (N, out), for
    x (N, C, H, W). `train`/`key` are accepted for the common interface (this network has no dropout)."""
    x = jnp.asarray(x)
    _check("simple_convnet.loss", params, x)
    y = _net_of(params, conv_param, conv_impl).forward(params, x)[0]
    return softmax_with_loss.forward({}, y, jnp.asarray(t))[0]


def accuracy(params, x, t, batch_size=100, *, conv_param=None, conv_impl=conv_fast.REFERENCE):
    """Fraction of correct predictions, computed batch by batch like the book."""
    return batched_accuracy(lambda xb: predict(params, xb, conv_param=conv_param, conv_impl=conv_impl), x, t,
                            batch_size)


def loss_and_gradient(params, x, t, key=None, *, conv_param=None, conv_impl=conv_fast.REFERENCE):
    """Loss and hand-written backprop through the layers, reversed."""
    x = jnp.asarray(x)
    _check("simple_convnet.gradient", params, x)
    value, grads, _ = net_loss_and_grad(_net_of(params, conv_param, conv_impl), params, {}, x, jnp.asarray(t))
    return value, grads


def gradient(params, x, t, key=None, *, conv_param=None, conv_impl=conv_fast.REFERENCE):
    """Hand-written backprop; a dict with the keys of params."""
    return loss_and_gradient(params, x, t, conv_param=conv_param, conv_impl=conv_impl)[1]


def numerical_gradient(params, x, t, *, conv_param=None, conv_impl=conv_fast.REFERENCE):
    """Central differences of `loss` for every parameter (slow; for checking backprop)."""
    return _gradient.numerical_gradient(lambda p: loss(p, x, t, conv_param=conv_param, conv_impl=conv_impl),
                                        params)


def model(input_shape, output_size, *, conv_param=None, hidden_size=100, weight_init_std=0.01,
          conv_impl=None) -> Model:
    """The uniform `Model` view used by fnnet.training and the CLI; input_shape is (C, H, W).
    conv_impl: None (the fast layout for JAX's default backend), 'fast', 'reference' or a ConvImpl,
    resolved here (`conv_fast.resolve`), once, not while tracing."""
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"simple_convnet.model: input_shape must be (C, H, W) images, got {input_shape} "
            "(load the data unflattened, e.g. (1, 28, 28) for MNIST, (1, 8, 8) for digits)"
        )
    impl = conv_fast.resolve(conv_impl)
    return sequential(net(conv_param, hidden_size, output_size, weight_init_std, impl), input_shape)
