"""Batch Normalization and Dropout (chapter 6) in the layer form of `fnnet.layers.core`.

    params, state = init_batch_norm(D)
    y, cache, state = batch_norm.forward(params, x, state, train=True)
    dx, grads = batch_norm.backward(cache, dy)            # grads {'gamma', 'beta'}

    y, cache = dropout.forward({}, x, key=key, ratio=0.5, train=True)
    dx, _ = dropout.backward(cache, dy)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from fnnet._checks import require_keys, shape_of
from fnnet.layers.core import Layer, _layer

__all__ = ["batch_norm", "dropout", "init_batch_norm", "BN_EPS"]

BN_EPS = 10e-7
"""The book's epsilon inside sqrt(var + eps) (written 10e-7 there, i.e. 1e-6)."""


def init_batch_norm(D: int, dtype=jnp.float32):
    """Params {'gamma': ones(D), 'beta': zeros(D)} and state {'running_mean', 'running_var'}
    of zeros(D), as the book starts them. D is the number of features per sample
    (C*H*W for 4-D input, which the book normalises per feature after reshaping to (N, -1))."""
    if isinstance(D, bool) or not isinstance(D, int) or D < 1:
        raise ValueError(f"init_batch_norm: D must be a positive integer, got {D!r}")
    params = {"gamma": jnp.ones(D, dtype), "beta": jnp.zeros(D, dtype)}
    state = {"running_mean": jnp.zeros(D, dtype), "running_var": jnp.zeros(D, dtype)}
    return params, state


def _check_bn(params, x, state):
    fn = "batch_norm.forward"
    require_keys(fn, params, ("gamma", "beta"))
    if state is None:
        raise ValueError(f"{fn}: state is required (running statistics); get one from init_batch_norm(D)")
    require_keys(fn, state, ("running_mean", "running_var"), arg="state")
    if jnp.ndim(x) < 2:
        raise ValueError(f"{fn}: x must be (N, D) or (N, C, H, W), got shape {shape_of(x)}")
    D = math.prod(shape_of(x)[1:])
    for arg, tree, k in (("params", params, "gamma"), ("params", params, "beta"),
                         ("state", state, "running_mean"), ("state", state, "running_var")):
        if shape_of(tree[k]) != (D,):
            raise ValueError(
                f"{fn}: {arg}[{k!r}] has shape {shape_of(tree[k])} but x (shape {shape_of(x)}) "
                f"has {D} features per sample; expected ({D},)"
            )


def _batch_norm_forward(params, x, state=None, train=True, momentum=0.9, eps=BN_EPS):
    """params {'gamma', 'beta'} (D,), x (N, D) or (N, C, H, W), state {'running_mean', 'running_var'}
    (D,) -> (y of x's shape, cache, new state)."""
    x = jnp.asarray(x)
    _check_bn(params, x, state)
    x2 = x.reshape(x.shape[0], -1)
    gamma, beta = params["gamma"], params["beta"]
    rm, rv = state["running_mean"], state["running_var"]
    if train:
        mu = x2.mean(axis=0)
        xc = x2 - mu
        var = jnp.mean(xc**2, axis=0)
        std = jnp.sqrt(var + eps)
        xn = xc / std
        new_state = {
            "running_mean": (momentum * rm + (1 - momentum) * mu).astype(rm.dtype),
            "running_var": (momentum * rv + (1 - momentum) * var).astype(rv.dtype),
        }
        cache = {"xn": xn, "xc": xc, "std": std, "gamma": gamma}
    else:
        std = jnp.sqrt(rv + eps)
        xn = (x2 - rm) / std
        new_state = state
        cache = {"xn": xn, "std": std, "gamma": gamma}
    y = gamma * xn + beta
    return y.reshape(x.shape), cache, new_state


def _batch_norm_backward(cache, dout):
    """cache, dout (N, D) or (N, C, H, W) -> (dx of dout's shape, {'gamma': (D,), 'beta': (D,)})."""
    dout2 = dout.reshape(dout.shape[0], -1)
    xn, std, gamma = cache["xn"], cache["std"], cache["gamma"]
    dbeta = dout2.sum(axis=0)
    dgamma = jnp.sum(xn * dout2, axis=0)
    dxn = gamma * dout2
    if "xc" in cache:
        xc = cache["xc"]
        n = xc.shape[0]
        dxc = dxn / std
        dstd = -jnp.sum((dxn * xc) / (std * std), axis=0)
        dvar = 0.5 * dstd / std
        dxc = dxc + (2.0 / n) * xc * dvar
        dmu = jnp.sum(dxc, axis=0)
        dx = dxc - dmu / n
    else:
        dx = dxn / std
    return dx.reshape(dout.shape), {"gamma": dgamma, "beta": dbeta}


@_layer(_batch_norm_forward, _batch_norm_backward)
class batch_norm(Layer):
    """The Batch Normalization layer of chapter 6: y = gamma * (x - mean) / sqrt(var + eps) + beta,
    per feature.

        y, cache, new_state = batch_norm.forward(params, x, state, train=True, momentum=0.9, eps=10e-7)
        dx, grads = batch_norm.backward(cache, dy)    # grads {'gamma', 'beta'}

    Shapes: params {'gamma', 'beta'} and state {'running_mean', 'running_var'} of shape (D,)
    (`init_batch_norm(D)`); x (N, D), or (N, C, H, W) reshaped to (N, C*H*W) as in the book;
    y and dx have x's shape.
    - train=True: mean and (biased) variance of the batch; new_state is
      momentum * running + (1 - momentum) * batch statistic. With N = 1 every output is beta
      (x - mean = 0): valid but degenerate, so train with batches of 2 or more.
    - train=False: uses the running statistics; new_state is state, unchanged.
    backward is the book's BatchNormalization.__backward (through xc, std, var, mean), or
    dx = gamma * dy / sqrt(running_var + eps) for a cache from inference mode.
    Cache: {'xn': (N, D) normalised x, 'xc': (N, D) x - mean, 'std': (D,), 'gamma': (D,)} in
    training; {'xn', 'std', 'gamma'} in inference (std from the running variance).
    """


def _dropout_forward(params, x, key=None, ratio=0.5, train=True):
    """x (N, ...) -> (y of x's shape, cache {'mask'} in training or {'scale'} in inference)."""
    x = jnp.asarray(x)
    fn = "dropout.forward"
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio < 1.0:
        raise ValueError(f"{fn}: ratio must be a number in [0, 1), got {ratio!r}")
    if not train:
        scale = jnp.asarray(1.0 - ratio, x.dtype)
        return x * scale, {"scale": scale}
    if key is None:
        raise ValueError(f"{fn}: training mode needs a PRNG key (key=jax.random.PRNGKey(...)), got None")
    mask = jax.random.uniform(key, x.shape) > ratio
    return jnp.where(mask, x, 0), {"mask": mask}


def _dropout_backward(cache, dy):
    """cache, dy (N, ...) -> (dy * mask or dy * (1 - ratio), of dy's shape; {})."""
    if "mask" in cache:
        return jnp.where(cache["mask"], dy, 0), {}
    return dy * cache["scale"], {}


@_layer(_dropout_forward, _dropout_backward)
class dropout(Layer):
    """The Dropout layer of chapter 6, with the book's semantics (no rescaling while training).

        y, cache = dropout.forward({}, x, key=key, ratio=0.5, train=True)
        dx, grads = dropout.backward(cache, dy)

    Shapes: x of any shape, e.g. (N, D) or (N, C, H, W); y and dx have x's shape.
    - train=True: each element is kept where uniform(key, x.shape) > ratio and zeroed otherwise;
      kept values are NOT rescaled. The key is required; the same key gives the same mask.
    - train=False: no key needed; y = x * (1 - ratio), the expected value of the training output.
    backward: dx = dy * mask (training) or dy * (1 - ratio) (inference). No params: grads is {}.
    Cache: {'mask': boolean, x's shape} in training (the book's `self.mask`); {'scale': 1 - ratio}
    in inference.
    """
