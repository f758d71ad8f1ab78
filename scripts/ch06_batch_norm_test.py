"""Chapter 6: training with and without Batch Normalization for many initial weight scales
(the book's figure 6-19).

    python scripts/ch06_batch_norm_test.py [--out runs/ch06] [--scales 16] [--epochs 20]

As the book: the first 1,000 training images, a 5-layer ReLU MultiLayerNet (4 hidden layers
of 100), SGD lr 0.01, batch 100, `--epochs` epochs, weight std from np.logspace(0, -4, scales).
Saves batch_norm_test.png (training accuracy per epoch, one panel per weight scale) and prints
the final training accuracy of both runs for each scale. A run whose loss overflows to NaN
is stopped by fit and marked "diverged" (the book's NumPy code carries on with NaNs).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import matplotlib.pyplot as plt
import numpy as np
from ch06_common import add_data_args, load, quiet_fit, save_png
from tqdm.auto import tqdm

from fnnet import optimizers
from fnnet.models import multi_layer_net
from fnnet.training import TrainingDiverged


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join("runs", "ch06"), help="folder for the PNG")
    ap.add_argument("--scales", type=int, default=16, help="number of weight scales (book: 16)")
    ap.add_argument("--epochs", type=int, default=20, help="epochs per run (book: 20)")
    ap.add_argument("--lr", type=float, default=0.01)
    add_data_args(ap, n_train=1000)
    args = ap.parse_args(argv)
    if args.scales < 1 or args.epochs < 1:
        ap.error("--scales and --epochs must be >= 1")
    os.makedirs(args.out, exist_ok=True)
    train, _ = load(args.dataset, args.n_train, 1)
    opt = optimizers.sgd(lr=args.lr)
    scales = np.logspace(0, -4, num=args.scales)
    cols = min(4, args.scales)
    rows = math.ceil(args.scales / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharey=True)
    for i, w in enumerate(tqdm(scales, desc="weight scales")):
        accs = {}
        for bn in (True, False):
            model = multi_layer_net.model(train[0].shape[1:], 10, hidden_size_list=(100,) * 4,
                                          weight_init_std=float(w), use_batchnorm=bn)
            try:
                res = quiet_fit(model, opt, train, None, epochs=args.epochs, batch_size=100, seed=args.seed)
                accs[bn] = res.history["train_acc"]
            except TrainingDiverged:
                accs[bn] = None  # the loss overflowed to NaN/inf (the book's NumPy run just goes on)
        final = {bn: "diverged" if a is None else f"{a[-1]:.3f}" for bn, a in accs.items()}
        tqdm.write(f"w std {w:.2e}: train acc with BN {final[True]}, without {final[False]}")
        ax = axes.ravel()[i]
        x = np.arange(1, args.epochs + 1)
        for bn, style, label in ((True, "-", "Batch Normalization"), (False, "--", "Normal (without BN)")):
            if accs[bn] is None:
                ax.text(0.5, 0.5 if bn else 0.4, f"{label}: diverged", transform=ax.transAxes,
                        ha="center", fontsize=7)
            else:
                ax.plot(x, accs[bn], style, label=label)
        ax.set_title(f"W: {w:.2e}", fontsize=9)
        ax.set_ylim(0, 1.0)
    for ax in axes.ravel()[args.scales:]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.supxlabel("epochs")
    fig.supylabel("training accuracy")
    fig.suptitle(f"Batch Normalization vs initial weight std ({args.dataset}, {train[0].shape[0]} images)")
    fig.tight_layout()
    out = os.path.join(args.out, "batch_norm_test.png")
    save_png(fig, out)
    return out


if __name__ == "__main__":
    main()
