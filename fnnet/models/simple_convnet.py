"""SimpleConvNet (chapter 7): Conv - ReLU - MaxPool 2x2 - Affine - ReLU - Affine - SoftmaxWithLoss.

params = {'W1': (FN, C, FS, FS), 'b1': (FN,), 'W2': (FN*PH*PW, hidden), 'b2': (hidden,),
          'W3': (hidden, out), 'b3': (out,)}, the book's layouts: with the default configuration
W1 (30, 1, 5, 5) and W2 (4320, 100). x is NCHW; the pooled maps are flattened in C-order of
(C, H, W) like the book, so the book's trained weights (params.pkl) load as they are.

The conv filter size comes from W1's shape; pad and stride are static Python ints taken from
`conv_param` (default: the book's pad 0, stride 1), never from traced values. `conv_impl` (a
static `ConvImpl`) says how the convolution runs: the book's im2col in the functions below unless
given; `model` resolves the fast layout for JAX's default backend once, when it builds the Model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnnet import gradient as _gradient
from fnnet._checks import require_images, require_keys
from fnnet.init import weight_std
from fnnet.layers import conv_fast
from fnnet.layers.conv import conv_output_size, convolution, pooling
from fnnet.layers.core import affine, relu, softmax_with_loss
from fnnet.models import Model, batched_accuracy

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


def output_shapes(input_dim, conv_param=None):
    """((FN, OH, OW) after the conv, (FN, PH, PW) after pooling) for input (C, H, W); errors if
    a size is not whole."""
    cp = _conv_param(conv_param)
    input_dim = tuple(int(d) for d in input_dim)
    if len(input_dim) != 3:
        raise ValueError(f"simple_convnet: input_dim must be (C, H, W), got {input_dim}")
    fs = cp["filter_size"]
    oh, ow = conv_output_size("simple_convnet (conv)", input_dim, fs, fs, cp["stride"], cp["pad"])
    ph, pw = conv_output_size("simple_convnet (pool)", (oh, ow), POOL, POOL, POOL, 0, "window")
    return (cp["filter_num"], oh, ow), (cp["filter_num"], ph, pw)


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
    cp = _conv_param(conv_param)
    _, (fn_, ph, pw) = output_shapes(input_dim, cp)
    c, fs = int(input_dim[0]), cp["filter_size"]
    pool_size = fn_ * ph * pw
    k1, k2, k3 = jax.random.split(key, 3)

    def normal(k, shape, n_in):
        return weight_std(weight_init_std, n_in) * jax.random.normal(k, shape, dtype)

    return {
        "W1": normal(k1, (fn_, c, fs, fs), c * fs * fs),
        "b1": jnp.zeros(fn_, dtype),
        "W2": normal(k2, (pool_size, hidden_size), pool_size),
        "b2": jnp.zeros(hidden_size, dtype),
        "W3": normal(k3, (hidden_size, output_size), hidden_size),
        "b3": jnp.zeros(output_size, dtype),
    }


def _check(fn, params, x):
    require_keys(fn, params, KEYS)
    require_images(fn, x, params["W1"], "params['W1']")


def _forward(params, x, cp, conv_impl):
    conv = {"W": params["W1"], "b": params["b1"]}
    h1, c1 = convolution.forward(conv, x, stride=cp["stride"], pad=cp["pad"], impl=conv_impl)
    a1, c2 = relu.forward({}, h1)
    p1, c3 = pooling.forward({}, a1, POOL, POOL, stride=POOL)
    h2, c4 = affine.forward({"W": params["W2"], "b": params["b2"]}, p1)
    a2, c5 = relu.forward({}, h2)
    y, c6 = affine.forward({"W": params["W3"], "b": params["b3"]}, a2)
    return y, (c1, c2, c3, c4, c5, c6)


def predict(params, x, train=False, key=None, *, conv_param=None, conv_impl=conv_fast.REFERENCE):
    """Scores (N, out) before softmax for x (N, C, H, W). `train`/`key` are accepted for the
    common interface (this network has no dropout)."""
    x = jnp.asarray(x)
    _check("simple_convnet.predict", params, x)
    return _forward(params, x, _conv_param(conv_param), conv_impl)[0]


def loss(params, x, t, train=True, key=None, *, conv_param=None, conv_impl=conv_fast.REFERENCE):
    x = jnp.asarray(x)
    _check("simple_convnet.loss", params, x)
    y, _ = _forward(params, x, _conv_param(conv_param), conv_impl)
    return softmax_with_loss.forward({}, y, jnp.asarray(t))[0]


def accuracy(params, x, t, batch_size=100, *, conv_param=None, conv_impl=conv_fast.REFERENCE):
    """Fraction of correct predictions, computed batch by batch like the book."""
    return batched_accuracy(lambda xb: predict(params, xb, conv_param=conv_param, conv_impl=conv_impl), x, t,
                            batch_size)


def loss_and_gradient(params, x, t, key=None, *, conv_param=None, conv_impl=conv_fast.REFERENCE):
    """Loss and hand-written backprop through the seven layers."""
    x = jnp.asarray(x)
    _check("simple_convnet.gradient", params, x)
    y, (c1, c2, c3, c4, c5, c6) = _forward(params, x, _conv_param(conv_param), conv_impl)
    value, c7 = softmax_with_loss.forward({}, y, jnp.asarray(t))
    dy, _ = softmax_with_loss.backward(c7, 1.0)
    da2, g3 = affine.backward(c6, dy)
    dh2, _ = relu.backward(c5, da2)
    dp1, g2 = affine.backward(c4, dh2)
    da1, _ = pooling.backward(c3, dp1)
    dh1, _ = relu.backward(c2, da1)
    _, g1 = convolution.backward(c1, dh1)
    return value, {"W1": g1["W"], "b1": g1["b"], "W2": g2["W"], "b2": g2["b"], "W3": g3["W"], "b3": g3["b"]}


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
    cp = _conv_param(conv_param)
    output_shapes(input_shape, cp)  # raises now if the geometry does not fit
    impl = conv_fast.resolve(conv_impl)

    def init_(key):
        return init(key, input_shape, cp, hidden_size, output_size, weight_init_std), {}

    def apply(params, state, x, train=False, key=None):
        return predict(params, x.reshape((x.shape[0],) + input_shape), conv_param=cp, conv_impl=impl), state

    def loss_and_grad(params, state, x, t, key=None):
        xb = x.reshape((x.shape[0],) + input_shape)
        value, grads = loss_and_gradient(params, xb, t, conv_param=cp, conv_impl=impl)
        return value, grads, state

    return Model(init_, apply, loss_and_grad, input_shape)
