"""Networks as pure functions of parameter dicts.

Each model module keeps the book's functions (`init`, `predict`, `loss`, `accuracy`,
`gradient`, ...) and also offers `model(input_shape, output_size, **config) -> Model`, the
uniform view that `fnnet.training` and the CLI use:

    params, state = m.init(key)
    scores, state = m.apply(params, state, x, train=False, key=None)
    loss, grads, state = m.loss_and_grad(params, state, x, t, key)   # hand-written backprop

`state` holds what is not trained by gradients (Batch Norm running statistics); it is `{}`
for models without any. `input_shape` is the per-sample shape the model expects, e.g.
(784,) for the fully connected nets or (1, 28, 28) for the convolutional ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Model", "MODEL_NAMES", "get_model", "batched_accuracy"]


class Model(NamedTuple):
    init: Callable
    apply: Callable
    loss_and_grad: Callable
    input_shape: tuple


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
