"""DeepConvNet (chapter 8): the book's VGG-style network for MNIST.

    conv1 - relu - conv2 - relu - pool - conv3 - relu - conv4 - relu - pool -
    conv5 - relu - conv6 - relu - pool - affine7 - relu - dropout - affine8 - dropout - softmax

Convs are 3x3, stride 1, with 16, 16, 32, 32, 64, 64 filters and pads 1, 1, 1, 2, 1, 1; pools
are max 2x2, stride 2. params = {'W1'..'W6': (FN, C, 3, 3), 'W7': (64*4*4, hidden),
'W8': (hidden, out), 'b1'..'b8'}, the book's layouts (deep_convnet_params.pkl loads as is).
Dropout (ratio 0.5) follows the book: in training a unit is kept where uniform(key) > ratio,
without rescaling; at inference every unit is multiplied by (1 - ratio).
He initialisation, sqrt(2 / fan_in), with the book's fan-ins (C*3*3 for the convs, 64*4*4
for affine7, hidden for affine8). `conv_impl` (a static `ConvImpl`) says how the convolutions
run: the book's im2col in the functions below unless given; `model` resolves the fast layout for
JAX's default backend once, when it builds the Model.

The network is `net(...)`, a `serial` stack of the book's layers; the functions below are thin
wrappers around it. Its two Dropout layers take the two keys of `jax.random.split(key)`.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from fnnet import gradient as _gradient
from fnnet._checks import require_images, require_keys, shape_of
from fnnet.layers import Affine, Convolution, Dropout, Pooling, Relu, conv_fast, serial
from fnnet.layers.core import softmax_with_loss
from fnnet.models import Model, batched_accuracy, net_loss_and_grad, sequential

FILTERS = (16, 16, 32, 32, 64, 64)
PADS = (1, 1, 1, 2, 1, 1)
FILTER_SIZE = 3
POOL_AFTER = (2, 4, 6)  # 1-based conv indices followed by max pooling 2x2, stride 2
DROPOUT_RATIO = 0.5
KEYS = tuple(f"{p}{i}" for i in range(1, 9) for p in ("W", "b"))


@functools.lru_cache(maxsize=16)
def net(hidden_size=50, output_size=10, conv_impl=None, dtype=jnp.float32):
    """serial(6 x [Convolution 3x3 - Relu (- Pooling 2x2)], Affine(hidden_size), Relu, Dropout,
    Affine(output_size), Dropout), all with He initialisation: params W1, b1, ..., W8, b8."""
    layers = []
    for i, (filters, pad) in enumerate(zip(FILTERS, PADS, strict=True), start=1):
        layers += [Convolution(filters, FILTER_SIZE, 1, pad, "he", conv_impl, dtype), Relu()]
        if i in POOL_AFTER:
            layers.append(Pooling(2, stride=2))
    return serial(*layers, Affine(hidden_size, "he", dtype), Relu(), Dropout(DROPOUT_RATIO),
                  Affine(output_size, "he", dtype), Dropout(DROPOUT_RATIO))


def init(key, input_dim=(1, 28, 28), hidden_size=50, output_size=10, dtype=jnp.float32):
    """He initialisation with the book's fan-ins; biases zero."""
    input_dim = tuple(int(d) for d in input_dim)
    if len(input_dim) != 3:
        raise ValueError(f"deep_convnet.init: input_dim must be (C, H, W), got {input_dim}")
    return net(hidden_size, output_size, dtype=dtype).init(key, input_dim)[1]


def _check(fn, params, x, train, key):
    require_keys(fn, params, KEYS)
    require_images(fn, x, params["W1"], "params['W1']")
    if train and key is None:
        raise ValueError(f"{fn}: train=True needs a jax.random key for dropout (key=None given)")


def _net_of(params, conv_impl):
    """The net that params (already checked) belong to."""
    return net(shape_of(params["W7"])[1], shape_of(params["W8"])[1], conv_impl)


def predict(params, x, train=False, key=None, *, conv_impl=conv_fast.REFERENCE):
    """Scores (N, out) before softmax for x (N, C, H, W); train=True applies dropout with `key`."""
    x = jnp.asarray(x)
    _check("deep_convnet.predict", params, x, train, key)
    return _net_of(params, conv_impl).forward(params, x, train=train, key=key)[0]


def loss(params, x, t, train=False, key=None, *, conv_impl=conv_fast.REFERENCE):
    """Mean cross-entropy of softmax(predict(params, x)) against labels (N,) or one-hot (N, out), for
    x (N, C, H, W); train=True applies dropout with `key`, as in `predict`."""
    x = jnp.asarray(x)
    _check("deep_convnet.loss", params, x, train, key)
    y = _net_of(params, conv_impl).forward(params, x, train=train, key=key)[0]
    return softmax_with_loss.forward({}, y, jnp.asarray(t))[0]


def accuracy(params, x, t, batch_size=100, *, conv_impl=conv_fast.REFERENCE):
    """Fraction of correct inference-mode predictions, computed batch by batch like the book."""
    return batched_accuracy(lambda xb: predict(params, xb, conv_impl=conv_impl), x, t, batch_size)


def loss_and_gradient(params, x, t, key=None, train=True, *, conv_impl=conv_fast.REFERENCE):
    """Loss and hand-written backprop; train=True (the default) applies dropout with `key`."""
    x = jnp.asarray(x)
    _check("deep_convnet.gradient", params, x, train, key)
    stack = _net_of(params, conv_impl)
    value, grads, _ = net_loss_and_grad(stack, params, {}, x, jnp.asarray(t), train=train, key=key)
    return value, grads


def gradient(params, x, t, key=None, train=True, *, conv_impl=conv_fast.REFERENCE):
    """Hand-written backprop (dropout masks drawn from `key` when train=True)."""
    return loss_and_gradient(params, x, t, key, train, conv_impl=conv_impl)[1]


def numerical_gradient(params, x, t, key=None, train=True, *, conv_impl=conv_fast.REFERENCE):
    """Central differences of `loss` with the same dropout masks (same key); slow, for checks."""
    return _gradient.numerical_gradient(lambda p: loss(p, x, t, train, key, conv_impl=conv_impl), params)


def model(input_shape, output_size, *, hidden_size=50, conv_impl=None) -> Model:
    """The uniform `Model` view used by fnnet.training and the CLI; input_shape is (C, H, W).
    conv_impl: None (the fast layout for JAX's default backend), 'fast', 'reference' or a ConvImpl,
    resolved here (`conv_fast.resolve`), once, not while tracing."""
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"deep_convnet.model: input_shape must be (C, H, W) images, got {input_shape} "
            "(load the data unflattened, e.g. (1, 28, 28) for MNIST)"
        )
    return sequential(net(hidden_size, output_size, conv_fast.resolve(conv_impl)), input_shape)
