"""`gates` (chapter 2): AND, NAND and OR perceptrons split the input plane with one straight line;
XOR = AND(NAND, OR) needs two. Each panel shades the gate's output over [-0.5, 1.5]^2, draws the
line(s) where it changes and marks the four inputs by their output, with one legend."""

from __future__ import annotations

import numpy as np

from fnnet import gates
from fnnet.experiments import _common

GATES = {"AND": gates.AND, "NAND": gates.NAND, "OR": gates.OR, "XOR": gates.XOR}
INPUTS = ((0, 0), (1, 0), (0, 1), (1, 1))
GRID = np.linspace(-0.5, 1.5, 401)


def figure(results):
    """Four panels (one per gate) and one legend: output 1 and 0 markers, regions, decision lines."""
    plt = _common.pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    x1, x2 = np.meshgrid(GRID, GRID)
    colors = {0: "#e6e6e6", 1: "#9ecae1"}
    fig, axes = plt.subplots(1, len(GATES), figsize=(12, 3.9))
    for ax, (name, gate) in zip(axes, GATES.items(), strict=True):
        y = np.asarray(gate(x1, x2))
        ax.contourf(x1, x2, y, levels=[-0.5, 0.5, 1.5], colors=[colors[0], colors[1]])
        ax.contour(x1, x2, y, levels=[0.5], colors="k", linewidths=1.5)
        for (a, b), out in zip(INPUTS, results["truth_tables"][name], strict=True):
            ax.plot(a, b, "o" if out else "^", markersize=11, markerfacecolor="k" if out else "w",
                    markeredgecolor="k")
        n_lines = "two lines" if name == "XOR" else "one line"
        ax.set_title(f"{name} ({n_lines})")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        ax.set_aspect("equal")
    handles = [
        Line2D([], [], marker="o", ls="", markersize=9, markerfacecolor="k", markeredgecolor="k",
               label="input with output 1"),
        Line2D([], [], marker="^", ls="", markersize=9, markerfacecolor="w", markeredgecolor="k",
               label="input with output 0"),
        Patch(facecolor=colors[1], label="region where y = 1"),
        Patch(facecolor=colors[0], edgecolor="0.7", label="region where y = 0"),
        Line2D([], [], color="k", lw=1.5, label="decision line"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=5, frameon=False)
    fig.suptitle("Perceptron gates: y = 1 if w . x + b > 0 (XOR = AND(NAND, OR), two layers)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


@_common.experiment("gates")
def run(out_dir, *, seed, quick, progress):
    """Truth tables of the four gates and the figure gates.png (seed and quick change nothing)."""
    tables = {}
    with _common.bar(len(GATES), "gates", progress) as pbar:
        for name, gate in GATES.items():
            tables[name] = [int(gate(a, b)) for a, b in INPUTS]
            pbar.update()
    results = {"inputs": [list(p) for p in INPUTS], "truth_tables": tables}
    results["figures"] = [_common.save(figure(results), out_dir, "gates.png")]
    return results
