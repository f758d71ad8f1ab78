"""Training curves as in the book's figures: loss per iteration, accuracy per epoch."""

from __future__ import annotations

__all__ = ["plot_curves", "save_figure"]


def plot_curves(history: dict, path) -> None:
    """Save a PNG with two panels: history['loss'] per iteration and history['train_acc'] /
    history['test_acc'] per epoch. Written atomically (temporary file, then os.replace)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    loss = history.get("loss", [])
    ax1.plot(range(1, len(loss) + 1), loss, lw=0.6)
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("loss")
    ax1.set_title("training loss")
    epochs = range(1, len(history.get("train_acc", [])) + 1)
    few = len(epochs) <= 30
    ax2.plot(epochs, history.get("train_acc", []), marker="o" if few else None, label="train")
    test = [a for a in history.get("test_acc", []) if a is not None]
    if test:
        ax2.plot(range(1, len(test) + 1), test, marker="s" if few else None, linestyle="--", label="test")
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1.0)
    ax2.set_title("accuracy")
    ax2.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig, path, dpi: int = 100, **savefig_kw) -> None:
    """Save a matplotlib figure as PNG atomically (temporary file, then rename), and close it.
    `savefig_kw` go to `fig.savefig` (e.g. bbox_inches="tight")."""
    import matplotlib.pyplot as plt

    from fnnet.io import atomic_write

    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, **savefig_kw))
    finally:
        plt.close(fig)
