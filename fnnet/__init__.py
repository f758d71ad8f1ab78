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

__version__ = "0.1.0"
