"""Chapter 7: im2col drawn for the book's 4x4 input and a 3x3 filter (section 7.4).

    python scripts/ch07_im2col.py --figure docs/figures/ch07_im2col.png

Left, the input with its four 3x3 windows (stride 1, no padding), one colour each; right, the matrix
`fnnet.layers.im2col` makes of it: one row per window, in the same colour, the window's nine values
read row by row. The convolution is then one matrix product of that matrix with the filter.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fnnet.layers import im2col
from fnnet.plots import save_figure

X = np.array([[1, 2, 3, 0], [0, 1, 2, 3], [3, 0, 1, 2], [2, 3, 0, 1]], np.float32)
COLOURS = ["#1e88e5", "#e53935", "#43a047", "#fb8c00"]


def draw(path) -> np.ndarray:
    """Draw the figure to `path`; return the im2col matrix it shows, (4, 9)."""
    col = np.asarray(im2col(X.reshape(1, 1, 4, 4), 3, 3))
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.5, 2.9), gridspec_kw={"width_ratios": [4, 9]})
    for i in range(4):
        for j in range(4):
            left.text(j, i, f"{X[i, j]:g}", ha="center", va="center", fontsize=12)
    for k, colour in enumerate(COLOURS):
        r, c = divmod(k, 2)
        inset = 0.06 * (k + 1)
        left.add_patch(plt.Rectangle((c - 0.5 + inset, r - 0.5 + inset), 3 - 2 * inset, 3 - 2 * inset,
                                     fill=False, edgecolor=colour, lw=2))
    for i in range(col.shape[0]):
        right.add_patch(plt.Rectangle((-0.5, i - 0.5), col.shape[1], 1, color=COLOURS[i], alpha=0.18, lw=0))
        for j in range(col.shape[1]):
            right.text(j, i, f"{col[i, j]:g}", ha="center", va="center", fontsize=12)
    left.set_title("input (1, 1, 4, 4): four 3x3 windows", fontsize=10)
    right.set_title(f"im2col(x, 3, 3): {col.shape[0]} rows (windows) x {col.shape[1]} columns (filter taps)",
                    fontsize=10)
    for ax, (h, w) in ((left, X.shape), (right, col.shape)):
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, path, colors=48)
    print(f"saved {path}")
    return col


def main(argv=None) -> np.ndarray:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", default=os.path.join("runs", "ch07_im2col.png"), help="the PNG to write")
    args = ap.parse_args(argv)
    return draw(args.figure)


if __name__ == "__main__":
    main()
