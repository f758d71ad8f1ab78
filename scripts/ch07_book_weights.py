"""Evaluate the book's trained SimpleConvNet and DeepConvNet weights on the MNIST test set.

    python scripts/ch07_book_weights.py --weights-dir PATH [--data-dir PATH]

Loads params.pkl and deep_convnet_params.pkl with `fnnet.io.load_params` (a restricted
unpickler), casts them to float32 and scores the 10,000 test images with the reference code's
semantics (NCHW, C-order flatten, inference dropout scaling). Also reports SimpleConvNet's
accuracy with the weights and inputs cast to float16 and bfloat16. Prints and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax
import jax.numpy as jnp
import numpy as np

from fnnet.datasets import load_mnist
from fnnet.io import load_params, save_json
from fnnet.layers import conv_fast
from fnnet.models import deep_convnet, simple_convnet


def accuracy(predict, params, x, t, dtype=jnp.float32, batch_size=500):
    """Fraction of correct argmax predictions with params and x cast to `dtype`."""
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
    f = jax.jit(predict)
    correct = 0
    for i in range(0, len(x), batch_size):
        y = f(params, jnp.asarray(x[i : i + batch_size], dtype))
        correct += int(np.sum(np.argmax(np.asarray(y, np.float32), axis=1) == t[i : i + batch_size]))
    return correct / len(x)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights-dir", default=os.environ.get("FNNET_BOOK_WEIGHTS_DIR"),
                    help="folder with params.pkl and deep_convnet_params.pkl "
                    "(default: $FNNET_BOOK_WEIGHTS_DIR)")
    ap.add_argument("--data-dir", default=None, help="MNIST folder (default: $FNNET_DATA_DIR)")
    ap.add_argument("--out", default="runs/ch07_book_weights")
    args = ap.parse_args(argv)
    if not args.weights_dir:
        ap.error("--weights-dir or FNNET_BOOK_WEIGHTS_DIR is required")
    _, (x, t) = load_mnist(flatten=False, data_dir=args.data_dir)
    simple = load_params(os.path.join(args.weights_dir, "params.pkl"))
    deep = load_params(os.path.join(args.weights_dir, "deep_convnet_params.pkl"))
    res = {}
    fast = conv_fast.resolve()  # the fast layout of this platform, chosen once

    def simple_predict(p, xb):
        return simple_convnet.predict(p, xb, conv_impl=fast)

    def deep_predict(p, xb):
        return deep_convnet.predict(p, xb, conv_impl=fast)

    for name, dtype in (("float32", jnp.float32), ("float16", jnp.float16), ("bfloat16", jnp.bfloat16)):
        res[f"simple_convnet_{name}"] = accuracy(simple_predict, simple, x, t, dtype)
        print(f"SimpleConvNet (params.pkl) {name}: {res[f'simple_convnet_{name}']:.4f}", flush=True)
    res["deep_convnet_float32"] = accuracy(deep_predict, deep, x, t)
    print(f"DeepConvNet (deep_convnet_params.pkl) float32: {res['deep_convnet_float32']:.4f}")
    os.makedirs(args.out, exist_ok=True)
    save_json(res, os.path.join(args.out, "book_weights.json"))


if __name__ == "__main__":
    main()
