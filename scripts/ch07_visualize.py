"""Look inside a trained SimpleConvNet: filters, mistakes, feature maps, low-precision inference.

    python scripts/ch07_visualize.py --params runs/ch07/simple/params.npz --out runs/ch07_visualize

--params is a params.npz written by `fnnet train` (or the book's params.pkl).
Writes to --out:
- filters.png: the first-layer filters at initialisation (as `fit` draws them for --seed) and
  after training;
- misclassified.png: test images the network gets wrong, with true and predicted labels;
- responses.png: one test image and its responses to the learned filters (conv + ReLU);
- precision.json: test accuracy with weights and inputs in float32, float16 and bfloat16.
MNIST comes from --data-dir or $FNNET_DATA_DIR.

    python scripts/ch07_visualize.py --params "$FNNET_BOOK_WEIGHTS_DIR/params.pkl" --page-figures docs/figures

writes only the chapter page's figures, ch07_filters.png and ch07_responses.png (the book's trained
weights; smaller files, no accuracy measured).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from fnnet.datasets import load_mnist
from fnnet.io import load_params, save_json
from fnnet.layers import conv_fast, convolution, relu
from fnnet.models import simple_convnet
from fnnet.plots import save_figure


def _grid(n, cols):
    return math.ceil(n / cols), cols


def plot_filters(before, after, path, colors=None):
    """before/after: (FN, 1, FH, FW) first-layer filters, each scaled to its own range (gray)."""
    fn = before.shape[0]
    cols = 10
    rows, _ = _grid(fn, cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(cols * 0.9, 2 * rows * 0.95 + 0.6))
    for block, (title, w) in enumerate((("at initialisation", before), ("after training", after))):
        for i in range(rows * cols):
            ax = axes[block * rows + i // cols, i % cols]
            ax.axis("off")
            if i < fn:
                ax.imshow(w[i, 0], cmap="gray_r", interpolation="nearest")
        axes[block * rows, 0].set_title(title, loc="left", fontsize=10, x=0)
    save_figure(fig, path, dpi=110, colors=colors, bbox_inches="tight")


def plot_misclassified(x, t, pred, path, limit=40):
    wrong = np.flatnonzero(pred != t)[:limit]
    cols = 10
    rows = max(1, math.ceil(len(wrong) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.0, rows * 1.45), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < len(wrong):
            i = wrong[k]
            ax.imshow(x[i, 0], cmap="gray_r")
            ax.set_title(f"true {t[i]}\npred {pred[i]}", fontsize=7)
    fig.suptitle(f"{int(np.sum(pred != t))} misclassified test images (first {len(wrong)})", fontsize=10)
    save_figure(fig, path, dpi=110, bbox_inches="tight")


def plot_responses(params, image, path, stride=1, pad=0, colors=None):
    """The image and relu(conv(image)) for every learned first-layer filter."""
    y, _ = convolution.forward({"W": params["W1"], "b": params["b1"]}, image[None], stride=stride, pad=pad)
    y, _ = relu.forward({}, y)
    maps = np.asarray(y[0])
    fn = maps.shape[0]
    cols = 8
    rows = math.ceil((fn + 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.2), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k == 0:
            ax.imshow(np.asarray(image[0]), cmap="gray_r")
            ax.set_title("input", fontsize=7)
        elif k <= fn:
            ax.imshow(maps[k - 1], cmap="gray_r")
            ax.set_title(f"filter {k}", fontsize=7)
    save_figure(fig, path, dpi=110, colors=colors, bbox_inches="tight")


def accuracy(params, x, t, dtype, batch_size=1000):
    p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
    predict = jax.jit(functools.partial(simple_convnet.predict, conv_impl=conv_fast.resolve()))
    preds = [np.asarray(predict(p, jnp.asarray(x[i : i + batch_size], dtype)).astype(jnp.float32)).argmax(1)
             for i in tqdm(range(0, len(x), batch_size), desc=jnp.dtype(dtype).name, leave=False)]
    pred = np.concatenate(preds)
    return float(np.mean(pred == t)), pred


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="runs/ch07/simple/params.npz")
    ap.add_argument("--seed", type=int, default=0, help="the training seed, to redraw the initial filters")
    ap.add_argument("--data-dir", default=None, help="MNIST folder (default: $FNNET_DATA_DIR)")
    ap.add_argument("--image", type=int, default=0, help="test image index for responses.png")
    ap.add_argument("--out", default="runs/ch07_visualize")
    ap.add_argument("--page-figures", metavar="DIR",
                    help="write only the chapter page's figures, ch07_filters.png and ch07_responses.png")
    args = ap.parse_args(argv)
    os.makedirs(args.page_figures or args.out, exist_ok=True)

    params = {k: jnp.asarray(v, jnp.float32) for k, v in load_params(args.params).items()}
    _, (x, t) = load_mnist(flatten=False, data_dir=args.data_dir)
    input_dim = tuple(x.shape[1:])
    # fit() draws the initial parameters from the first half of split(PRNGKey(seed)).
    init_key = jax.random.split(jax.random.PRNGKey(args.seed))[0]
    hidden = params["W2"].shape[1]
    cp = {"filter_num": params["W1"].shape[0], "filter_size": params["W1"].shape[2]}
    before = simple_convnet.init(init_key, input_dim, cp, hidden, params["W3"].shape[1])
    if args.page_figures:
        plot_filters(np.asarray(before["W1"]), np.asarray(params["W1"]),
                     os.path.join(args.page_figures, "ch07_filters.png"), colors=64)
        plot_responses(params, jnp.asarray(x[args.image]),
                       os.path.join(args.page_figures, "ch07_responses.png"), colors=64)
        print(f"ch07_filters.png and ch07_responses.png in {args.page_figures}")
        return None
    plot_filters(np.asarray(before["W1"]), np.asarray(params["W1"]), os.path.join(args.out, "filters.png"))

    results = {"params": os.path.basename(args.params)}
    pred32 = None
    for name, dtype in (("float32", jnp.float32), ("float16", jnp.float16), ("bfloat16", jnp.bfloat16)):
        acc, pred = accuracy(params, x, t, dtype)
        results[name] = acc
        pred32 = pred if pred32 is None else pred32
        print(f"test accuracy {name}: {acc:.4f}")
    results["float16_minus_float32_points"] = 100 * (results["float16"] - results["float32"])
    results["bfloat16_minus_float32_points"] = 100 * (results["bfloat16"] - results["float32"])
    plot_misclassified(x, t, pred32, os.path.join(args.out, "misclassified.png"))
    plot_responses(params, jnp.asarray(x[args.image]), os.path.join(args.out, "responses.png"))
    save_json(results, os.path.join(args.out, "precision.json"))
    print(f"figures and precision.json in {args.out}")


if __name__ == "__main__":
    main()
