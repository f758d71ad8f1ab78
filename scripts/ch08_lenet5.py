"""Chapter 8: LeNet-5, built from the book's layers with `serial`, trained with Adam.

    python scripts/ch08_lenet5.py [--epochs 5] [--seed 0] [--data-dir DIR]
    fnnet train --model scripts/ch08_lenet5.py:lenet5 --optimizer adam --epochs 5
    python scripts/ch08_lenet5.py --figure docs/figures/ch08_lenet5.png

LeCun et al.'s network (book section 7.7), with ReLU and max pooling as the book describes its
modern form: conv 6@5x5 (pad 2) -> pool 2 -> conv 16@5x5 -> pool 2 -> Affine 120 -> 84 -> 10.
Importing this file only builds `lenet5` (a `fnnet.layers.Block`); running it prints the network's
summary, trains it with `fnnet.training.fit` (Adam, lr 0.001, batch 100, seed 0) and prints the
test accuracy and the training time. With --figure it trains nothing and draws the shape of every
layer's output instead (the chapter page's figure).

MNIST comes from --data-dir or $FNNET_DATA_DIR (nothing is downloaded). Only when MNIST is
missing does it fall back to scikit-learn's 8x8 digits, upscaled to 28x28, and says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fnnet.layers import Affine, Convolution, Pooling, Relu, serial, summary

INPUT_SHAPE = (1, 28, 28)

lenet5 = serial(
    Convolution(6, 5, pad=2), Relu(), Pooling(2),   # (6, 28, 28) -> (6, 14, 14)
    Convolution(16, 5), Relu(), Pooling(2),         # (16, 10, 10) -> (16, 5, 5)
    Affine(120), Relu(),
    Affine(84), Relu(),
    Affine(10),
)


def upscale(x, size=28):
    """(N, 1, h, w) images resized to (N, 1, size, size), bilinearly."""
    import jax
    import numpy as np

    return np.asarray(jax.image.resize(x, x.shape[:2] + (size, size), method="linear"))


def load_data(data_dir=None):
    """(name, ((x_train, t_train), (x_test, t_test))) with x (N, 1, 28, 28): MNIST, or the digits
    upscaled to 28x28 when MNIST is not found."""
    from fnnet.datasets import MNISTNotFoundError, load_digits, load_mnist

    try:
        return "mnist", load_mnist(normalize=True, flatten=False, data_dir=data_dir, download=False)
    except MNISTNotFoundError:
        print("MNIST not found (set FNNET_DATA_DIR or --data-dir); using the 8x8 digits upscaled to 28x28")
    (x, t), (xt, tt) = load_digits(normalize=True, flatten=False)
    return "digits", ((upscale(x), t), (upscale(xt), tt))


def shapes(net=lenet5, input_shape=INPUT_SHAPE) -> list:
    """[(layer name, output shape)] of every layer of `net` but the ReLUs, which keep the shape."""
    import jax

    out, shape = [("input", tuple(input_shape))], tuple(input_shape)
    for layer in net.layers:
        shape, _, _ = layer.init(jax.random.PRNGKey(0), shape)
        if layer.name != "Relu":
            out.append((layer.name, tuple(shape)))
    return out


def draw(path, net=lenet5, input_shape=INPUT_SHAPE) -> list:
    """The output of every layer as a block: C maps of H x W (the maps drawn as a stack, their side
    to scale), or a vector of n values (a bar, its height growing with n). Returns `shapes(net)`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fnnet.plots import save_figure

    layers = shapes(net, input_shape)
    fig, ax = plt.subplots(figsize=(11, 3.0))
    scale = 1.8 / max(s[-1] for _, s in layers if len(s) == 3)
    for i, (name, shape) in enumerate(layers):
        x = 2.4 * i
        if len(shape) == 3:
            c, h, w = shape
            side, depth = h * scale, min(c, 6)
            for k in reversed(range(depth)):
                corner = (x - side / 2 + 0.07 * k, -side / 2 + 0.07 * k)
                ax.add_patch(plt.Rectangle(corner, side * w / h, side, facecolor="#c5cae9",
                                           edgecolor="#3949ab", lw=0.8))
            label = f"{c} x {h} x {w}"
        else:
            height = 0.3 + 0.015 * shape[0]
            ax.add_patch(plt.Rectangle((x - 0.08, -height / 2), 0.16, height, facecolor="#ffe0b2",
                                       edgecolor="#ef6c00", lw=0.8))
            label = str(shape[0])
        ax.text(x, -1.3, label, ha="center", va="top", fontsize=9)
        ax.text(x, 1.4, name.replace(" ", "\n", 1), ha="center", va="bottom", fontsize=8)
    ax.set_xlim(-1.2, 2.4 * (len(layers) - 1) + 1.2)
    ax.set_ylim(-1.8, 2.1)
    ax.set_aspect("equal")
    ax.axis("off")
    save_figure(fig, path, colors=32, bbox_inches="tight")
    print(f"saved {path}")
    return layers


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: $FNNET_DATA_DIR)")
    p.add_argument("--figure", help="train nothing; draw every layer's output shape to this PNG")
    args = p.parse_args(argv)
    if args.figure:
        return draw(args.figure)

    from fnnet.optimizers import adam
    from fnnet.training import evaluate, fit

    print(summary(lenet5, INPUT_SHAPE))
    name, (train, test) = load_data(args.data_dir)
    print(f"{name}: {len(train[0])} training and {len(test[0])} test images")
    model = lenet5.model(INPUT_SHAPE)
    start = time.perf_counter()
    result = fit(model, adam(args.lr), train, test, epochs=args.epochs, batch_size=args.batch_size,
                 seed=args.seed)
    seconds = time.perf_counter() - start
    acc = evaluate(model, result.params, result.state, *test)
    print(f"LeNet-5 on {name}: test accuracy {acc:.4f} after {args.epochs} epochs "
          f"({seconds:.0f} s, including compilation)")
    return acc


if __name__ == "__main__":
    main()
