"""simpleNet (chapter 4): one 2x3 weight matrix, the smallest network whose loss has a gradient.

The book's `simpleNet` class holds W in `self.W` and differentiates its loss numerically:

    net = simpleNet()
    f = lambda w: net.loss(x, t)          # the dummy w: numerical_gradient changes net.W in place
    dW = numerical_gradient(f, net.W)

Here the loss is a pure function of params = {'W': (2, 3)}, so the gradient is taken with
respect to the params themselves and nothing is changed in place:

    params = simple_net.init(key)                              # or init_example(), the book's W
    dW = numerical_gradient(lambda p: simple_net.loss(p, x, t), params)['W']   # (2, 3)

x is one sample (2,) or a batch (N, 2); t is one-hot (3,) / (N, 3) or labels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnnet import gradient as _gradient
from fnnet._checks import require_features, require_keys, require_ndim
from fnnet.functions import cross_entropy_error, softmax

INPUT_SIZE, OUTPUT_SIZE = 2, 3


def init(key, dtype=jnp.float32):
    """params {'W': (2, 3)} drawn from N(0, 1), as the book's `np.random.randn(2, 3)`; no bias."""
    return {"W": jax.random.normal(key, (INPUT_SIZE, OUTPUT_SIZE), dtype)}


def init_example():
    """params {'W': (2, 3)} holding the W that the book's text prints (one draw of its randn), so
    that predict, loss and the numerical gradient give the book's numbers."""
    return {"W": jnp.array([[0.47355232, 0.9977393, 0.84668094], [0.85557411, 0.03563661, 0.69422093]])}


def _check(fn, params, x):
    require_keys(fn, params, ("W",))
    require_ndim(fn, "x", x, (1, 2))
    require_features(fn, x, params["W"], w_arg="params['W']")


def predict(params, x):
    """Scores before softmax, x @ W: x (2,) -> (3,), or (N, 2) -> (N, 3)."""
    x = jnp.asarray(x)
    _check("simple_net.predict", params, x)
    return x @ params["W"]


def loss(params, x, t):
    """cross_entropy_error(softmax(predict(params, x)), t), a scalar: the book's
    `simpleNet.loss`, with its 1e-7 delta inside the log."""
    return cross_entropy_error(softmax(predict(params, x)), t)


def numerical_gradient(params, x, t):
    """{'W': (2, 3)}: central differences of `loss` with respect to W, as the book computes dW."""
    return _gradient.numerical_gradient(lambda p: loss(p, x, t), params)
