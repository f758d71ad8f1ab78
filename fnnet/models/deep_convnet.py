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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnnet import gradient as _gradient
from fnnet._checks import require_images, require_keys
from fnnet.layers import conv_fast
from fnnet.layers.conv import conv_output_size, convolution, pooling
from fnnet.layers.core import affine, relu, softmax_with_loss
from fnnet.layers.normalization import dropout
from fnnet.models import Model, batched_accuracy

FILTERS = (16, 16, 32, 32, 64, 64)
PADS = (1, 1, 1, 2, 1, 1)
FILTER_SIZE = 3
POOL_AFTER = (2, 4, 6)  # 1-based conv indices followed by max pooling 2x2, stride 2
DROPOUT_RATIO = 0.5
KEYS = tuple(f"{p}{i}" for i in range(1, 9) for p in ("W", "b"))


def feature_shape(input_dim):
    """(C, H, W) after the last pooling for input (C, H, W); a ValueError naming the layer if a
    size is not whole (e.g. 8x8 inputs do not fit this network)."""
    c, h, w = (int(d) for d in input_dim)
    for i, (fn_, pad) in enumerate(zip(FILTERS, PADS, strict=True), start=1):
        h, w = conv_output_size(f"deep_convnet (conv{i})", (c, h, w), FILTER_SIZE, FILTER_SIZE, 1, pad)
        c = fn_
        if i in POOL_AFTER:
            h, w = conv_output_size(f"deep_convnet (pool after conv{i})", (c, h, w), 2, 2, 2, 0, "window")
    return c, h, w


def init(key, input_dim=(1, 28, 28), hidden_size=50, output_size=10, dtype=jnp.float32):
    """He initialisation with the book's fan-ins; biases zero."""
    input_dim = tuple(int(d) for d in input_dim)
    if len(input_dim) != 3:
        raise ValueError(f"deep_convnet.init: input_dim must be (C, H, W), got {input_dim}")
    fc, fh, fw = feature_shape(input_dim)
    flat = fc * fh * fw
    keys = jax.random.split(key, 8)
    params = {}
    pre = input_dim[0]
    for i, fn_ in enumerate(FILTERS, start=1):
        scale = (2.0 / (pre * FILTER_SIZE * FILTER_SIZE)) ** 0.5
        params[f"W{i}"] = scale * jax.random.normal(keys[i - 1], (fn_, pre, FILTER_SIZE, FILTER_SIZE), dtype)
        params[f"b{i}"] = jnp.zeros(fn_, dtype)
        pre = fn_
    params["W7"] = (2.0 / flat) ** 0.5 * jax.random.normal(keys[6], (flat, hidden_size), dtype)
    params["b7"] = jnp.zeros(hidden_size, dtype)
    params["W8"] = (2.0 / hidden_size) ** 0.5 * jax.random.normal(keys[7], (hidden_size, output_size), dtype)
    params["b8"] = jnp.zeros(output_size, dtype)
    return params


def _check(fn, params, x, train, key):
    require_keys(fn, params, KEYS)
    require_images(fn, x, params["W1"], "params['W1']")
    if train and key is None:
        raise ValueError(f"{fn}: train=True needs a jax.random key for dropout (key=None given)")


def _forward(params, x, train, key, conv_impl):
    caches = []
    h = x
    for i, pad in enumerate(PADS, start=1):
        conv = {"W": params[f"W{i}"], "b": params[f"b{i}"]}
        h, c = convolution.forward(conv, h, stride=1, pad=pad, impl=conv_impl)
        caches.append(c)
        h, c = relu.forward({}, h)
        caches.append(c)
        if i in POOL_AFTER:
            h, c = pooling.forward({}, h, 2, 2, stride=2)
            caches.append(c)
    k1, k2 = jax.random.split(key) if train else (None, None)
    h, c = affine.forward({"W": params["W7"], "b": params["b7"]}, h)
    caches.append(c)
    h, c = relu.forward({}, h)
    caches.append(c)
    h, c = dropout.forward({}, h, key=k1, ratio=DROPOUT_RATIO, train=train)
    caches.append(c)
    h, c = affine.forward({"W": params["W8"], "b": params["b8"]}, h)
    caches.append(c)
    y, c = dropout.forward({}, h, key=k2, ratio=DROPOUT_RATIO, train=train)
    caches.append(c)
    return y, caches


def predict(params, x, train=False, key=None, *, conv_impl=conv_fast.REFERENCE):
    """Scores (N, out) before softmax for x (N, C, H, W); train=True applies dropout with `key`."""
    x = jnp.asarray(x)
    _check("deep_convnet.predict", params, x, train, key)
    return _forward(params, x, train, key, conv_impl)[0]


def loss(params, x, t, train=False, key=None, *, conv_impl=conv_fast.REFERENCE):
    x = jnp.asarray(x)
    _check("deep_convnet.loss", params, x, train, key)
    y, _ = _forward(params, x, train, key, conv_impl)
    return softmax_with_loss.forward({}, y, jnp.asarray(t))[0]


def accuracy(params, x, t, batch_size=100, *, conv_impl=conv_fast.REFERENCE):
    """Fraction of correct inference-mode predictions, computed batch by batch like the book."""
    return batched_accuracy(lambda xb: predict(params, xb, conv_impl=conv_impl), x, t, batch_size)


def loss_and_gradient(params, x, t, key=None, train=True, *, conv_impl=conv_fast.REFERENCE):
    """Loss and hand-written backprop; train=True (the default) applies dropout with `key`."""
    x = jnp.asarray(x)
    _check("deep_convnet.gradient", params, x, train, key)
    y, caches = _forward(params, x, train, key, conv_impl)
    value, cl = softmax_with_loss.forward({}, y, jnp.asarray(t))
    d, _ = softmax_with_loss.backward(cl, 1.0)
    caches = list(caches)
    grads = {}
    d, _ = dropout.backward(caches.pop(), d)
    d, g = affine.backward(caches.pop(), d)
    grads["W8"], grads["b8"] = g["W"], g["b"]
    d, _ = dropout.backward(caches.pop(), d)
    d, _ = relu.backward(caches.pop(), d)
    d, g = affine.backward(caches.pop(), d)
    grads["W7"], grads["b7"] = g["W"], g["b"]
    for i in range(len(PADS), 0, -1):
        if i in POOL_AFTER:
            d, _ = pooling.backward(caches.pop(), d)
        d, _ = relu.backward(caches.pop(), d)
        d, g = convolution.backward(caches.pop(), d)
        grads[f"W{i}"], grads[f"b{i}"] = g["W"], g["b"]
    return value, {k: grads[k] for k in KEYS}


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
    feature_shape(input_shape)  # raises now if the geometry does not fit
    impl = conv_fast.resolve(conv_impl)

    def init_(key):
        return init(key, input_shape, hidden_size, output_size), {}

    def apply(params, state, x, train=False, key=None):
        return predict(params, x.reshape((x.shape[0],) + input_shape), train, key, conv_impl=impl), state

    def loss_and_grad(params, state, x, t, key=None):
        xb = x.reshape((x.shape[0],) + input_shape)
        value, grads = loss_and_gradient(params, xb, t, key, True, conv_impl=impl)
        return value, grads, state

    return Model(init_, apply, loss_and_grad, input_shape)
