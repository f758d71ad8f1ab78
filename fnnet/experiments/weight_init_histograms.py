"""`weight-init-histograms` (chapter 6, figures 6-10 to 6-14): how the initial weight scale shapes
the activations of a deep net.

1,000 Gaussian inputs of 100 features pass through 5 layers of 100 units (no biases) with weights
N(0, 1) * std for std 1, 0.01, Xavier sqrt(1/n) and He sqrt(2/n), and sigmoid, tanh or ReLU.
One figure per activation (rows: initialisation, columns: layers). Every panel's histogram spans
that panel's own range, from its smallest to its largest value (the two x ticks), so a layer whose
values grow past 1e4 (ReLU with std 1) or shrink below 1e-4 (ReLU with std 0.01) is shown where
its values are. The bar of ReLU's exact zeros (about half of the values) is cut at the height of the
tallest other bar, and its share is written in the panel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fnnet.experiments import _common
from fnnet.functions import relu, sigmoid, tanh
from fnnet.init import weight_std

ACTIVATIONS = {"sigmoid": sigmoid, "tanh": tanh, "relu": relu}
INITS = {"std 1": 1.0, "std 0.01": 0.01, "Xavier": "xavier", "He": "he"}
LAYERS, NODES, BINS = 5, 100, 30


def activations(key, act, spec, n_samples=1000, node_num=NODES, layers=LAYERS):
    """The activations of each layer, (layers, n_samples, node_num), for weights of std `spec`."""
    kx, kw = jax.random.split(key)
    x = jax.random.normal(kx, (n_samples, node_num))
    out = []
    for i in range(layers):
        w = weight_std(spec, node_num) * jax.random.normal(jax.random.fold_in(kw, i), (node_num, node_num))
        x = act(x @ w)
        out.append(x)
    return jnp.stack(out)


def summarise(values) -> dict:
    """The histogram over the values' own range and the statistics behind one panel."""
    v = np.asarray(values, np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(v, BINS, range=(lo, hi))
    return {"min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()), "std": float(v.std()),
            "zero_fraction": float(np.mean(v == 0.0)), "counts": counts, "edges": edges}


def figure(name, panels):
    """Rows: initialisations; columns: layers. `panels[init][layer]` as made by `summarise`."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(len(panels), LAYERS, figsize=(13, 2.1 * len(panels)))
    for r, (row, (label, layers)) in enumerate(zip(axes, panels.items(), strict=True)):
        for i, (ax, s) in enumerate(zip(row, layers, strict=True)):
            counts, edges = np.asarray(s["counts"]), np.asarray(s["edges"])
            ax.stairs(counts, edges, fill=True, color="C0")
            note, top = f"std {s['std']:.2g}", counts.max()
            zero_bin = int(np.searchsorted(edges, 0.0, side="right")) - 1
            if s["zero_fraction"] > 0.05 and 0 <= zero_bin < len(counts) and len(counts) > 1:
                top = np.delete(counts, zero_bin).max()
                note += f"\nzeros {100 * s['zero_fraction']:.0f}% (bar cut)"
            ax.set_ylim(0, max(1.3 * top, 1))
            ax.set_xlim(edges[0], edges[-1])
            ax.set_xticks([edges[0], edges[-1]])
            ax.set_xticklabels([f"{edges[0]:.3g}", f"{edges[-1]:.3g}"], fontsize=7)
            ax.set_yticks([])
            ax.text(0.97, 0.94, note, transform=ax.transAxes, fontsize=7, ha="right", va="top",
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1})
            if i == 0:
                ax.set_ylabel(label)
            if r == 0:
                ax.set_title(f"layer {i + 1}")
    fig.suptitle(f"{name}: activations per layer for each initial weight scale (x axis: each panel's own "
                 f"min to max)")
    fig.tight_layout()
    return fig


@_common.experiment("weight-init-histograms")
def run(out_dir, *, seed, quick, progress):
    """Per activation, init and layer: range, mean, std, share of zeros and the histogram; one PNG per
    activation, activation_hist_<name>.png. --quick uses 200 inputs instead of 1,000."""
    n_samples = 200 if quick else 1000
    key = jax.random.PRNGKey(seed)
    stats, figures = {}, []
    with _common.bar(len(ACTIVATIONS) * len(INITS), "activations", progress) as pbar:
        for name, act in ACTIVATIONS.items():
            stats[name] = {}
            for label, spec in INITS.items():
                a = np.asarray(activations(key, act, spec, n_samples))
                stats[name][label] = [summarise(a[i]) for i in range(LAYERS)]
                pbar.update()
            figures.append(_common.save(figure(name, stats[name]), out_dir, f"activation_hist_{name}.png"))
    for name in stats:
        for label, layers in stats[name].items():
            stds = ", ".join(f"{s['std']:.3g}" for s in layers)
            _common.say(f"{name:>7} {label:>8}: std per layer {stds}", progress)
    return {"n_samples": n_samples, "layers": LAYERS, "nodes": NODES, "stats": stats, "figures": figures}
