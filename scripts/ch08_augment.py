"""Chapter 8: data augmentation, drawn (section 8.1.2).

    python scripts/ch08_augment.py --figure docs/figures/ch08_augment.png [--data-dir DIR]

The first eight MNIST test images, then three batches of them through `fnnet.augment.augment` with
the keys 1, 2 and 3: every image its own random rotation (up to 10 degrees) and shift (up to 2
pixels). MNIST comes from --data-dir or $FNNET_DATA_DIR; without it, the 8x8 digits bundled with
scikit-learn, and it says so.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fnnet.augment import augment
from fnnet.datasets import MNISTNotFoundError, load_digits, load_mnist
from fnnet.plots import save_figure

KEYS = (1, 2, 3)


def images(data_dir=None, n=8) -> np.ndarray:
    """The first n test images, (n, 1, H, W) in [0, 1]: MNIST, or the 8x8 digits without it."""
    try:
        _, (x, _) = load_mnist(flatten=False, data_dir=data_dir, download=False, progress=False)
    except MNISTNotFoundError:
        print("MNIST not found (--data-dir, $FNNET_DATA_DIR): drawing the bundled 8x8 digits instead")
        _, (x, _) = load_digits(flatten=False)
    return np.asarray(x[:n], np.float32)


def draw(path, x) -> np.ndarray:
    """Draw the originals and their augmented copies to `path`; return the copies, (len(KEYS), n, 1, H, W)."""
    moved = np.stack([np.asarray(augment(jax.random.PRNGKey(k), x)) for k in KEYS])
    rows = [("original", x)] + [(f"key {k}", m) for k, m in zip(KEYS, moved, strict=True)]
    fig, axes = plt.subplots(len(rows), len(x), figsize=(len(x) * 0.9, len(rows) * 0.95), squeeze=False)
    for r, (label, batch) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.imshow(batch[c, 0], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.tight_layout(pad=0.3)
    save_figure(fig, path, dpi=100, colors=64)
    print(f"saved {path}")
    return moved


def main(argv=None) -> np.ndarray:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", default=os.path.join("runs", "ch08_augment.png"), help="the PNG to write")
    ap.add_argument("--data-dir", default=None, help="MNIST folder (default: $FNNET_DATA_DIR)")
    args = ap.parse_args(argv)
    return draw(args.figure, images(args.data_dir))


if __name__ == "__main__":
    main()
