"""Training curves as in the book's figures: loss per iteration, accuracy per epoch."""

from __future__ import annotations

__all__ = ["curves_figure", "plot_curves", "save_figure"]


def plot_curves(history: dict, path) -> None:
    """Save a PNG with two panels: history['loss'] per iteration and history['train_acc'] /
    history['test_acc'] per epoch. Written atomically (temporary file, then os.replace)."""
    save_figure(curves_figure(history), path)


def curves_figure(history: dict):
    """The figure of `plot_curves`, not saved. The epoch axis runs from 0 to the last epoch with whole
    epochs as ticks, so a run of one or a few epochs reads as such."""
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
    ax2.plot(epochs, history.get("train_acc", []), marker="o" if few else None, label="train",
             clip_on=False)
    test = [a for a in history.get("test_acc", []) if a is not None]
    if test:
        ax2.plot(range(1, len(test) + 1), test, marker="s" if few else None, linestyle="--",
                 label="test", clip_on=False)
    ax2.set_xlim(0, max(len(epochs), len(test), 1))
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1.0)
    ax2.set_title("accuracy")
    ax2.legend(loc="lower right")
    fig.tight_layout()
    return fig


def save_figure(fig, path, dpi: int = 100, colors: int | None = None, **savefig_kw) -> None:
    """Save a matplotlib figure as PNG atomically (temporary file, then rename), and close it.
    `savefig_kw` go to `fig.savefig` (e.g. bbox_inches="tight"). With `colors` (2 to 256) the image
    is reduced to a palette of that many colors: a file about a third of the size for plots of lines
    and flat fills, with no visible change."""
    import matplotlib.pyplot as plt

    from fnnet.io import atomic_write

    if colors is not None and not (isinstance(colors, int) and 2 <= colors <= 256):
        plt.close(fig)
        raise ValueError(f"save_figure: colors must be an integer from 2 to 256, got {colors!r}")

    def write(f):
        if colors is None:
            fig.savefig(f, format="png", dpi=dpi, **savefig_kw)
            return
        import io

        from PIL import Image

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, **savefig_kw)
        buf.seek(0)
        with Image.open(buf) as img:
            img.convert("RGB").quantize(colors).save(f, format="png", optimize=True)

    try:
        atomic_write(path, write)
    finally:
        plt.close(fig)
