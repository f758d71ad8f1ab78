"""Chapter 8: LeNet-5, built from the book's layers with `serial`, trained with Adam.

    python scripts/ch08_lenet5.py [--epochs 5] [--seed 0] [--data-dir DIR]
    fnnet train --model scripts/ch08_lenet5.py:lenet5 --optimizer adam --epochs 5

LeCun et al.'s network (book section 7.7), with ReLU and max pooling as the book describes its
modern form: conv 6@5x5 (pad 2) -> pool 2 -> conv 16@5x5 -> pool 2 -> Affine 120 -> 84 -> 10.
Importing this file only builds `lenet5` (a `fnnet.layers.Block`); running it prints the network's
summary, trains it with `fnnet.training.fit` (Adam, lr 0.001, batch 100, seed 0) and prints the
test accuracy and the training time.

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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: $FNNET_DATA_DIR)")
    args = p.parse_args(argv)

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
