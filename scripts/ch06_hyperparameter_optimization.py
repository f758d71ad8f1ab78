"""Chapter 6: random search over learning rate and weight decay (the book's figure 6-24).

    python scripts/ch06_hyperparameter_optimization.py [--out runs/ch06] [--trials 20] [--epochs 50]

As the book: the first 500 training images, 20% of them held out for validation (shuffled with
fnnet.datasets.train_val_split), a 7-layer ReLU MultiLayerNet (6 hidden layers of 100), SGD,
batch 100; each trial draws lr = 10**U(-6, -2) and weight decay = 10**U(-8, -4) and trains
with fnnet.training.fit. The test set is never used. Saves hyperparameter_search.png
(validation and training accuracy of the best `--show` trials) and prints the ranking.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax
import matplotlib.pyplot as plt
import numpy as np
from ch06_common import add_data_args, load, quiet_fit, save_png
from tqdm.auto import tqdm

from fnnet import optimizers
from fnnet.datasets import train_val_split
from fnnet.models import multi_layer_net
from fnnet.training import TrainingDiverged


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join("runs", "ch06"), help="folder for the PNG")
    ap.add_argument("--trials", type=int, default=20, help="random trials (book: 100)")
    ap.add_argument("--epochs", type=int, default=50, help="epochs per trial (book: 50)")
    ap.add_argument("--show", type=int, default=20, help="how many of the best trials to plot")
    add_data_args(ap, n_train=500, n_test=1)
    args = ap.parse_args(argv)
    if args.trials < 1 or args.epochs < 1 or args.show < 1:
        ap.error("--trials, --epochs and --show must be >= 1")
    os.makedirs(args.out, exist_ok=True)
    (x, t), _ = load(args.dataset, args.n_train, 1)
    train, val = train_val_split(x, t, 0.2, key=jax.random.PRNGKey(args.seed))
    rng = np.random.default_rng(args.seed)
    results = []
    for trial in tqdm(range(args.trials), desc="trials"):
        lr = 10 ** rng.uniform(-6, -2)
        wd = 10 ** rng.uniform(-8, -4)
        model = multi_layer_net.model(x.shape[1:], 10, hidden_size_list=(100,) * 6, weight_decay_lambda=wd)
        try:
            h = quiet_fit(model, optimizers.sgd(lr=lr), train, val, epochs=args.epochs, batch_size=100,
                          seed=args.seed + trial).history
        except TrainingDiverged:
            tqdm.write(f"trial {trial + 1}: lr {lr:.2e}, weight decay {wd:.2e}: diverged")
            continue
        results.append((h["test_acc"][-1], lr, wd, h))
        tqdm.write(f"trial {trial + 1}: val acc {h['test_acc'][-1]:.3f} | lr {lr:.2e}, "
                   f"weight decay {wd:.2e}")
    results.sort(key=lambda r: -r[0])
    print("=========== hyper-parameter optimization result ===========")
    for rank, (acc, lr, wd, _) in enumerate(results, 1):
        print(f"best-{rank:<3} (val acc: {acc:.3f}) | lr: {lr:.3e}, weight decay: {wd:.3e}")
    show = results[: args.show]
    cols = 5
    rows = max(1, math.ceil(len(show) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False, sharey=True)
    for ax, (rank, (_acc, lr, wd, h)) in zip(axes.ravel(), enumerate(show, 1), strict=False):
        e = np.arange(1, len(h["test_acc"]) + 1)
        ax.plot(e, h["test_acc"], label="validation")
        ax.plot(e, h["train_acc"], "--", label="train")
        ax.set_title(f"Best-{rank}: lr {lr:.1e}, wd {wd:.1e}", fontsize=8)
        ax.set_ylim(0.0, 1.0)
    for ax in axes.ravel()[len(show):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"random search, {args.trials} trials on {args.dataset} "
                 f"({train[0].shape[0]} train / {val[0].shape[0]} validation images)")
    fig.tight_layout()
    out = os.path.join(args.out, "hyperparameter_search.png")
    save_png(fig, out)
    return out


if __name__ == "__main__":
    main()
