"""fnnet: "Deep Learning from Scratch" as pure JAX functions with hand-written backward passes.

Modules, in the order of the book:

- `fnnet.gates`: perceptrons (AND, NAND, OR, XOR).
- `fnnet.functions`: activations, softmax and losses.
- `fnnet.gradient`: numerical differentiation and gradient descent.
- `fnnet.layers`: forward/backward pairs with explicit caches (affine, relu, ..., convolution, pooling,
  batch_norm, dropout).
- `fnnet.models`: three_layer_net, simple_net, two_layer_net, multi_layer_net, simple_convnet,
  deep_convnet.
- `fnnet.optimizers`: stateless SGD, Momentum, Nesterov, AdaGrad, RMSprop and Adam.
- `fnnet.init`: weight initialisation scales.
- `fnnet.datasets`: load_mnist, load_digits, mini-batches.
- `fnnet.training`: the jit-compiled training loop with checkpoints; `fnnet.cli` is the `fnnet` command.
- `fnnet.io`: parameters to and from `.npz` and the book's pickles.
"""

import importlib

__version__ = "0.1.0"

# Imported on first use (`fnnet.layers` after `import fnnet`), so that `import fnnet` stays light.
_SUBMODULES = ("gates", "functions", "gradient", "layers", "models", "optimizers", "schedules",
               "regularization", "init", "datasets", "training", "gradcheck", "io", "augment",
               "distributed", "inference", "plots")


def __getattr__(name):
    """fnnet.<submodule>, imported when first asked for."""
    if name in _SUBMODULES:
        return importlib.import_module(f"fnnet.{name}")
    raise AttributeError(f"module 'fnnet' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
