"""MultiLayerNet (chapter 6, the book's MultiLayerNetExtend): fully connected, any depth.

    [Affine - (BatchNorm) - ReLU|Sigmoid - (Dropout)] x len(hidden_size_list) - Affine - SoftmaxWithLoss

params = {'W1', 'b1', ..., 'WL', 'bL'} (L = len(hidden_size_list) + 1), plus 'gamma1', 'beta1', ...,
'gamma(L-1)', 'beta(L-1)' with Batch Norm. state = {'running_mean1', 'running_var1', ...} with
Batch Norm, {} without. Whether Batch Norm is on is read from params ('gamma1' present); the
activation and dropout settings are keyword arguments (`**config`) of each function, as they
hold no arrays. The book's functions take `weight_decay_lambda`: it adds
fnnet.regularization.l2_penalty (0.5*lambda*sum(W**2) over W1..WL) to the loss and applies
fnnet.regularization.weight_decay (lambda*W) to their gradients. `model(...)` has no weight
decay of its own: a training run adds it to the optimizer,
`optimizers.chain(opt, regularization.weight_decay(lam))`. `t` may be integer labels (N,) or
one-hot (N, out).

Every function taking `train` returns the model state next to its result: in training mode
Batch Norm uses batch statistics and returns updated running statistics; in inference mode
(train=False, the default except for gradients) it uses them and returns state unchanged.
Dropout in training mode needs a PRNG key, split into one key per Dropout layer (`serial`).

The network is `net(hidden_size_list, output_size, ...)`, a `serial` stack of the book's layers;
the functions below are thin wrappers around it.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from fnnet import gradient as _gradient
from fnnet import regularization
from fnnet._checks import check_targets, require_features, require_keys, shape_of
from fnnet.layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid, serial, softmax_with_loss
from fnnet.models import Model, net_loss_and_grad, sequential

__all__ = ["init", "predict", "loss", "accuracy", "gradient", "loss_and_gradient", "numerical_gradient",
           "model", "net", "ACTIVATIONS"]

ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid}


@functools.lru_cache(maxsize=64)
def net(hidden_size_list, output_size, activation="relu", weight_init_std="relu", use_batchnorm=False,
        use_dropout=False, dropout_ratio=0.5, dtype=jnp.float32):
    """serial([Affine - (BatchNormalization) - Relu|Sigmoid - (Dropout)] per hidden size, Affine):
    params W1, b1, (gamma1, beta1), ...; hidden_size_list a tuple."""
    layers = []
    for h in hidden_size_list:
        layers.append(Affine(h, weight_init_std, dtype))
        if use_batchnorm:
            layers.append(BatchNormalization(dtype=dtype))
        layers.append(ACTIVATIONS[activation]())
        if use_dropout:
            layers.append(Dropout(dropout_ratio))
    return serial(*layers, Affine(output_size, weight_init_std, dtype))


def _check_config(fn, activation, use_dropout, dropout_ratio):
    if activation not in ACTIVATIONS:
        raise ValueError(f"{fn}: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if not isinstance(use_dropout, bool):
        raise TypeError(f"{fn}: use_dropout must be True or False, got {use_dropout!r}")
    if isinstance(dropout_ratio, bool) or not isinstance(dropout_ratio, numbers.Real) \
            or not 0.0 <= dropout_ratio < 1.0:
        raise ValueError(f"{fn}: dropout_ratio must be a number in [0, 1), got {dropout_ratio!r}")


def _check_lambda(fn, lam):
    if isinstance(lam, jax.core.Tracer):
        return
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"{fn}: weight_decay_lambda must be a finite number >= 0, got {lam!r}")


def init(key, input_size, hidden_size_list, output_size, activation="relu", weight_init_std="relu",
         use_batchnorm=False, use_dropout=False, dropout_ratio=0.5, dtype=jnp.float32):
    """(params, state): W{i} ~ weight_std(weight_init_std, fan_in) * N(0, 1), b{i} = 0, and with
    Batch Norm gamma{i} = 1, beta{i} = 0 and zero running statistics (as the book starts them)."""
    fn = "multi_layer_net.init"
    _check_config(fn, activation, use_dropout, dropout_ratio)
    sizes = [input_size, *hidden_size_list, output_size]
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"{fn}: layer sizes must be positive integers, got {sizes}")
    hidden = tuple(int(h) for h in sizes[1:-1])
    stack = net(hidden, int(sizes[-1]), activation, weight_init_std, use_batchnorm, use_dropout,
                dropout_ratio, dtype)
    return stack.init(key, (int(input_size),))[1:]


def _layout(fn, params, state, x):
    """Number of affine layers L and whether Batch Norm is used; checks keys and shapes."""
    if not isinstance(params, dict):
        raise TypeError(f"{fn}: params must be a dict of arrays, got {type(params).__name__}")
    n = 0
    while f"W{n + 1}" in params:
        n += 1
    require_keys(fn, params, ["W1"] + [f"b{i}" for i in range(1, n + 1)])
    bn = "gamma1" in params
    if bn:
        require_keys(fn, params, [k for i in range(1, n) for k in (f"gamma{i}", f"beta{i}")])
        if not isinstance(state, dict):
            raise TypeError(f"{fn}: state must be a dict of arrays, got {type(state).__name__}")
        require_keys(fn, state, [k for i in range(1, n) for k in (f"running_mean{i}", f"running_var{i}")],
                     arg="state")
    if jnp.ndim(x) < 2:
        raise ValueError(f"{fn}: x must be a batch (N, features), got shape {shape_of(x)}")
    require_features(fn, x, params["W1"], w_arg="params['W1']")
    for i in range(1, n + 1):
        w = shape_of(params[f"W{i}"])
        if len(w) != 2 or (i > 1 and w[0] != shape_of(params[f"W{i - 1}"])[1]):
            raise ValueError(f"{fn}: params['W{i}'] has shape {w}, which does not follow "
                             f"params['W{i - 1}'] {shape_of(params[f'W{i - 1}'])}")
        names = [f"b{i}"] + ([f"gamma{i}", f"beta{i}"] if bn and i < n else [])
        for k in names:
            if shape_of(params[k]) != (w[1],):
                raise ValueError(f"{fn}: params['{k}'] must have shape ({w[1]},) to match "
                                 f"params['W{i}'] {w}, got {shape_of(params[k])}")
    return n, bn


def _net_of(params, n, bn, activation, use_dropout, dropout_ratio):
    """The net that params (already checked by `_layout`) belong to."""
    sizes = tuple(shape_of(params[f"W{i}"])[1] for i in range(1, n + 1))
    return net(sizes[:-1], sizes[-1], activation, "relu", bn, use_dropout, dropout_ratio)


def _forward(params, state, x, train, key, activation, use_dropout, dropout_ratio, n, bn):
    """(scores, new state)."""
    y, _, new_state = _net_of(params, n, bn, activation, use_dropout, dropout_ratio).forward(
        params, x, state, train=train, key=key)
    return y, new_state


def _prepare(fn, params, state, x, train, key, activation, use_dropout, dropout_ratio):
    _check_config(fn, activation, use_dropout, dropout_ratio)
    x = jnp.asarray(x)
    n, bn = _layout(fn, params, state, x)
    if train and use_dropout and key is None:
        raise ValueError(f"{fn}: training with dropout needs a PRNG key (key=jax.random.PRNGKey(...))")
    return x, n, bn


def predict(params, state, x, train=False, key=None, *, activation="relu", use_dropout=False,
            dropout_ratio=0.5):
    """(scores (N, out) before softmax, new state) for x (N, input_size)."""
    x, n, bn = _prepare("multi_layer_net.predict", params, state, x, train, key, activation, use_dropout,
                        dropout_ratio)
    return _forward(params, state, x, train, key, activation, use_dropout, dropout_ratio, n, bn)


def loss(params, state, x, t, weight_decay_lambda=0.0, train=False, key=None, *, activation="relu",
         use_dropout=False, dropout_ratio=0.5):
    """(cross-entropy + 0.5*lambda*sum(W**2), new state)."""
    fn = "multi_layer_net.loss"
    _check_lambda(fn, weight_decay_lambda)
    x, n, bn = _prepare(fn, params, state, x, train, key, activation, use_dropout, dropout_ratio)
    t = jnp.asarray(t)
    check_targets(fn, t, x.shape[0], shape_of(params[f"W{n}"])[1])
    y, new_state = _forward(params, state, x, train, key, activation, use_dropout, dropout_ratio, n, bn)
    value = softmax_with_loss.forward({}, y, t)[0] + regularization.l2_penalty(params, weight_decay_lambda)
    return value, new_state


def accuracy(params, state, x, t, *, activation="relu", use_dropout=False, dropout_ratio=0.5):
    """Fraction of argmax(scores) == labels, in inference mode."""
    y, _ = predict(params, state, x, activation=activation, use_dropout=use_dropout,
                   dropout_ratio=dropout_ratio)
    t = jnp.asarray(t)
    check_targets("multi_layer_net.accuracy", t, y.shape[0], y.shape[1])
    if t.ndim == 2:
        t = jnp.argmax(t, axis=1)
    return jnp.mean(jnp.argmax(y, axis=1) == t)


def loss_and_gradient(params, state, x, t, weight_decay_lambda=0.0, train=True, key=None, *,
                      activation="relu", use_dropout=False, dropout_ratio=0.5):
    """(loss, grads with the keys of params, new state) by hand-written backprop; the weight-decay
    term and its gradient come from fnnet.regularization."""
    fn = "multi_layer_net.gradient"
    _check_lambda(fn, weight_decay_lambda)
    x, n, bn = _prepare(fn, params, state, x, train, key, activation, use_dropout, dropout_ratio)
    t = jnp.asarray(t)
    check_targets(fn, t, x.shape[0], shape_of(params[f"W{n}"])[1])
    stack = _net_of(params, n, bn, activation, use_dropout, dropout_ratio)
    value, grads, new_state = net_loss_and_grad(stack, params, state, x, t, train=train, key=key)
    value = value + regularization.l2_penalty(params, weight_decay_lambda)
    grads = regularization.weight_decay(weight_decay_lambda)({k: grads[k] for k in params}, params)
    return value, grads, new_state


def gradient(params, state, x, t, weight_decay_lambda=0.0, train=True, key=None, **config):
    """(grads, new state) by backprop, in training mode as in the book."""
    _, grads, new_state = loss_and_gradient(params, state, x, t, weight_decay_lambda, train, key, **config)
    return grads, new_state


def numerical_gradient(params, state, x, t, weight_decay_lambda=0.0, train=True, key=None, **config):
    """Central differences of `loss` (training mode, same key) for every parameter; slow, for checks.

    The params are raveled into one vector so that a single function is compiled."""
    flat, unravel = ravel_pytree(params)
    g = _gradient.numerical_gradient(
        lambda v: loss(unravel(v), state, x, t, weight_decay_lambda, train, key, **config)[0], flat
    )
    return unravel(g)


def model(input_shape, output_size, *, hidden_size_list=(100, 100, 100, 100, 100), activation="relu",
          weight_init_std="relu", use_batchnorm=False, use_dropout=False, dropout_ratio=0.5,
          **unknown) -> Model:
    """The uniform `Model` view used by fnnet.training and the CLI (x is flattened per sample).

    Its loss is the data loss alone: weight decay belongs to the optimizer,
    `optimizers.chain(opt, regularization.weight_decay(lam))`."""
    fn = "multi_layer_net.model"
    if "weight_decay_lambda" in unknown:
        raise TypeError(f"{fn}: weight_decay_lambda is not a model setting; add weight decay to the "
                        f"optimizer with optimizers.chain(opt, fnnet.regularization.weight_decay(lam))")
    if unknown:
        raise TypeError(f"{fn}: unexpected keyword argument(s) {', '.join(sorted(unknown))}")
    _check_config(fn, activation, use_dropout, dropout_ratio)
    stack = net(tuple(hidden_size_list), output_size, activation, weight_init_std, use_batchnorm, use_dropout,
                dropout_ratio)
    return sequential(stack, (math.prod(input_shape),))
