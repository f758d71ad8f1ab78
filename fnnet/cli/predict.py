"""`fnnet predict`: classify image files of handwritten digits with a trained network.

    fnnet predict --params runs/simple_convnet-mnist/params.npz seven.png two.jpg
    seven.png: 7 (p=0.97)  next: 1 0.02, 9 0.01

Each image is prepared as MNIST's digits were (`fnnet.datasets.prepare_digit`) before the
network sees it. A file that cannot be used (unreadable, truncated, NaN or out-of-range pixels,
no digit) is one line on stderr; the others are still predicted, and the exit status is 1.
"""

from __future__ import annotations

import json
import math
import os
import sys

from fnnet.cli.common import (
    DataError,
    add_debug,
    add_trust_run,
    check_params_file,
    model_type,
    one_line,
    untrusted_line,
)

MAX_SHOWN = 50  # --show draws at most this many images (one row each)
THUMB = 140  # --show: the input is drawn from a copy at most this many pixels on a side


def _model(text):
    """A model `fnnet predict` and `fnnet draw` can load (fnnet.inference.MODELS), or your own network."""
    from fnnet.inference import MODELS

    return model_type(MODELS)(text)


def add_parser(sub):
    """Register `predict` on the subparsers `sub`; returns its parser."""
    p = sub.add_parser(
        "predict", help="classify images of handwritten digits",
        description="Classify image files of one handwritten digit each (any size, grey or colour; "
                    "prepared as MNIST was made: white on black, cropped, fit to 20x20, centred by "
                    "centre of mass in 28x28).")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (PNG, JPEG, ... anything Pillow reads)")
    p.add_argument("--params", required=True, metavar="FILE",
                   help="a run's params.npz (its metrics.json says the model) or .ckpt, or the book's "
                   "sample_weight.pkl, params.pkl or deep_convnet_params.pkl")
    p.add_argument("--model", type=_model, default=None, metavar="NAME|MODULE:ATTR|FILE.py:ATTR",
                   help="the network (default: the run's, or for the book's .pkl the one its arrays fit)")
    add_trust_run(p)
    p.add_argument("--json", action="store_true",
                   help='print [{"image": PATH, "label": D, "probabilities": [10 floats]}, ...] instead')
    p.add_argument("--show", default=None, metavar="OUT.png",
                   help=f"write a figure: each input, its 28x28 preparation, the probabilities and, for "
                   f"a network that begins with a convolution, that layer's feature maps (the first "
                   f"{MAX_SHOWN} images); not one of the images")
    add_debug(p)
    return p


def _line(path: str, probs) -> str:
    """PATH: D (p=0.97)  next: E 0.02, F 0.01"""
    order = sorted(range(len(probs)), key=lambda d: -probs[d])
    best, nxt = order[0], order[1:3]
    return f"{path}: {best} (p={probs[best]:.2f})  next: " + ", ".join(f"{d} {probs[d]:.2f}" for d in nxt)


def _thumbnail(grey):
    """A copy of a greyscale image at most THUMB pixels on a side, for the figure."""
    import numpy as np
    from PIL import Image

    img = Image.fromarray(grey)
    img.thumbnail((THUMB, THUMB), Image.BOX)
    return np.asarray(img)


def feature_mosaic(maps):
    """One (H, W) float image of feature maps (FN, OH, OW): the maps in a near-square grid, row by row,
    each scaled to [0, 1] by its own min and max (as the draw page shows them), NaN in the one-pixel
    gaps between them and in the unused tiles."""
    import numpy as np

    maps = np.asarray(maps, np.float64)
    if maps.ndim != 3 or 0 in maps.shape:
        raise ValueError(f"feature_mosaic: maps must have shape (FN, OH, OW) with FN, OH, OW >= 1, "
                         f"got {maps.shape}")
    n, h, w = maps.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for k, m in enumerate(maps):
        lo, span = m.min(), np.ptp(m)
        r, c = divmod(k, cols)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = (m - lo) / span if span > 0 else 0.0
    return out


def save_predictions_figure(rows, path) -> None:
    """A PNG at `path`, one row per (name, input greyscale (H, W), prepared (1, 28, 28), probabilities
    (10,), first convolution's feature maps (FN, OH, OW) or None): the input, the 28x28 image the
    network sees, the ten probabilities as bars and, for a network that begins with a convolution,
    its feature maps (`feature_mosaic`)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from fnnet.plots import save_figure

    with_maps = any(row[4] is not None for row in rows)
    ratios = [1, 1, 2.2] + ([1.4] if with_maps else [])
    fig, axes = plt.subplots(len(rows), len(ratios), figsize=(7.5 + 2.6 * with_maps, 1.9 * len(rows)),
                             squeeze=False, gridspec_kw={"width_ratios": ratios})
    greys = plt.get_cmap("gray").with_extremes(bad="white")
    for (name, grey, prepared, probs, maps), (a_in, a_prep, a_bar, *a_maps) in zip(rows, axes, strict=True):
        best = int(probs.argmax())
        a_in.imshow(grey, cmap="gray", vmin=0, vmax=1)
        a_in.set_title(os.path.basename(name)[:28], fontsize=8)
        a_prep.imshow(prepared[0], cmap="gray", vmin=0, vmax=1)
        a_prep.set_title("28x28 input", fontsize=8)
        for a in (a_in, a_prep, *a_maps):
            a.set_xticks([])
            a.set_yticks([])
        a_bar.bar(range(10), probs, color=["tab:red" if d == best else "tab:gray" for d in range(10)])
        a_bar.set_xticks(range(10))
        a_bar.set_ylim(0, 1)
        a_bar.tick_params(labelsize=7)
        a_bar.set_title(f"{best} (p={probs[best]:.2f})", fontsize=8)
        for a in a_maps:
            if maps is None:
                a.set_axis_off()
                continue
            a.imshow(feature_mosaic(maps), cmap=greys, vmin=0, vmax=1, interpolation="nearest")
            a.set_title(f"{len(maps)} feature maps", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: the same real path, or the same inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def classifier_for(params, model, trust: bool):
    """`load_classifier` for predict and draw: --params checked first, refused code in CLI words."""
    from fnnet.inference import UntrustedCodeError, load_classifier

    check_params_file(params)
    try:
        return load_classifier(params, model, trust=trust)
    except UntrustedCodeError as e:
        raise DataError(untrusted_line(e.metrics_path, e.spec)) from None


def run(args, parser) -> int:
    """Print one line (or a JSON entry) per image; 1 when an image could not be used."""
    import numpy as np

    from fnnet.datasets.digit_image import prepare_grey, read_grey

    if args.show is not None:
        folder = os.path.dirname(os.path.abspath(args.show))
        if not os.path.isdir(folder):
            raise ValueError(f"--show {args.show}: no folder {folder}")
        inputs = [name for name in args.images if _same_file(args.show, name)]
        if inputs:
            raise ValueError(f"--show {args.show} is the input image {inputs[0]}: the figure would overwrite "
                             "it; choose another file")
    classifier = classifier_for(args.params, args.model, args.trust_run)
    names, prepared, thumbs, failed = [], [], [], 0
    for name in args.images:
        try:
            grey = read_grey(name)
            prepared.append(prepare_grey(grey, name))
        except Exception as e:  # one image that cannot be used must not cost the others their answers
            ours = isinstance(e, (OSError, ValueError))  # prepare_digit's messages name the file
            if args.debug and not ours:
                raise
            line = one_line(e) if ours else f"{name}: {one_line(e)} (--debug shows the traceback)"
            print(f"fnnet predict: error: {line}", file=sys.stderr, flush=True)
            failed += 1
            continue
        names.append(name)
        if args.show is not None and len(thumbs) < MAX_SHOWN:
            thumbs.append(_thumbnail(grey))
    probs = classifier.probabilities(np.stack(prepared)) if prepared else np.zeros((0, 10), np.float32)
    if args.json:
        print(json.dumps([{"image": n, "label": int(p.argmax()),
                           "probabilities": [round(float(v), 6) for v in p]}
                          for n, p in zip(names, probs, strict=True)]))
    else:
        for n, p in zip(names, probs, strict=True):
            print(_line(n, p))
    sys.stdout.flush()
    if args.show is not None and names:
        if len(names) > MAX_SHOWN:
            print(f"fnnet predict: --show draws the first {MAX_SHOWN} of the {len(names)} images",
                  file=sys.stderr)
        shown = np.stack(prepared[:MAX_SHOWN])
        maps = classifier.feature_maps(shown)
        maps = [None] * len(shown) if maps is None else list(maps)
        save_predictions_figure(list(zip(names, thumbs, shown, probs, maps, strict=False)), args.show)
    return 1 if failed else 0
