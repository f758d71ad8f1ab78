"""What the experiments share: the run folder, results.json, the data, quiet training, smoothing."""

from __future__ import annotations

import functools
import os
import time

import numpy as np

from fnnet._checks import check_seed
from fnnet.io import ensure_writable_dir, save_json

DEFAULT_ROOT = os.path.join("runs", "experiments")
RESULTS_FILE = "results.json"


def default_out_dir(name: str) -> str:
    return os.path.join(DEFAULT_ROOT, name)


def prepare_out_dir(name: str, out_dir) -> str:
    """The folder for experiment `name` (default runs/experiments/<name>), created if missing and
    proved writable before the experiment runs, so a bad folder fails in a second, not at the end."""
    out_dir = os.fspath(out_dir) if out_dir is not None else default_out_dir(name)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"experiment {name}: the output folder {out_dir} exists and is not a folder")
    try:
        ensure_writable_dir(out_dir)
    except OSError as e:
        raise PermissionError(f"experiment {name}: cannot write into the output folder {out_dir} "
                              f"({e.strerror or e}); choose another --out") from None
    return out_dir


def jsonable(obj):
    """`obj` with arrays as (nested) lists, NumPy/JAX scalars as Python numbers, tuple keys as strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, bool, int, float)) or obj is None:
        return obj
    arr = np.asarray(obj)
    if arr.dtype == np.bool_:
        return arr.tolist()
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(int).tolist()
    return arr.astype(float).tolist()


def experiment(name: str):
    """Decorator for `body(out_dir, *, seed, quick, progress) -> dict`: the experiment function
    `run(out_dir=None, *, seed=0, quick=False, progress=True) -> dict` that prepares the folder,
    times the body and writes its dict (plus name, seed, quick, seconds) to results.json."""

    def wrap(body):
        @functools.wraps(body)
        def run(out_dir=None, *, seed: int = 0, quick: bool = False, progress: bool = True) -> dict:
            seed = check_seed(f"experiment {name}", seed)
            out_dir = prepare_out_dir(name, out_dir)
            t0 = time.perf_counter()
            body_results = body(out_dir, seed=int(seed), quick=bool(quick), progress=bool(progress))
            results = {"experiment": name, "seed": int(seed), "quick": bool(quick), **body_results,
                       "seconds": round(time.perf_counter() - t0, 1), "out_dir": out_dir}
            save_json(jsonable(results), os.path.join(out_dir, RESULTS_FILE))
            return results

        return run

    return wrap


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no window)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save(fig, out_dir: str, filename: str, dpi: int = 100) -> str:
    """Save `fig` as out_dir/filename (atomically, with a 256-color palette, then closed); returns the
    path."""
    from fnnet.plots import save_figure

    path = os.path.join(out_dir, filename)
    save_figure(fig, path, dpi=dpi, colors=256)
    return path


def bar(total: int, desc: str, progress: bool):
    """A tqdm progress bar (silent when progress is False)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, leave=False)


def say(message: str, progress: bool) -> None:
    """A line above the progress bar (nothing when progress is False)."""
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(message)


def mnist(n_train: int | None = None, n_test: int | None = None, progress: bool = True):
    """((x_train, t_train), (x_test, t_test)) from `fnnet.datasets.load_mnist()` (flattened, in [0, 1],
    int labels), cut to the first n_train / n_test images when given."""
    from fnnet.datasets import load_mnist

    (x_tr, t_tr), (x_te, t_te) = load_mnist(progress=progress)
    return (x_tr[:n_train], t_tr[:n_train]), (x_te[:n_test], t_te[:n_test])


def mnist_train(n_train: int, progress: bool = True):
    """(x, t): the first n_train MNIST training images only (the test set is not kept)."""
    from fnnet.datasets import load_mnist

    (x, t), _ = load_mnist(progress=progress)
    return x[:n_train], t[:n_train]


def quiet_fit(model, optimizer, train, test, *, epochs: int, batch_size: int, seed: int):
    """`fnnet.training.fit` without its own progress bars and per-epoch lines."""
    from fnnet.training import fit

    return fit(model, optimizer, train, test, epochs=epochs, batch_size=batch_size, seed=seed, progress=False,
               log=lambda *_: None)


def smooth(y) -> np.ndarray:
    """The book's smooth_curve: an 11-point Kaiser-window (beta 2) moving average, same length."""
    y = np.asarray(y, dtype=np.float64)
    window = 11
    if len(y) < window:
        return y
    s = np.r_[y[window - 1:0:-1], y, y[-1:-window:-1]]
    w = np.kaiser(window, 2)
    out = np.convolve(w / w.sum(), s, mode="valid")
    return out[5:len(out) - 5]


def fit_runs(runs: dict, train, test, *, epochs, batch_size: int, seed: int, progress: bool,
             desc: str) -> dict:
    """Train each `runs[name] = (model, optimizer)` (with `epochs[name]` or `epochs` epochs) by
    `quiet_fit`; {name: history}, or None for a run whose loss became NaN or infinite."""
    from fnnet.training import TrainingDiverged

    histories = {}
    with bar(len(runs), desc, progress) as pbar:
        for name, (model, optimizer) in runs.items():
            n_epochs = epochs[name] if isinstance(epochs, dict) else epochs
            try:
                histories[name] = quiet_fit(model, optimizer, train, test, epochs=n_epochs,
                                            batch_size=batch_size, seed=seed).history
            except TrainingDiverged:
                histories[name] = None
            pbar.update()
    return histories


def loss_curves(curves: dict, title: str, ylim: float):
    """A figure of smoothed training-loss curves against the iteration, one per label (the book's
    figures 6-9 and 6-15)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for label, loss in curves.items():
        loss = np.asarray(loss)
        ax.plot(np.arange(1, len(loss) + 1), smooth(loss), label=label, lw=1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_ylim(0, ylim)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def loss_summary(history: dict) -> dict:
    """{'loss': per iteration, 'final_loss': mean of the last tenth, 'test_acc': the last epoch's}."""
    loss = np.asarray(history["loss"])
    tail = loss[-max(1, len(loss) // 10):]
    return {"loss": loss, "final_loss": float(tail.mean()), "test_acc": history["test_acc"][-1]}
