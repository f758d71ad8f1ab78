"""Chapter 6: hidden-layer activation histograms for different initial weight scales
(the book's figures 6-10 to 6-14).

    python scripts/ch06_weight_init_activation_histogram.py [--out runs/ch06] [--seed 0]

1000 Gaussian inputs of 100 features pass through 5 layers of 100 units (no biases) whose
weights are N(0, 1) * std, for std in {1, 0.01, Xavier sqrt(1/n), He sqrt(2/n)} (fnnet.init),
with sigmoid, ReLU and tanh. Saves activation_hist_<activation>.png (rows: initialisation,
columns: layers; for ReLU the counts axis stops at 7000 as in the book, cutting the bar of
zeros) and prints the standard deviation of each layer's activations.
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

from fnnet.functions import relu, sigmoid, tanh
from fnnet.init import weight_std

ACTIVATIONS = {"sigmoid": (sigmoid, (0, 1)), "relu": (relu, (0, 1)), "tanh": (tanh, (-1, 1))}
INITS = {"std 1": 1.0, "std 0.01": 0.01, "Xavier": "xavier", "He": "he"}


def activations(key, act, spec, n_samples=1000, node_num=100, layers=5):
    """The activations of each layer, (layers, n_samples, node_num), for weights of std `spec`."""
    kx, kw = jax.random.split(key)
    x = jax.random.normal(kx, (n_samples, node_num))
    out = []
    for i in range(layers):
        w = weight_std(spec, node_num) * jax.random.normal(jax.random.fold_in(kw, i), (node_num, node_num))
        x = act(x @ w)
        out.append(x)
    return jnp.stack(out)


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join("runs", "ch06"), help="folder for the PNGs")
    ap.add_argument("--seed", type=int, default=0, help="PRNG seed (same seed, same figures)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    key = jax.random.PRNGKey(args.seed)
    paths = []
    for name, (act, rng) in ACTIVATIONS.items():
        fig, axes = plt.subplots(len(INITS), 5, figsize=(14, 2.3 * len(INITS)), sharex=True)
        for r, (row, (label, spec)) in enumerate(zip(axes, INITS.items(), strict=True)):
            a = np.asarray(activations(key, act, spec))
            stds = ", ".join(f"{float(s):.3f}" for s in a.reshape(5, -1).std(axis=1))
            print(f"{name:>7} {label:>8}: std per layer {stds}")
            for i, ax in enumerate(row):
                ax.hist(a[i].ravel(), 30, range=rng)
                if name == "relu":
                    ax.set_ylim(0, 7000)  # as the book: the tall bar of exact zeros is cut off
                ax.set_yticks([])
                if i == 0:
                    ax.set_ylabel(label)
                if r == 0:
                    ax.set_title(f"{i + 1}-layer")
        fig.suptitle(f"{name}: activation distribution per layer for each initial weight scale")
        fig.tight_layout()
        paths.append(os.path.join(args.out, f"activation_hist_{name}.png"))
        save_png(fig, paths[-1])
    return paths


if __name__ == "__main__":
    main()
