"""`batchnorm` (chapter 6, figure 6-19): Batch Normalization makes training insensitive to the
initial weight scale.

As the book: the first 1,000 training images, a 6-layer ReLU MultiLayerNet (5 hidden layers of
100), SGD lr 0.01, batch 100, 20 epochs, once with and once without Batch Norm for each of 16
weight scales std = logspace(0, -4, 16). Each panel shows the training accuracy per epoch of both
nets; one legend for the figure. Without Batch Norm the net learns only for std between about 0.1
and 0.3: below, the signal dies out layer by layer and it stays at chance; above, the loss
overflows. With Batch Norm every scale learns, best from about 0.004 to 0.03. A run whose loss
overflows to NaN is stopped and marked "diverged" (the book's NumPy code carries on with NaNs).
--quick: std 0.01, 0.001 and 0.0001, 5 epochs.
"""

from __future__ import annotations

import math

import numpy as np

from fnnet import optimizers
from fnnet.experiments import _common
from fnnet.models import multi_layer_net

LR, BATCH, N_TRAIN = 0.01, 100, 1000
STYLES = {"with Batch Norm": "-", "without Batch Norm": "--"}


def figure(results):
    plt = _common.pyplot()
    scales = results["scales"]
    cols = min(4, len(scales))
    rows = math.ceil(len(scales) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.3 * rows + 0.9), squeeze=False, sharex=True,
                             sharey=True, layout="constrained")
    lines = {}
    for ax, s in zip(axes.ravel(), scales, strict=False):
        for k, (label, style) in enumerate(STYLES.items()):
            acc = s[label]
            if acc is None:
                ax.text(0.5, 0.55 - 0.12 * k, f"{label}: diverged", transform=ax.transAxes, ha="center",
                        fontsize=7)
            else:
                (lines[label],) = ax.plot(np.arange(1, len(acc) + 1), acc, style, color=f"C{k}")
        ax.set_title(f"W std {s['std']:.2g}", fontsize=9)
        ax.set_ylim(0, 1.0)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(scales):]:
        ax.axis("off")
    shown = [k for k in STYLES if k in lines]
    fig.legend([lines[k] for k in shown], shown, loc="outside lower center", ncol=2, frameon=False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    fig.supylabel("training accuracy")
    fig.suptitle(f"Batch Normalization vs initial weight std ({results['n_train']} MNIST images, "
                 "figure 6-19)")
    return fig


@_common.experiment("batchnorm")
def run(out_dir, *, seed, quick, progress):
    """Per weight scale: training accuracy per epoch with and without Batch Norm (None: diverged);
    batchnorm.png."""
    stds, epochs = (np.logspace(-2, -4, 3), 5) if quick else (np.logspace(0, -4, 16), 20)
    train, _ = _common.mnist(N_TRAIN, 1, progress)
    runs = {}
    for w in stds:
        for label in STYLES:
            model = multi_layer_net.model(train[0].shape[1:], 10, hidden_size_list=(100,) * 5,
                                          weight_init_std=float(w), use_batchnorm=label == "with Batch Norm")
            runs[(float(w), label)] = (model, optimizers.sgd(lr=LR))
    histories = _common.fit_runs(runs, train, None, epochs=epochs, batch_size=BATCH, seed=seed,
                                 progress=progress, desc="runs (2 per weight scale)")
    scales = []
    for w in stds:
        s = {"std": float(w)}
        for label in STYLES:
            h = histories[(float(w), label)]
            s[label] = None if h is None else h["train_acc"]
        scales.append(s)
        final = {k: "diverged" if s[k] is None else f"{s[k][-1]:.3f}" for k in STYLES}
        _common.say(f"std {w:.2e}: train acc with BN {final['with Batch Norm']}, without "
                    f"{final['without Batch Norm']}", progress)
    results = {"n_train": N_TRAIN, "epochs": epochs, "lr": LR, "batch_size": BATCH, "scales": scales}
    results["figures"] = [_common.save(figure(results), out_dir, "batchnorm.png")]
    return results
