"""`hyperparameter-search` (chapter 6, figure 6-24): random search over learning rate and weight
decay, judged on a validation split; the test set is never loaded.

As the book: the first 500 MNIST training images, shuffled (`fnnet.datasets.train_val_split`, key
from the seed) into 400 for training and 100 for validation; a 7-layer ReLU MultiLayerNet (6 hidden
layers of 100), SGD with weight decay, batch 100, 50 epochs; 100 trials, each drawing
lr = 10**U(-6, -2) and weight decay = 10**U(-8, -4). The figure: every trial's final validation
accuracy over (lr, weight decay), the ranked table of the best ten, and their validation and
training accuracy per epoch. In these ranges the learning rate decides: the best trials have lr
from about 5e-3 to 1e-2, whatever their weight decay.
--quick: 4 trials of 5 epochs.
"""

from __future__ import annotations

import jax
import numpy as np

from fnnet import optimizers
from fnnet.datasets import train_val_split
from fnnet.experiments import _common
from fnnet.models import multi_layer_net
from fnnet.regularization import weight_decay

N_IMAGES, VAL_RATIO, BATCH = 500, 0.2, 100
LR_RANGE, WD_RANGE = (-6, -2), (-8, -4)
SHOW = 10


def figure(results):
    plt = _common.pyplot()
    ranking = results["ranking"]
    fig = plt.figure(figsize=(14, 8.6), layout="constrained")
    grid = fig.add_gridspec(3, 5, height_ratios=(1.25, 1, 1))
    top = grid[0, :].subgridspec(1, 3, width_ratios=(2, 0.06, 2.6))

    ax = fig.add_subplot(top[0])
    done = [t for t in results["trials"] if t["val_acc"] is not None]
    sc = ax.scatter([t["lr"] for t in done], [t["weight_decay"] for t in done],
                    c=[t["val_acc"] for t in done], cmap="viridis", vmin=0, vmax=1, s=28, edgecolors="k",
                    linewidths=0.3)
    failed = [t for t in results["trials"] if t["val_acc"] is None]
    if failed:
        ax.scatter([t["lr"] for t in failed], [t["weight_decay"] for t in failed], marker="x", c="r",
                   label="diverged")
        ax.legend(loc="lower left", fontsize=8)
    if ranking:
        best = ranking[0]
        ax.scatter([best["lr"]], [best["weight_decay"]], s=160, facecolors="none", edgecolors="r", lw=1.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(10.0 ** LR_RANGE[0], 10.0 ** LR_RANGE[1])
    ax.set_ylim(10.0 ** WD_RANGE[0], 10.0 ** WD_RANGE[1])
    ax.set_xlabel("learning rate")
    ax.set_ylabel("weight decay (lambda)")
    ax.set_title(f"final validation accuracy of {len(results['trials'])} trials (best circled)", fontsize=10)
    fig.colorbar(sc, cax=fig.add_subplot(top[1]), label="validation accuracy")

    ax = fig.add_subplot(top[2])
    ax.axis("off")
    rows = [[f"{i}", f"{r['val_acc']:.3f}", f"{r['train_acc']:.3f}", f"{r['lr']:.2e}",
             f"{r['weight_decay']:.2e}"] for i, r in enumerate(ranking[:SHOW], 1)]
    if rows:
        columns = ["rank", "val acc", "train acc", "learning rate", "weight decay"]
        table = ax.table(cellText=rows, colLabels=columns, loc="center", cellLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(9)
        table.scale(1, 1.15)
    ax.set_title("ranked by final validation accuracy", fontsize=10)

    for k in range(SHOW):
        ax = fig.add_subplot(grid[1 + k // 5, k % 5])
        if k >= len(ranking):
            ax.axis("off")
            continue
        r = ranking[k]
        e = np.arange(1, len(r["val_acc_curve"]) + 1)
        ax.plot(e, r["val_acc_curve"], label="validation")
        ax.plot(e, r["train_acc_curve"], "--", label="train")
        ax.set_ylim(0, 1)
        ax.set_title(f"best {k + 1}: lr {r['lr']:.1e}, wd {r['weight_decay']:.1e}", fontsize=9)
        ax.grid(alpha=0.3)
        if k % 5 == 0:
            ax.set_ylabel("accuracy")
        if k >= 5 or len(ranking) <= 5:
            ax.set_xlabel("epoch")
        if k == 0:
            ax.legend(fontsize=8, loc="lower right")
    n_tr, n_val = results["n_train"], results["n_val"]
    fig.suptitle(f"random search: {n_tr} training / {n_val} validation images (MNIST training set only), "
                 f"{results['epochs']} epochs per trial (figure 6-24)")
    return fig


@_common.experiment("hyperparameter-search")
def run(out_dir, *, seed, quick, progress):
    """Every trial (lr, weight decay, accuracy curves), the ranking by final validation accuracy and
    the indices (into the MNIST training set) of the training and validation images;
    hyperparameter_search.png."""
    trials_n, epochs = (4, 5) if quick else (100, 50)
    x, t = _common.mnist_train(N_IMAGES, progress)
    key = jax.random.PRNGKey(seed)
    (train_idx, _), (val_idx, _) = train_val_split(np.arange(len(x)), t, VAL_RATIO, key=key)
    train, val = (x[train_idx], t[train_idx]), (x[val_idx], t[val_idx])
    rng = np.random.default_rng(seed)
    draws = [(10 ** rng.uniform(*LR_RANGE), 10 ** rng.uniform(*WD_RANGE)) for _ in range(trials_n)]
    model = multi_layer_net.model(x.shape[1:], 10, hidden_size_list=(100,) * 6)
    trials = []
    with _common.bar(trials_n, "trials", progress) as pbar:
        for i, (lr, wd) in enumerate(draws):
            opt = optimizers.chain(optimizers.sgd(lr=lr), weight_decay(wd))
            h = _common.fit_runs({i: (model, opt)}, train, val, epochs=epochs, batch_size=BATCH,
                                 seed=seed + i, progress=False, desc="trial")[i]
            trial = {"trial": i + 1, "lr": float(lr), "weight_decay": float(wd),
                     "val_acc": None if h is None else h["test_acc"][-1],
                     "train_acc": None if h is None else h["train_acc"][-1],
                     "val_acc_curve": None if h is None else h["test_acc"],
                     "train_acc_curve": None if h is None else h["train_acc"]}
            trials.append(trial)
            pbar.update()
            acc = "diverged" if h is None else f"val acc {trial['val_acc']:.3f}"
            _common.say(f"trial {i + 1:>3}: {acc} | lr {lr:.2e}, weight decay {wd:.2e}", progress)
    ranking = sorted((tr for tr in trials if tr["val_acc"] is not None), key=lambda tr: -tr["val_acc"])
    for rank, tr in enumerate(ranking[:SHOW], 1):
        _common.say(f"best-{rank:<2} (val acc {tr['val_acc']:.3f}) | lr {tr['lr']:.3e}, "
                    f"weight decay {tr['weight_decay']:.3e}", progress)
    results = {"n_images": N_IMAGES, "n_train": len(train_idx), "n_val": len(val_idx), "epochs": epochs,
               "batch_size": BATCH, "train_indices": train_idx, "val_indices": val_idx, "trials": trials,
               "ranking": ranking}
    results["figures"] = [_common.save(figure(results), out_dir, "hyperparameter_search.png")]
    return results
