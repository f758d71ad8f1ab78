"""Chapter 3: the forward pass of the example 3-layer network (section 3.4.3).

    python scripts/ch03_forward.py
    python scripts/ch03_forward.py --figure docs/figures/ch03_forward.png

Uses the hand-set weights of the book's `init_network()` and x = [1.0, 0.5]; prints every
layer's activations and the output, [0.31682708 0.69627909] with the identity output.
It computes in float64, as the book's NumPy code does. --figure also draws the network with
every neuron's weighted sum a and activation z (the chapter page's figure).
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
    ap.add_argument("--figure", help="also draw the network with its values, to this PNG")
    args = ap.parse_args(argv)
    with jax.enable_x64(True):
        y = forward(args.x)
        if args.figure:
            draw(args.figure, args.x)
    return y


def draw(path, x) -> None:
    """The 2-3-2-2 network as circles and lines: the input, each hidden neuron's a and z = sigmoid(a),
    and the identity output."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fnnet.plots import save_figure

    params = three_layer_net.init_example()
    z = jnp.array(x)
    columns = [[f"x{j + 1}\n{float(v):.2f}" for j, v in enumerate(z)]]
    n = three_layer_net.num_layers(params)
    for i in range(1, n + 1):
        a = jnp.dot(z, params[f"W{i}"]) + params[f"b{i}"]
        z = sigmoid(a) if i < n else a
        if i < n:
            columns.append([f"a {float(u):.3f}\nz {float(v):.3f}" for u, v in zip(a, z, strict=True)])
        else:
            columns.append([f"y{j + 1}\n{float(v):.3f}" for j, v in enumerate(z)])
    titles = (["input x"] + [f"layer {i}\nZ{i} = sigmoid(A{i})" for i in range(1, n)]
              + [f"output\ny = A{n} (identity)"])

    fig, ax = plt.subplots(figsize=(8, 3.6))
    ys = [[(len(col) - 1) / 2 - k for k in range(len(col))] for col in columns]
    for c in range(len(columns) - 1):
        for y0 in ys[c]:
            for y1 in ys[c + 1]:
                ax.plot([2.6 * c, 2.6 * (c + 1)], [y0, y1], color="0.7", lw=0.8, zorder=1)
    for c, (col, title) in enumerate(zip(columns, titles, strict=True)):
        for label, y in zip(col, ys[c], strict=True):
            ax.add_patch(plt.Circle((2.6 * c, y), 0.42, facecolor="#e8eaf6", edgecolor="#3949ab", zorder=2))
            ax.text(2.6 * c, y, label, ha="center", va="center", fontsize=8, zorder=3)
        ax.text(2.6 * c, 1.8, title, ha="center", va="center", fontsize=9)
    ax.set_xlim(-0.7, 2.6 * (len(columns) - 1) + 0.7)
    ax.set_ylim(-1.6, 2.2)
    ax.set_aspect("equal")
    ax.axis("off")
    save_figure(fig, path, colors=32, bbox_inches="tight")
    print(f"saved {path}")


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
