"""`overfitting` (chapter 6, figures 6-20, 6-21 and 6-23): overfitting on 300 images and two remedies.

As the book: the first 300 training images, a 7-layer ReLU MultiLayerNet (6 hidden layers of 100,
He initialisation), SGD lr 0.01, batch 100. Three runs, each for the book's epochs: plain (201),
weight decay lambda 0.1 (201; `fnnet.regularization.weight_decay` chained to SGD) and Dropout with
ratio 0.2 (301). Each panel shows the training and test accuracy per epoch and the final gap
between them: the plain net learns the 300 images perfectly while staying near 75% on the test
set; weight decay and dropout narrow the gap.
--quick: 100 epochs each, 1,000 test images.
"""

from __future__ import annotations

import numpy as np

from fnnet import optimizers
from fnnet.experiments import _common
from fnnet.models import multi_layer_net
from fnnet.regularization import weight_decay

N_TRAIN, LR, BATCH = 300, 0.01, 100
WEIGHT_DECAY, DROPOUT = 0.1, 0.2
EPOCHS = {"plain": 201, f"weight decay {WEIGHT_DECAY}": 201, f"dropout {DROPOUT}": 301}


def figure(results):
    plt = _common.pyplot()
    runs = results["runs"]
    fig, axes = plt.subplots(1, len(runs), figsize=(4.4 * len(runs), 3.9), sharey=True)
    for ax, (name, r) in zip(axes, runs.items(), strict=True):
        e = np.arange(1, len(r["train_acc"]) + 1)
        ax.plot(e, r["train_acc"], label="train", color="C0")
        ax.plot(e, r["test_acc"], label="test", color="C1")
        ax.set_title(f"{name}: gap {r['gap']:.2f}")
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    axes[0].set_ylabel("accuracy")
    fig.suptitle(f"{results['n_train']} training images, 7-layer ReLU net, SGD lr {LR} "
                 "(figures 6-20, 6-21, 6-23)")
    fig.tight_layout()
    return fig


@_common.experiment("overfitting")
def run(out_dir, *, seed, quick, progress):
    """Per run: train and test accuracy per epoch and the final gap (mean of the last 10 epochs);
    overfitting.png."""
    n_test = 1000 if quick else None
    epochs = {name: 100 for name in EPOCHS} if quick else EPOCHS
    train, test = _common.mnist(N_TRAIN, n_test, progress)
    names = list(EPOCHS)

    def net(**config):
        return multi_layer_net.model(train[0].shape[1:], 10, hidden_size_list=(100,) * 6, **config)

    runs = {
        names[0]: (net(), optimizers.sgd(lr=LR)),
        names[1]: (net(), optimizers.chain(optimizers.sgd(lr=LR), weight_decay(WEIGHT_DECAY))),
        names[2]: (net(use_dropout=True, dropout_ratio=DROPOUT), optimizers.sgd(lr=LR)),
    }
    histories = _common.fit_runs(runs, train, test, epochs=epochs, batch_size=BATCH, seed=seed,
                                 progress=progress, desc="runs")
    out = {}
    for name, h in histories.items():
        train_acc, test_acc = np.asarray(h["train_acc"]), np.asarray(h["test_acc"])
        gap = float(np.mean(train_acc[-10:] - test_acc[-10:]))
        out[name] = {"epochs": len(train_acc), "train_acc": train_acc, "test_acc": test_acc, "gap": gap,
                     "final_train_acc": float(train_acc[-1]), "final_test_acc": float(test_acc[-1])}
        _common.say(f"{name:>17}: train acc {train_acc[-1]:.3f}, test acc {test_acc[-1]:.3f}, gap {gap:.3f}",
                    progress)
    results = {"n_train": N_TRAIN, "n_test": len(test[0]), "lr": LR, "batch_size": BATCH,
               "weight_decay": WEIGHT_DECAY, "dropout_ratio": DROPOUT, "runs": out}
    results["figures"] = [_common.save(figure(results), out_dir, "overfitting.png")]
    return results
