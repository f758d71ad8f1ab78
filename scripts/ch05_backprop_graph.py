"""Chapter 5: backpropagation through a computational graph of mul and add layers.

    python scripts/ch05_backprop_graph.py
    python scripts/ch05_backprop_graph.py --figure docs/figures/ch05_apples.png

The book's shopping examples (section 5.4): 2 apples at 100 with tax 1.1 (price 220), then
2 apples at 100 and 3 oranges at 150 with tax 1.1 (price 715), forward through `mul`/`add`
layers and back, printing the derivative of the price with respect to every input. --figure also
draws the apples' graph with the value of every edge forward and its derivative backward (the
chapter page's figure, as the book's figure 5-16).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fnnet.layers import add, mul


def apples(apple=100.0, apple_num=2.0, tax=1.1) -> dict:
    apple_price, c_apple = mul.forward({}, apple, apple_num)
    price, c_tax = mul.forward({}, apple_price, tax)
    (d_apple_price, d_tax), _ = mul.backward(c_tax, 1.0)
    (d_apple, d_apple_num), _ = mul.backward(c_apple, d_apple_price)
    return {"price": price, "d apple": d_apple, "d apple_num": d_apple_num, "d tax": d_tax}


def apples_and_oranges(apple=100.0, apple_num=2.0, orange=150.0, orange_num=3.0, tax=1.1) -> dict:
    apple_price, c_apple = mul.forward({}, apple, apple_num)
    orange_price, c_orange = mul.forward({}, orange, orange_num)
    all_price, c_add = add.forward({}, apple_price, orange_price)
    price, c_tax = mul.forward({}, all_price, tax)

    (d_all_price, d_tax), _ = mul.backward(c_tax, 1.0)
    (d_apple_price, d_orange_price), _ = add.backward(c_add, d_all_price)
    (d_orange, d_orange_num), _ = mul.backward(c_orange, d_orange_price)
    (d_apple, d_apple_num), _ = mul.backward(c_apple, d_apple_price)
    return {"price": price, "d apple": d_apple, "d apple_num": d_apple_num, "d orange": d_orange,
            "d orange_num": d_orange_num, "d tax": d_tax}


def draw(path, apple=100.0, apple_num=2.0, tax=1.1) -> None:
    """The apples' graph: two mul nodes; above or left of each edge its forward value, below or right
    of it (red) the derivative of the price with respect to it, as computed by the layers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fnnet.plots import save_figure

    apple_price, c_apple = mul.forward({}, apple, apple_num)
    price, c_tax = mul.forward({}, apple_price, tax)
    (d_apple_price, d_tax), _ = mul.backward(c_tax, 1.0)
    (d_apple, d_apple_num), _ = mul.backward(c_apple, d_apple_price)

    fig, ax = plt.subplots(figsize=(8, 3.2))
    nodes = {"mul1": (3.0, 1.0), "mul2": (6.0, 1.0)}
    for x, y in nodes.values():
        ax.add_patch(plt.Circle((x, y), 0.35, facecolor="#e8eaf6", edgecolor="#3949ab", zorder=2))
        ax.text(x, y, "×", ha="center", va="center", fontsize=16, zorder=3)
    edges = [((0.3, 1.0), (2.65, 1.0), apple, d_apple),
             ((3.0, -0.7), (3.0, 0.65), apple_num, d_apple_num),
             ((3.35, 1.0), (5.65, 1.0), apple_price, d_apple_price),
             ((6.0, -0.7), (6.0, 0.65), tax, d_tax),
             ((6.35, 1.0), (8.7, 1.0), price, 1.0)]
    names = [("apple", (0.25, 1.0), "right", "center"), ("apple_num", (3.0, -0.8), "center", "top"),
             ("tax", (6.0, -0.8), "center", "top"), ("price", (8.8, 1.0), "left", "center")]
    for name, (x, y), ha, va in names:
        ax.text(x, y, name, ha=ha, va=va, fontsize=10, style="italic")
    for start, end, value, grad in edges:
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "lw": 1.2})
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        if start[1] == end[1]:
            ax.text(mx, my + 0.15, f"{float(value):g}", ha="center", va="bottom", fontsize=11)
            ax.text(mx, my - 0.15, f"{float(grad):g}", ha="center", va="top", fontsize=11, color="#c62828")
        else:
            ax.text(mx - 0.12, my, f"{float(value):g}", ha="right", va="center", fontsize=11)
            ax.text(mx + 0.12, my, f"{float(grad):g}", ha="left", va="center", fontsize=11, color="#c62828")
    ax.text(6.9, -0.2, "forward: the value of each edge", fontsize=9)
    ax.text(6.9, -0.5, "backward: d price / d (the edge)", fontsize=9, color="#c62828")
    ax.set_xlim(-1.2, 11.5)
    ax.set_ylim(-1.1, 1.5)
    ax.set_aspect("equal")
    ax.axis("off")
    save_figure(fig, path, colors=32, bbox_inches="tight")
    print(f"saved {path}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", help="also draw the apples' graph, forward and backward, to this PNG")
    args = ap.parse_args(argv)
    if args.figure:
        draw(args.figure)
    results = {"2 apples at 100, tax 1.1": apples(),
               "2 apples at 100, 3 oranges at 150, tax 1.1": apples_and_oranges()}
    for title, values in results.items():
        print(title)
        for name, value in values.items():
            print(f"  {name:<12} {float(value):g}")
    return results


if __name__ == "__main__":
    main()
