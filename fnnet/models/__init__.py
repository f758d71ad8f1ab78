"""Networks as pure functions of parameter dicts.

One module per network of the book, in the book's order: `three_layer_net` (chapter 3, inference
only), `simple_net` (chapter 4's simpleNet), `two_layer_net` (chapters 4 and 5),
`multi_layer_net` (chapter 6), `simple_convnet` (chapter 7) and `deep_convnet` (chapter 8). Each
keeps the book's functions (`init`, `predict`, `loss`, and for the trainable ones `accuracy`,
`gradient`, ...), with params named as in the book.

The trainable networks (`MODEL_NAMES`) are `serial` stacks of the book's layers
(`fnnet.layers.compose`) and offer `model(input_shape, output_size, **config) -> Model`; a
network of your own becomes one by `sequential(net, input_shape)` (or `net.model(input_shape)`).

The `Model` contract, all that `fnnet.training.fit`, `evaluate`, the experiments and the CLI use:

    params, state = m.init(key)                                       # dicts of arrays
    scores, state = m.apply(params, state, x, train=False, key=None)  # x (N,) + m.input_shape
    loss, grads, state = m.loss_and_grad(params, state, x, t, key)   # training mode, by hand
    m.input_shape                                                     # per sample: (1, 28, 28), (784,)

- `state` holds what gradients do not train (Batch Norm running statistics), `{}` if nothing;
  functions return the new state and never keep one.
- `key` is a `jax.random` key for what is random in training (Dropout); `loss_and_grad` gets a
  fresh one every step, `apply` with train=False needs none.
- `grads` has the keys of params; `t` is labels (N,) or one-hot (N, classes); scores are
  (N, classes) before softmax. Everything is jit-compatible: no Python side effects.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import NamedTuple

from fnnet._docs import document_fields

__all__ = ["Model", "MODEL_NAMES", "get_model", "sequential", "net_loss_and_grad", "batched_accuracy"]


class Model(NamedTuple):
    """A network as the pure functions that training, evaluation and the CLI call (the contract
    in this module's docstring); `get_model`, each module's `model(...)` and `sequential` build one."""

    init: Callable
    apply: Callable
    loss_and_grad: Callable
    input_shape: tuple


document_fields(
    Model,
    init="init(key) -> (params, state): fresh parameters and state, dicts of arrays.",
    apply="apply(params, state, x, train=False, key=None) -> (scores (N, classes), state).",
    loss_and_grad="loss_and_grad(params, state, x, t, key) -> (loss, grads, state), in training mode.",
    input_shape="The shape of one sample, without N: (784,), (1, 28, 28).",
)


MODEL_NAMES = ("two_layer_net", "multi_layer_net", "simple_convnet", "deep_convnet")


def get_model(name: str, input_shape: tuple, output_size: int, **config) -> Model:
    """Build the `Model` of `fnnet.models.<name>` for data of `input_shape` per sample."""
    if name not in MODEL_NAMES:
        raise ValueError(f"get_model: unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    module = importlib.import_module(f"fnnet.models.{name}")
    return module.model(tuple(input_shape), output_size, **config)


def sequential(net, input_shape) -> Model:
    """The `Model` of a layer stack `net` (a `fnnet.layers.Block`, e.g. from `serial`) for inputs of
    `input_shape` per sample: its last layer's scores plus SoftmaxWithLoss, with the hand-written
    backward pass. The shapes are checked now: a layer that does not fit raises here, and so does
    an output that is not one score per class."""
    import jax

    from fnnet.layers.compose import Block, ShapeError, input_shape_of

    if not isinstance(net, Block):
        raise TypeError(f"sequential: net must be a layer Block such as serial(...), "
                        f"got {type(net).__name__}")
    input_shape = input_shape_of(input_shape, fn="sequential")
    out = {}

    def shapes(key):
        out["shape"], params, state = net.init(key, input_shape)
        return params, state

    try:
        jax.eval_shape(shapes, jax.random.PRNGKey(0))
    except ShapeError as e:  # raised while tracing: drop the note JAX appends
        raise ShapeError(str(e).splitlines()[0], e.detail) from None
    if len(out["shape"]) != 1:
        raise ValueError(f"sequential: {net.name} gives output {out['shape']} per sample for input "
                         f"{input_shape}; a classifier ends in one score per class, e.g. Affine(10)")

    def init(key):
        _, params, state = net.init(key, input_shape)
        return params, state

    def apply(params, state, x, train=False, key=None):
        y, _, state = net.forward(params, x.reshape((x.shape[0],) + input_shape), state, train=train, key=key)
        return y, state

    def loss_and_grad(params, state, x, t, key=None):
        return net_loss_and_grad(net, params, state, x.reshape((x.shape[0],) + input_shape), t, key=key)

    return Model(init, apply, loss_and_grad, input_shape)


def net_loss_and_grad(net, params, state, x, t, *, train=True, key=None):
    """(loss, grads, new state) of a layer stack with SoftmaxWithLoss on top, by hand: `net.forward`,
    the loss, then `net.backward` from dout = 1 (the book's TwoLayerNet.gradient for any net)."""
    from fnnet.layers.core import softmax_with_loss

    y, cache, state = net.forward(params, x, state, train=train, key=key)
    value, c = softmax_with_loss.forward({}, y, t)
    dy, _ = softmax_with_loss.backward(c, 1.0)
    _, grads = net.backward(cache, dy)
    return value, grads, state


def batched_accuracy(predict: Callable, x, t, batch_size: int = 100) -> float:
    """Fraction of x whose argmax of `predict(x_batch)` equals t (labels or one-hot), computed
    batch by batch as the book does for its convolutional networks."""
    import jax.numpy as jnp

    x, t = jnp.asarray(x), jnp.asarray(t)
    if t.ndim == 2:
        t = jnp.argmax(t, axis=1)
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        y = predict(x[i : i + batch_size])
        correct += int(jnp.sum(jnp.argmax(y, axis=1) == t[i : i + batch_size]))
    return correct / x.shape[0]
