"""Chapter 6: overfitting on 300 images, and two remedies: weight decay and dropout
(the book's figures 6-20, 6-21 and 6-23).

    python scripts/ch06_overfit.py [--out runs/ch06] [--epochs 201] [--weight-decay 0.1] [--dropout 0.2]

As the book: the first 300 training images, a 7-layer ReLU MultiLayerNet (6 hidden layers of
100), SGD lr 0.01, batch 100. Four runs: plain, weight decay (lambda 0.1), and for dropout the
same net with and without Dropout(0.2), trained with fnnet.training.fit. Saves
overfit_weight_decay.png and overfit_dropout.png (train and test accuracy per epoch) and
prints the final gap between them.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import matplotlib.pyplot as plt
import numpy as np
from ch06_common import add_data_args, load, quiet_fit, save_png
from tqdm.auto import tqdm

from fnnet import optimizers
from fnnet.models import multi_layer_net


def panel(ax, history, title):
    x = np.arange(1, len(history["train_acc"]) + 1)
    ax.plot(x, history["train_acc"], "o-", markevery=10, markersize=4, label="train")
    ax.plot(x, history["test_acc"], "s-", markevery=10, markersize=4, label="test")
    ax.set_xlabel("epochs")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.0)
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join("runs", "ch06"), help="folder for the PNGs")
    ap.add_argument("--epochs", type=int, default=201, help="epochs per run (book: 201 and 301)")
    ap.add_argument("--weight-decay", type=float, default=0.1, help="lambda (book: 0.1)")
    ap.add_argument("--dropout", type=float, default=0.2, help="dropout ratio (book: 0.2)")
    ap.add_argument("--lr", type=float, default=0.01)
    add_data_args(ap, n_train=300)
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error("--epochs must be >= 1")
    if not 0 <= args.dropout < 1:
        ap.error("--dropout must be in [0, 1)")
    if args.weight_decay < 0:
        ap.error("--weight-decay must be >= 0")
    os.makedirs(args.out, exist_ok=True)
    train, test = load(args.dataset, args.n_train, args.n_test)
    opt = optimizers.sgd(lr=args.lr)
    runs = {
        "plain": {},
        f"weight decay {args.weight_decay}": {"weight_decay_lambda": args.weight_decay},
        f"dropout {args.dropout}": {"use_dropout": True, "dropout_ratio": args.dropout},
    }
    histories = {}
    for name, cfg in tqdm(runs.items(), desc="runs", total=len(runs)):
        model = multi_layer_net.model(train[0].shape[1:], 10, hidden_size_list=(100,) * 6, **cfg)
        h = quiet_fit(model, opt, train, test, epochs=args.epochs, batch_size=100, seed=args.seed).history
        histories[name] = h
        tqdm.write(f"{name:>18}: train acc {h['train_acc'][-1]:.4f}, test acc {h['test_acc'][-1]:.4f}, "
                   f"gap {h['train_acc'][-1] - h['test_acc'][-1]:.4f}")
    names = list(runs)
    paths = []
    for fname, other in (("overfit_weight_decay.png", names[1]), ("overfit_dropout.png", names[2])):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        panel(axes[0], histories["plain"], f"no regularisation ({train[0].shape[0]} images)")
        panel(axes[1], histories[other], other)
        fig.tight_layout()
        paths.append(os.path.join(args.out, fname))
        save_png(fig, paths[-1])
    return paths


if __name__ == "__main__":
    main()
