"""Chapter 3: the forward pass of the example 3-layer network (section 3.4.3).

    python scripts/ch03_forward.py

Uses the hand-set weights of the book's `init_network()` and x = [1.0, 0.5]; prints every
layer's activations and the output, [0.31682708 0.69627909] with the identity output.
It computes in float64, as the book's NumPy code does.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax
import jax.numpy as jnp
import numpy as np

from fnnet.functions import sigmoid
from fnnet.models import three_layer_net


def main(argv=None) -> np.ndarray:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--x", type=float, nargs=2, default=[1.0, 0.5], help="the input (two numbers)")
    args = ap.parse_args(argv)
    with jax.enable_x64(True):
        return forward(args.x)


def forward(x) -> np.ndarray:
    """Print A1, Z1, A2, Z2 and the outputs for input x; return the identity output."""
    params = three_layer_net.init_example()
    x = jnp.array(x)
    a = x
    for i in range(1, three_layer_net.num_layers(params)):
        a = jnp.dot(a, params[f"W{i}"]) + params[f"b{i}"]
        print(f"A{i} = {np.asarray(a)}")
        a = sigmoid(a)
        print(f"Z{i} = {np.asarray(a)}")
    y = np.asarray(three_layer_net.predict(params, x, output="identity"))
    print("identity output:", y)
    print("softmax output: ", np.asarray(three_layer_net.predict(params, x, output="softmax")))
    return y


if __name__ == "__main__":
    main()
