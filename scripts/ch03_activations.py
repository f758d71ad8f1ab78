"""Chapter 3: the activation functions, plotted as in the book's figures 3-6 to 3-9.

    python scripts/ch03_activations.py [--out runs/ch03_activations]
    python scripts/ch03_activations.py --figure docs/figures/ch03_activations.png

Saves step_function.png (figure 3-6), sigmoid.png (3-7), step_vs_sigmoid.png (3-8),
relu.png (3-9) and tanh.png, all over x in [-5, 5) in steps of 0.1. With --figure it saves only
the chapter page's figure instead: step, sigmoid and ReLU side by side.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fnnet.functions import relu, sigmoid, step_function, tanh
from fnnet.plots import save_figure as save_png


def plot(path, x, curves, ylim, title) -> None:
    """One figure with `curves` = [(y, label, style)] against x."""
    fig, ax = plt.subplots(figsize=(5, 4))
    for y, label, style in curves:
        ax.plot(x, y, style, label=label)
    ax.set_ylim(*ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    save_png(fig, path)
    print(f"saved {path}")


def page_figure(path, x) -> None:
    """Step, sigmoid and ReLU side by side: the chapter page's figure."""
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.6))
    for ax, (name, y, ylim) in zip(axes, (("step function", step_function(x), (-0.1, 1.1)),
                                          ("sigmoid", sigmoid(x), (-0.1, 1.1)),
                                          ("ReLU", relu(x), (-0.5, 5.0))), strict=True):
        ax.plot(x, y)
        ax.set_ylim(*ylim)
        ax.set_title(name)
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path, colors=32)
    print(f"saved {path}")


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join("runs", "ch03_activations"), help="folder for the PNGs")
    ap.add_argument("--figure", help="save only the chapter page's figure, to this path")
    args = ap.parse_args(argv)
    x = jnp.arange(-5.0, 5.0, 0.1)
    if args.figure:
        page_figure(args.figure, x)
        return [args.figure]
    os.makedirs(args.out, exist_ok=True)

    figures = [
        ("step_function.png", [(step_function(x), "step", "-")], (-0.1, 1.1), "step function (figure 3-6)"),
        ("sigmoid.png", [(sigmoid(x), "sigmoid", "-")], (-0.1, 1.1), "sigmoid (figure 3-7)"),
        ("step_vs_sigmoid.png", [(sigmoid(x), "sigmoid", "-"), (step_function(x), "step", "k--")],
         (-0.1, 1.1), "sigmoid and step (figure 3-8)"),
        ("relu.png", [(relu(x), "ReLU", "-")], (-1.0, 5.5), "ReLU (figure 3-9)"),
        ("tanh.png", [(tanh(x), "tanh", "-")], (-1.1, 1.1), "tanh"),
    ]
    paths = []
    for name, curves, ylim, title in figures:
        paths.append(os.path.join(args.out, name))
        plot(paths[-1], x, curves, ylim, title)
    return paths


if __name__ == "__main__":
    main()
