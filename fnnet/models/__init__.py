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
    m.net                                                             # its layer stack (a Block), or None

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

from fnnet.layers.compose import Model, net_loss_and_grad, sequential

__all__ = ["Model", "MODEL_NAMES", "get_model", "sequential", "net_loss_and_grad", "batched_accuracy"]


MODEL_NAMES = ("two_layer_net", "multi_layer_net", "simple_convnet", "deep_convnet")


def get_model(name: str, input_shape: tuple, output_size: int, **config) -> Model:
    """Build the `Model` of `fnnet.models.<name>` for data of `input_shape` per sample."""
    if name not in MODEL_NAMES:
        raise ValueError(f"get_model: unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    module = importlib.import_module(f"fnnet.models.{name}")
    return module.model(tuple(input_shape), output_size, **config)


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
