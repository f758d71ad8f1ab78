"""Digits drawn as a person draws them on a 280x280 canvas, classified by the book's SimpleConvNet
after `prepare_digit` and after the naive preparation (resize to 28x28, invert).

    python scripts/handwriting.py [--n 200] [--seed 0] [--weights DIR] [--out runs/handwriting]

Each digit is a few pen strokes (lines, arcs, curves; several styles per digit: a 1 with or
without a flag and base, a 7 with or without a bar, an open or closed 4, ...), with per-sample
jitter and a smooth wobble, a slant of -20 to 20 degrees, a height of 90 to 220 px, a pen 14 to
24 px wide, at a random, usually off-centre, place on white paper in dark ink. The PNGs, a
contact sheet and results.json go to --out; the figure comparing the two preparations to
--figure (default docs/naive_resize.png). The weights are the book's params.pkl from --weights
or $FNNET_BOOK_WEIGHTS_DIR.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 280
SUPERSAMPLE = 4  # strokes are drawn 4x larger, then reduced: antialiased edges like a drawing app's
HEIGHTS = (90, 220)
PEN_WIDTHS = (14, 24)
SLANT_DEG = 20
# Width of a digit's box relative to its height (before per-sample variation).
ASPECT = {0: 0.68, 1: 0.4, 2: 0.66, 3: 0.6, 4: 0.72, 5: 0.62, 6: 0.6, 7: 0.62, 8: 0.58, 9: 0.6}


def arc(cx, cy, rx, ry, a0, a1, n=40):
    """Points along an ellipse from angle a0 to a1 in degrees (0 = right, 90 = down: image axes)."""
    t = np.radians(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def bezier(p0, p1, p2, n=30):
    """A quadratic Bezier curve from p0 to p2 pulled towards p1."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def poly(*points):
    return np.asarray(points, float)


def chain(*parts):
    """One pen stroke through several pieces, in order."""
    return np.concatenate([np.asarray(p, float) for p in parts])


def shapes(digit: int, rng) -> list:
    """The strokes of one digit in a unit box (x right, y down, both 0..1), in a random style,
    with the style's proportions jittered."""
    j = lambda s=0.04: rng.normal(0, s)  # noqa: E731
    style = rng.integers(3)
    if digit == 0:
        return [arc(0.5 + j(), 0.5, 0.5 + j(0.03), 0.5, -95 + j(8), 270 + abs(j(15)), 60)]
    if digit == 1:
        stem = poly((0.55 + j(), 0.0), (0.5 + j(), 1.0))
        if style == 0:
            return [stem]
        flag = poly((0.1 + j(), 0.28 + j()), stem[0])
        strokes = [chain(flag, stem)]
        if style == 2:
            strokes.append(poly((0.12 + j(), 1.0), (0.9 + j(), 1.0 + j(0.02))))
        return strokes
    if digit == 2:
        top = arc(0.5, 0.3 + j(0.02), 0.46, 0.3 + j(0.03), 185 + j(12), 385 + j(12))
        foot = (0.0 + j(0.03), 0.98)
        diagonal = bezier(top[-1], (0.45 + j(0.08), 0.62 + j(0.05)), foot) if style else poly(top[-1], foot)
        return [chain(top, diagonal, poly((1.0 + j(0.04), 0.98 + j(0.02))))]
    if digit == 3:
        mid = (0.45 + j(), 0.5 + j(0.03))
        if style == 2:  # a flat top
            upper = poly((0.08, 0.0), (0.92 + j(), 0.0), mid)
        else:
            upper = arc(0.48, mid[1] / 2, 0.42, mid[1] / 2, 200 + j(12), 450)
        lower = arc(0.5, (1 + mid[1]) / 2, 0.48, (1 - mid[1]) / 2, -90, 160 + j(12))
        return [chain(upper, lower)]
    if digit == 4:
        bar_y = 0.64 + j(0.04)
        stem_x = 0.72 + j(0.04)
        if style == 2:  # closed: the bar meets the stem's top
            return [poly((stem_x, 0.0), (0.02 + j(0.03), bar_y), (1.0, bar_y)),
                    poly((stem_x, 0.0), (stem_x, 1.0))]
        return [poly((0.55 + j(), 0.0), (0.02 + j(0.03), bar_y), (1.0 + j(0.03), bar_y)),
                poly((stem_x, 0.25 + j()), (stem_x + j(0.03), 1.0))]
    if digit == 5:
        corner = (0.18 + j(0.03), 0.46 + j(0.03))
        bowl = arc(0.5, 0.69, 0.46, 0.31 + j(0.02), -150 + j(8), 155 + j(12))
        bowl = bowl - bowl[0] + corner
        if style == 0:  # one stroke: the bar, then down, then the bowl
            return [chain(poly((0.9 + j(), 0.0 + j(0.02)), (0.2 + j(0.03), 0.0)), poly(corner), bowl)]
        return [chain(poly((0.2 + j(0.03), 0.0)), poly(corner), bowl),
                poly((0.22, 0.0), (0.92 + j(), 0.02 + j(0.02)))]
    if digit == 6:
        # down the left side into a loop in the lower part, closing back towards the neck
        loop = arc(0.52, 0.74, 0.38 + j(0.03), 0.24 + j(0.02), 180, -180 + abs(j(20)))
        neck = bezier((0.72 + j(0.06), 0.0), (0.18 + j(0.06), 0.22 + j(0.05)), loop[0])
        return [chain(neck, loop)]
    if digit == 7:
        corner = (1.0 + j(0.03), 0.0 + j(0.02))
        foot = (0.3 + j(0.06), 1.0)
        stem = poly(corner, foot) if style != 1 else bezier(corner, (0.55 + j(0.05), 0.45), foot)
        top = poly((0.0, 0.02 + j(0.03)), corner) if style != 2 else poly((0.0, 0.15), (0.02, 0.0), corner)
        strokes = [chain(top, stem)]
        if style == 2 or rng.random() < 0.3:  # the continental bar
            y = 0.52 + j(0.03)
            x = corner[0] + (foot[0] - corner[0]) * y
            strokes.append(poly((x - 0.25, y), (x + 0.25, y + j(0.02))))
        return strokes
    if digit == 8:
        waist = 0.47 + j(0.03)
        upper = arc(0.5 + j(0.03), waist / 2, 0.36 + j(0.03), waist / 2, 90, 450)
        lower = arc(0.5 + j(0.03), (1 + waist) / 2, 0.46 + j(0.03), (1 - waist) / 2, -90, 270)
        return [upper, lower]
    if digit == 9:
        loop = arc(0.48, 0.28 + j(0.02), 0.44, 0.28 + j(0.02), 0, 360 + j(15))
        right = loop[0]
        tail = bezier(right, (0.95 + j(0.03), 0.85), (0.55 + j(0.06), 1.0)) if style == 1 else \
            poly(right, (0.85 + j(0.05), 1.0))
        return [loop, tail]
    raise ValueError(f"shapes: digit must be 0..9, got {digit}")


def _wobble(p, rng, amount):
    """A smooth random displacement of unit-box points: two low-frequency waves per axis."""
    out = p.copy()
    for axis in (0, 1):
        for _ in range(2):
            k = rng.normal(0, 1.2, 2)
            size, phase = amount * rng.uniform(0.3, 1.0), rng.uniform(0, 2 * np.pi)
            out[:, axis] += size * np.sin(2 * np.pi * (p @ k) + phase)
    return out


def draw_digit(digit: int, rng) -> Image.Image:
    """One handwritten `digit` on a 280x280 white canvas in dark ink (a greyscale PIL image)."""
    strokes = [_wobble(s, rng, 0.025) for s in shapes(digit, rng)]
    height = rng.uniform(*HEIGHTS)
    width = height * ASPECT[digit] * rng.uniform(0.8, 1.2)
    slant = math.tan(math.radians(rng.uniform(-SLANT_DEG, SLANT_DEG)))
    turn = math.radians(rng.normal(0, 4))
    c, s = math.cos(turn), math.sin(turn)
    placed = []
    for p in strokes:
        x, y = (p[:, 0] - 0.5) * width, (p[:, 1] - 0.5) * height
        x = x - slant * y  # a positive slant leans the top to the right
        placed.append(np.stack([c * x - s * y, s * x + c * y], axis=1))
    pen = rng.uniform(*PEN_WIDTHS)
    pts = np.concatenate(placed)
    lo, hi = pts.min(0) - pen / 2 - 2, pts.max(0) + pen / 2 + 2
    room = np.maximum(CANVAS - (hi - lo), 0)
    offset = -lo + rng.uniform(0, 1, 2) * room
    big = CANVAS * SUPERSAMPLE
    img = Image.new("L", (big, big), int(rng.uniform(240, 256)))
    draw = ImageDraw.Draw(img)
    ink = int(rng.uniform(0, 60))
    w = pen * SUPERSAMPLE
    for p in placed:
        q = [tuple(v) for v in (p + offset) * SUPERSAMPLE]
        draw.line(q, fill=ink, width=round(w), joint="curve")
        for x, y in (q[0], q[-1]):  # round pen ends
            draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=ink)
    return img.resize((CANVAS, CANVAS), Image.LANCZOS)


def draw_digits(n: int, seed: int = 0) -> list:
    """n (image, label) pairs, the digits 0..9 in turn."""
    rng = np.random.default_rng(seed)
    return [(draw_digit(i % 10, rng), i % 10) for i in range(n)]


def naive(img) -> np.ndarray:
    """What one tries first: resize the canvas to 28x28 and invert, (1, 28, 28) in [0, 1]."""
    small = img.convert("L").resize((28, 28))
    return (1.0 - np.asarray(small, np.float32) / 255.0)[None]


def classify(classifier, images, prepare) -> np.ndarray:
    """Predicted labels of `images` after `prepare` (image -> (1, 28, 28))."""
    x = np.stack([prepare(img) for img in images])
    return classifier.probabilities(x).argmax(1)


def contact_sheet(images, path, columns=20) -> None:
    """The drawn canvases as a grid of 70x70 thumbnails, to look at them."""
    rows = math.ceil(len(images) / columns)
    sheet = Image.new("L", (columns * 70, rows * 70), 128)
    for i, img in enumerate(images):
        sheet.paste(img.resize((68, 68), Image.BOX), ((i % columns) * 70 + 1, (i // columns) * 70 + 1))
    sheet.save(path)


def comparison_figure(samples, path, title="") -> None:
    """Rows: the drawn canvas, the naive 28x28 and the prepared 28x28, each with its prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fnnet.plots import save_figure

    fig, axes = plt.subplots(3, len(samples), figsize=(1.55 * len(samples), 5.1), squeeze=False)
    titles = ("drawn (280x280)", "naive: resize, invert", "prepare_digit")
    for col, (img, label, x_naive, p_naive, x_prep, p_prep) in enumerate(samples):
        cells = ((np.asarray(img), None), (x_naive[0], p_naive), (x_prep[0], p_prep))
        for row, (pic, pred) in enumerate(cells):
            ax = axes[row, col]
            ax.imshow(pic, cmap="gray", vmin=0, vmax=255 if row == 0 else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(titles[row], fontsize=8)
            if pred is None:
                ax.set_title(f"a {label}", fontsize=9)
            else:
                ax.set_title(f"says {pred}", fontsize=9, color="tab:green" if pred == label else "tab:red")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="digits to draw, the ten in turn (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", default=os.environ.get("FNNET_BOOK_WEIGHTS_DIR"),
                    help="folder with the book's params.pkl (default: $FNNET_BOOK_WEIGHTS_DIR)")
    ap.add_argument("--out", default="runs/handwriting", help="folder for the PNGs and results.json")
    ap.add_argument("--figure", default=os.path.join("docs", "naive_resize.png"),
                    help="the comparison figure (default docs/naive_resize.png)")
    args = ap.parse_args(argv)
    if not args.weights:
        ap.error("--weights or FNNET_BOOK_WEIGHTS_DIR is required (the folder with the book's params.pkl)")
    from fnnet.datasets import prepare_digit
    from fnnet.inference import load_classifier
    from fnnet.io import save_json

    start = time.monotonic()
    drawn = draw_digits(args.n, args.seed)
    os.makedirs(args.out, exist_ok=True)
    for i, (img, label) in enumerate(drawn):
        img.save(os.path.join(args.out, f"{i:03d}_{label}.png"))
    contact_sheet([img for img, _ in drawn], os.path.join(args.out, "contact_sheet.png"))
    # what `fnnet predict` does: read each file back and prepare it
    files = [os.path.join(args.out, f"{i:03d}_{label}.png") for i, (_, label) in enumerate(drawn)]
    labels = np.array([label for _, label in drawn])
    classifier = load_classifier(os.path.join(args.weights, "params.pkl"), "simple_convnet")
    pred_prep = classify(classifier, files, prepare_digit)
    pred_naive = classify(classifier, [img for img, _ in drawn], naive)
    acc_prep, acc_naive = float((pred_prep == labels).mean()), float((pred_naive == labels).mean())
    per_digit = {d: [float((pred[labels == d] == d).mean()) for pred in (pred_prep, pred_naive)]
                 for d in range(10)}
    print(f"{args.n} drawn digits, the book's SimpleConvNet (params.pkl):")
    print(f"  prepare_digit: {acc_prep:.3f}   naive resize + invert: {acc_naive:.3f}")
    print("  per digit (prepared / naive): "
          + ", ".join(f"{d}: {a:.2f}/{b:.2f}" for d, (a, b) in per_digit.items()))
    wrong = [f"{i:03d}_{labels[i]}.png -> {pred_prep[i]}" for i in np.nonzero(pred_prep != labels)[0]]
    if wrong:
        print("  prepare_digit got wrong: " + ", ".join(wrong))
    save_json({"n": args.n, "seed": args.seed, "accuracy_prepared": acc_prep, "accuracy_naive": acc_naive,
               "per_digit_prepared_naive": per_digit, "wrong_prepared": wrong},
              os.path.join(args.out, "results.json"))
    # the figure: the first digits of different labels that the naive way gets wrong, then some it gets right
    picks = [i for i in range(args.n) if pred_naive[i] != labels[i] and pred_prep[i] == labels[i]]
    chosen, seen = [], set()
    for i in picks + list(range(args.n)):
        if labels[i] not in seen and len(chosen) < 6:
            chosen.append(i)
            seen.add(labels[i])
    samples = [(drawn[i][0], labels[i], naive(drawn[i][0]), pred_naive[i], prepare_digit(files[i]),
                pred_prep[i]) for i in chosen]
    if os.path.dirname(args.figure):
        os.makedirs(os.path.dirname(args.figure), exist_ok=True)
    comparison_figure(samples, args.figure, f"{args.n} drawn digits, the book's SimpleConvNet: "
                      f"{acc_prep:.1%} right after prepare_digit, {acc_naive:.1%} after a plain resize")
    print(f"wrote {args.out}/*.png, contact_sheet.png, results.json and {args.figure} "
          f"({time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
