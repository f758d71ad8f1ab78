"""The chapter-3 network: sigmoid hidden layers, forward pass only.

The number and sizes of layers come from the params given: W1, b1, W2, b2, ..., Wk, bk.
With the book's `sample_weight.pkl` this is the 784-50-100-10 MNIST classifier.
"""

from __future__ import annotations

import jax.numpy as jnp

from fnnet._checks import require_features, require_keys, require_ndim, shape_of
from fnnet.functions import identity_function, sigmoid, softmax

OUTPUTS = {"identity": identity_function, "softmax": softmax}


def init_example():
    """The hand-set example weights of the book's `init_network()`."""
    return {
        "W1": jnp.array([[0.1, 0.3, 0.5], [0.2, 0.4, 0.6]]),
        "b1": jnp.array([0.1, 0.2, 0.3]),
        "W2": jnp.array([[0.1, 0.4], [0.2, 0.5], [0.3, 0.6]]),
        "b2": jnp.array([0.1, 0.2]),
        "W3": jnp.array([[0.1, 0.3], [0.2, 0.4]]),
        "b3": jnp.array([0.1, 0.2]),
    }


def num_layers(params) -> int:
    """k for params W1, b1, ..., Wk, bk (KeyError when there is no W1)."""
    n = 0
    while f"W{n + 1}" in params:
        n += 1
    if n == 0:
        require_keys("three_layer_net.predict", params, ("W1", "b1"))
    return n


def _check_chain(fn, params, n):
    """Each W{i} is 2-D, b{i} matches its columns and W{i+1} has as many rows."""
    for i in range(1, n + 1):
        w, b = f"W{i}", f"b{i}"
        require_ndim(fn, f"params['{w}']", params[w], (2,))
        if shape_of(params[b]) != shape_of(params[w])[1:]:
            raise ValueError(f"{fn}: params['{b}'] must have shape {shape_of(params[w])[1:]} to match "
                             f"params['{w}'] {shape_of(params[w])}, got shape {shape_of(params[b])}")
        if i > 1 and shape_of(params[w])[0] != shape_of(params[f"W{i - 1}"])[1]:
            prev = shape_of(params[f"W{i - 1}"])
            raise ValueError(f"{fn}: params['{w}'] has {shape_of(params[w])[0]} rows (shape "
                             f"{shape_of(params[w])}) but params['W{i - 1}'] has {prev[1]} columns "
                             f"(shape {prev})")


def predict(params, x, output="softmax"):
    """x (in,) or (N, in) -> (out,) or (N, out); `output` is 'identity' or 'softmax'."""
    if output not in OUTPUTS:
        raise ValueError(f"three_layer_net.predict: output must be 'identity' or 'softmax', got {output!r}")
    n = num_layers(params)
    require_keys("three_layer_net.predict", params, [f"{p}{i}" for i in range(1, n + 1) for p in "Wb"])
    x = jnp.asarray(x)
    require_ndim("three_layer_net.predict", "x", x, (1, 2))
    _check_chain("three_layer_net.predict", params, n)
    require_features("three_layer_net.predict", x, params["W1"], w_arg="params['W1']")
    a = x
    for i in range(1, n + 1):
        a = jnp.dot(a, params[f"W{i}"]) + params[f"b{i}"]
        if i < n:
            a = sigmoid(a)
    return OUTPUTS[output](a)
