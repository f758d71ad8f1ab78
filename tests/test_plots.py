"""The training curves: the epoch axis of a short run reads in whole epochs from 0."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from fnnet.plots import curves_figure, plot_curves


@pytest.mark.parametrize("epochs", [1, 2, 5, 40])
def test_the_epoch_axis_runs_from_0_to_the_last_epoch_in_whole_epochs(epochs):
    history = {"loss": [2.3 - 0.01 * i for i in range(10 * epochs)],
               "train_acc": [0.5 + 0.01 * i for i in range(epochs)],
               "test_acc": [0.4 + 0.01 * i for i in range(epochs)]}
    fig = curves_figure(history)
    try:
        ax = fig.axes[1]
        assert ax.get_xlim() == (0, epochs)
        ticks = [t for t in ax.get_xticks() if 0 <= t <= epochs]
        assert len(ticks) >= 2 and all(t == int(t) for t in ticks), ticks
        assert ticks[0] == 0 and ticks[-1] <= epochs
    finally:
        plt.close(fig)


def test_plot_curves_writes_the_png(tmp_path):
    """It writes a PNG and closes its figure (other tests of the process may hold figures of theirs)."""
    path = tmp_path / "curves.png"
    before = set(plt.get_fignums())
    plot_curves({"loss": [2.3, 2.0, 1.5], "train_acc": [0.8], "test_acc": [0.7]}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(plt.get_fignums()) == before
