"""Chapter 6: SGD, Momentum, AdaGrad and Adam (plus Nesterov, RMSprop) on MNIST (figure 6-9).

    python scripts/ch06_optimizer_compare_mnist.py [--out runs/ch06] [--iters 2000] [--dataset digits]

A 5-layer ReLU MultiLayerNet (4 hidden layers of 100, He initialisation, as the book), batch
128, the book's learning rates (0.01, Adam 0.001), trained with fnnet.training.fit from the
same initial weights for each optimizer.
fit trains whole epochs, so the runs last ceil(iters / iterations per epoch) epochs; the plot
shows the first `--iters` iterations. Saves optimizer_compare_mnist.png (smoothed training loss
per iteration) and prints the final loss and test accuracy of each.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import matplotlib.pyplot as plt
import numpy as np
from ch06_common import add_data_args, load, quiet_fit, save_png, smooth
from tqdm.auto import tqdm

from fnnet import optimizers
from fnnet.models import multi_layer_net

LEARNING_RATES = {"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01, "rmsprop": 0.001,
                  "adam": 0.001}


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join("runs", "ch06"), help="folder for the PNG")
    ap.add_argument("--iters", type=int, default=2000, help="training iterations per optimizer (book: 2000)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--optimizers", default="sgd,momentum,adagrad,adam",
                    help=f"comma-separated subset of {','.join(optimizers.NAMES)}")
    add_data_args(ap)
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.optimizers.split(",") if s.strip()]
    for name in names:
        if name not in optimizers.NAMES:
            ap.error(f"--optimizers: unknown optimizer {name!r}; choose from {', '.join(optimizers.NAMES)}")
    if args.iters < 1:
        ap.error("--iters must be >= 1")
    os.makedirs(args.out, exist_ok=True)
    train, test = load(args.dataset, args.n_train, args.n_test)
    steps = train[0].shape[0] // args.batch_size
    if steps < 1:
        ap.error(f"--batch-size {args.batch_size} is larger than the {train[0].shape[0]} training samples")
    epochs = math.ceil(args.iters / steps)
    model = multi_layer_net.model(train[0].shape[1:], 10, hidden_size_list=(100,) * 4, activation="relu",
                                  weight_init_std="relu")

    fig, ax = plt.subplots(figsize=(7, 5))
    for name in tqdm(names, desc="optimizers"):
        lr = LEARNING_RATES[name]
        res = quiet_fit(model, optimizers.get(name, lr=lr), train, test, epochs=epochs,
                        batch_size=args.batch_size, seed=args.seed)
        loss = np.asarray(res.history["loss"][: args.iters])
        tqdm.write(f"{name:>9} lr={lr}: loss (last 100 iters) {loss[-100:].mean():.4f}, "
                   f"test acc {res.history['test_acc'][-1]:.4f} after {epochs} epochs")
        ax.plot(np.arange(len(loss)), smooth(loss), label=f"{name} (lr={lr})")
    ax.set_xlabel("iterations")
    ax.set_ylabel("loss")
    ax.set_ylim(0, 1)
    ax.set_title(f"5-layer ReLU net on {args.dataset}, batch {args.batch_size} (figure 6-9)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = os.path.join(args.out, "optimizer_compare_mnist.png")
    save_png(fig, out)
    return out


if __name__ == "__main__":
    main()
