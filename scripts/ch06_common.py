"""Helpers shared by the chapter-6 scripts: atomic PNG saving and the data sets.

MNIST comes from the folder in $FNNET_DATA_DIR (never downloaded here); without it, or with
--dataset digits, scikit-learn's 8x8 digits stand in (1,438 training / 359 test images).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import matplotlib

matplotlib.use("Agg")
import numpy as np

from fnnet.datasets import load_digits, load_mnist
from fnnet.plots import save_figure as save_png  # noqa: F401  (used by the ch06 scripts)


def default_dataset() -> str:
    return "mnist" if os.environ.get("FNNET_DATA_DIR") else "digits"


def load(dataset: str, n_train: int | None = None, n_test: int | None = None):
    """((x_train, t_train), (x_test, t_test)) flattened float32 in [0, 1] with int labels,
    truncated to the first n_train / n_test samples when given (the book's small-data runs)."""
    if dataset == "mnist":
        data_dir = os.environ.get("FNNET_DATA_DIR")
        if not data_dir:
            raise SystemExit("--dataset mnist needs FNNET_DATA_DIR, a folder with the four MNIST IDX files")
        (x_tr, t_tr), (x_te, t_te) = load_mnist(data_dir=data_dir, download=False, progress=False)
    elif dataset == "digits":
        (x_tr, t_tr), (x_te, t_te) = load_digits()
    else:
        raise SystemExit(f"unknown dataset {dataset!r}; choose mnist or digits")
    x_tr, t_tr = np.asarray(x_tr[:n_train]), np.asarray(t_tr[:n_train])
    x_te, t_te = np.asarray(x_te[:n_test]), np.asarray(t_te[:n_test])
    return (x_tr, t_tr), (x_te, t_te)


def smooth(y):
    """The book's smooth_curve: an 11-point Kaiser-window moving average (length preserved)."""
    y = np.asarray(y, dtype=np.float64)
    window = 11
    if len(y) < window:
        return y
    s = np.r_[y[window - 1:0:-1], y, y[-1:-window:-1]]
    w = np.kaiser(window, 2)
    out = np.convolve(w / w.sum(), s, mode="valid")
    return out[5:len(out) - 5]


def add_data_args(ap, n_train=None, n_test=None) -> None:
    ap.add_argument("--dataset", choices=("mnist", "digits"), default=default_dataset(),
                    help="mnist (from $FNNET_DATA_DIR; the default when it is set) or digits")
    ap.add_argument("--n-train", type=int, default=n_train, help="use the first N training samples")
    ap.add_argument("--n-test", type=int, default=n_test, help="use the first N test samples")
    ap.add_argument("--seed", type=int, default=0, help="PRNG seed (same seed, same result)")


def quiet_fit(model, optimizer, train, test, *, epochs, batch_size, seed):
    """fnnet.training.fit without its per-epoch lines and progress bars (the scripts show their own)."""
    from fnnet.training import fit

    return fit(model, optimizer, train, test, epochs=epochs, batch_size=batch_size, seed=seed,
               progress=False, log=lambda *_: None)
