"""Chapter 6: optimizer paths on f(x, y) = x**2 / 20 + y**2 (the book's figure 6-8).

    python scripts/ch06_optimizer_compare_naive.py [--out runs/ch06] [--steps 30]

Every optimizer starts at (-7, 2) and takes `--steps` steps with the book's learning rates
(SGD 0.95, Momentum 0.1, AdaGrad 1.5, Adam 0.3; Nesterov 0.1 and RMSprop 0.3 as extras).
The gradient comes from jax.grad and the steps from fnnet.optimizers inside one lax.scan.
Saves optimizer_paths.png (contours with each path) and prints the final points.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from ch06_common import save_png

from fnnet import optimizers

LEARNING_RATES = {"sgd": 0.95, "momentum": 0.1, "nesterov": 0.1, "adagrad": 1.5, "rmsprop": 0.3, "adam": 0.3}
TITLES = {"sgd": "SGD", "momentum": "Momentum", "nesterov": "Nesterov", "adagrad": "AdaGrad",
          "rmsprop": "RMSprop", "adam": "Adam"}


def f(p):
    return p["x"] ** 2 / 20.0 + p["y"] ** 2


def path(opt, start, steps):
    """Points visited (steps + 1, 2), the start included."""
    params = {"x": jnp.asarray(start[0], jnp.float32), "y": jnp.asarray(start[1], jnp.float32)}

    def step(carry, _):
        params, state = carry
        params, state = opt.update(params, jax.grad(f)(params), state)
        return (params, state), jnp.stack([params["x"], params["y"]])

    _, pts = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), None, length=steps))(params)
    return np.vstack([np.asarray(start, np.float32)[None], np.asarray(pts)])


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join("runs", "ch06"), help="folder for the PNG")
    ap.add_argument("--steps", type=int, default=30, help="steps per optimizer (default 30, as the book)")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    os.makedirs(args.out, exist_ok=True)

    xs, ys = np.meshgrid(np.arange(-10, 10, 0.01), np.arange(-5, 5, 0.01))
    zs = xs**2 / 20.0 + ys**2
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for ax, name in zip(axes.ravel(), LEARNING_RATES, strict=True):
        lr = LEARNING_RATES[name]
        pts = path(optimizers.get(name, lr=lr), (-7.0, 2.0), args.steps)
        print(f"{TITLES[name]:>9} lr={lr}: end ({pts[-1, 0]:+.4f}, {pts[-1, 1]:+.4f}), "
              f"f = {pts[-1, 0] ** 2 / 20 + pts[-1, 1] ** 2:.5f}")
        ax.contour(xs, ys, zs, levels=np.geomspace(0.05, 6, 12), colors="0.7", linewidths=0.8)
        ax.plot(pts[:, 0], pts[:, 1], "o-", color="red", markersize=3, linewidth=1)
        ax.plot(0, 0, "+", color="black", markersize=10)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.set_title(f"{TITLES[name]} (lr={lr})")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    fig.suptitle(f"f(x, y) = x²/20 + y², {args.steps} steps from (-7, 2) (figure 6-8)")
    fig.tight_layout()
    out = os.path.join(args.out, "optimizer_paths.png")
    save_png(fig, out)
    return out


if __name__ == "__main__":
    main()
