"""Chapter 5: backpropagation through a computational graph of mul and add layers.

    python scripts/ch05_backprop_graph.py

The book's shopping examples (section 5.4): 2 apples at 100 with tax 1.1 (price 220), then
2 apples at 100 and 3 oranges at 150 with tax 1.1 (price 715), forward through `mul`/`add`
layers and back, printing the derivative of the price with respect to every input.
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


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args(argv)
    results = {"2 apples at 100, tax 1.1": apples(),
               "2 apples at 100, 3 oranges at 150, tax 1.1": apples_and_oranges()}
    for title, values in results.items():
        print(title)
        for name, value in values.items():
            print(f"  {name:<12} {float(value):g}")
    return results


if __name__ == "__main__":
    main()
