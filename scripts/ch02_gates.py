"""Chapter 2: logic gates as perceptrons; truth tables and decision regions.

    python scripts/ch02_gates.py [--out runs/ch02_gates]

Prints the truth tables of AND, NAND, OR (single perceptrons) and XOR (two layers of them),
and saves gates.png: the output of each gate over the square [-0.5, 1.5]^2, where the single
perceptrons split the plane with one straight line and XOR needs two.
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

from fnnet import gates
from fnnet.plots import save_figure as save_png

GATES = {"AND": gates.AND, "NAND": gates.NAND, "OR": gates.OR, "XOR": gates.XOR}
INPUTS = [(0, 0), (1, 0), (0, 1), (1, 1)]


def truth_tables() -> dict:
    """{gate name: [y for (x1, x2) in INPUTS]}."""
    return {name: [int(gate(x1, x2)) for x1, x2 in INPUTS] for name, gate in GATES.items()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join("runs", "ch02_gates"), help="folder for gates.png")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    tables = truth_tables()
    print("x1 x2 | " + " ".join(f"{name:>4}" for name in tables))
    for i, (x1, x2) in enumerate(INPUTS):
        print(f" {x1}  {x2} | " + " ".join(f"{tables[name][i]:>4}" for name in tables))

    grid = jnp.linspace(-0.5, 1.5, 201)
    x1, x2 = jnp.meshgrid(grid, grid)
    fig, axes = plt.subplots(1, len(GATES), figsize=(4 * len(GATES), 4))
    for ax, (name, gate) in zip(axes, GATES.items(), strict=True):
        ax.contourf(x1, x2, gate(x1, x2), levels=[-0.5, 0.5, 1.5], colors=["#dddddd", "#9ecae1"])
        for (a, b), y in zip(INPUTS, tables[name], strict=True):
            ax.scatter(a, b, marker="o" if y else "^", s=120, c="k" if y else "w", edgecolors="k")
        ax.set_title(name)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        ax.set_aspect("equal")
    fig.tight_layout()
    path = os.path.join(args.out, "gates.png")
    save_png(fig, path)
    print(f"saved {path}")
    return tables


if __name__ == "__main__":
    main()
