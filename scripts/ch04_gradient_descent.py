"""Chapter 4: the gradient of f(x0, x1) = x0^2 + x1^2 and gradient descent on it.

    python scripts/ch04_gradient_descent.py [--lr 0.1] [--steps 100] [--out runs/ch04_gradient_descent]

Everything is numerical differentiation (fnnet.gradient, central differences, h = 1e-4) in
float64, as in the book. Prints the gradient at (3, 4), (0, 2) and (3, 0) and the end point of
gradient descent from --init; saves gradient_field.png (the negative gradient as arrows,
figure 4-9) and gradient_descent.png (the path of x, figure 4-10).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fnnet.gradient import gradient_descent, numerical_gradient
from fnnet.plots import save_figure as save_png


def function_2(x):
    """x0^2 + x1^2 for x (2,)."""
    return x[0] ** 2 + x[1] ** 2


def gradient_field(path) -> None:
    """Figure 4-9: -grad f on a grid over [-2, 2.5)^2; every point differentiated numerically."""
    x0, x1 = np.meshgrid(np.arange(-2, 2.5, 0.25), np.arange(-2, 2.5, 0.25))
    points = np.stack([x0.ravel(), x1.ravel()], axis=1)
    # f is a sum over the points, so each point's entries of the gradient are that point's gradient.
    grad = numerical_gradient(lambda p: jnp.sum(p[:, 0] ** 2 + p[:, 1] ** 2), points)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.quiver(points[:, 0], points[:, 1], -grad[:, 0], -grad[:, 1], angles="xy", color="#666666")
    ax.set_xlim(-2, 2)
    ax.set_ylim(-2, 2)
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    ax.set_title("-grad of x0^2 + x1^2 (figure 4-9)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
    print(f"saved {path}")


def descent_path(path, init, lr, steps):
    """Figure 4-10: the points visited by gradient descent from `init`; returns the end point."""
    x, history = gradient_descent(function_2, np.array(init, dtype=np.float64), lr=lr, step_num=steps,
                                  return_history=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([-5, 5], [0, 0], "--b")
    ax.plot([0, 0], [-5, 5], "--b")
    ax.plot(history[:, 0], history[:, 1], "o", markersize=4)
    ax.set_xlim(-3.5, 3.5)
    ax.set_ylim(-4.5, 4.5)
    ax.set_xlabel("X0")
    ax.set_ylabel("X1")
    ax.set_title(f"gradient descent, lr={lr}, {steps} steps (figure 4-10)")
    fig.tight_layout()
    save_png(fig, path)
    print(f"saved {path}")
    return x


def main(argv=None) -> np.ndarray:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--init", type=float, nargs=2, default=[-3.0, 4.0])
    ap.add_argument("--out", default=os.path.join("runs", "ch04_gradient_descent"),
                    help="folder for the PNGs")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    for point in ([3.0, 4.0], [0.0, 2.0], [3.0, 0.0]):
        print(f"numerical gradient at {tuple(point)}: {numerical_gradient(function_2, np.array(point))}")
    gradient_field(os.path.join(args.out, "gradient_field.png"))
    x = descent_path(os.path.join(args.out, "gradient_descent.png"), args.init, args.lr, args.steps)
    print(f"gradient descent from {tuple(args.init)}, lr={args.lr}, {args.steps} steps: {x}")
    return x


if __name__ == "__main__":
    main()
