"""Chapter 5: the gradient check of TwoLayerNet, three ways.

    python scripts/ch05_gradient_check.py [--data random|digits|mnist] [--n 3] [--dtype float64]
                                          [--activation relu|sigmoid]

Computes the gradient of the loss for every parameter by the hand-written backprop
(`two_layer_net.gradient`), by `jax.grad` of the loss and by numerical differentiation
(central differences, h = 1e-4), and prints per parameter the mean |backprop - numerical|
(the book's check, section 5.7.3) and the max |backprop - jax.grad|. --activation sigmoid checks
chapter 4's net instead of chapter 5's (ReLU).

Data: `random` (default; 784 uniform features, 10 classes), `digits` (scikit-learn's 8x8
digits through fnnet.datasets) or `mnist` (through fnnet.datasets from --data-dir or
$FNNET_DATA_DIR; nothing is downloaded). The first --n training samples are used, as the book
uses x_train[:3].
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from fnnet.gradient import H, numerical_gradient
from fnnet.models import two_layer_net as net


def load_data(name, n, seed, data_dir=None):
    """The first n samples (x (n, features), t (n,) int labels) and the number of classes."""
    if name == "random":
        kx, kt = jax.random.split(jax.random.PRNGKey(seed))
        x, t = jax.random.uniform(kx, (n, 784)), jax.random.randint(kt, (n,), 0, 10)
        return np.asarray(x), np.asarray(t), 10
    from fnnet.datasets import load_digits, load_mnist

    if name == "digits":
        (x, t), _ = load_digits(normalize=True, flatten=True)
    else:
        data_dir = data_dir or os.environ.get("FNNET_DATA_DIR")
        if not data_dir:
            raise SystemExit("--data mnist needs --data-dir or FNNET_DATA_DIR (the MNIST folder)")
        (x, t), _ = load_mnist(normalize=True, flatten=True, data_dir=data_dir, download=False)
    return x[:n], t[:n], 10


def gradient_check(params, x, t, progress=True, activation="relu") -> dict:
    """{key: (mean |bp - num|, max |bp - num|, max |bp - jax.grad|, max |bp|)} for every parameter."""
    backprop = net.gradient(params, x, t, activation=activation)
    autodiff = jax.grad(lambda p: net.loss(p, x, t, activation=activation))(params)
    results = {}
    for k in tqdm(net.KEYS, desc="numerical gradient", disable=not progress):
        num = numerical_gradient(lambda w, k=k: net.loss({**params, k: w}, x, t, activation=activation),
                                 params[k])
        diff = jnp.abs(backprop[k] - num)
        auto = jnp.abs(backprop[k] - autodiff[k])
        results[k] = (float(jnp.mean(diff)), float(jnp.max(diff)), float(jnp.max(auto)),
                      float(jnp.max(jnp.abs(backprop[k]))))
    return results


def near_kink(params, x) -> int:
    """How many hidden pre-activations a step of h in W1 or b1 can push across ReLU's kink at 0."""
    pre = x @ params["W1"] + params["b1"]
    reach = H * jnp.maximum(1.0, jnp.max(jnp.abs(x), axis=1, keepdims=True))
    return int(jnp.sum(jnp.abs(pre) < reach))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=["random", "digits", "mnist"], default="random")
    ap.add_argument("--data-dir", default=None, help="MNIST folder (default: $FNNET_DATA_DIR)")
    ap.add_argument("--n", type=int, default=3, help="number of samples")
    ap.add_argument("--hidden", type=int, default=50)
    ap.add_argument("--weight-init-std", type=float, default=0.01)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--one-hot", action="store_true", help="targets as one-hot rows instead of labels")
    ap.add_argument("--activation", choices=list(net.ACTIVATIONS), default="relu",
                    help="hidden activation: relu (chapter 5's net) or sigmoid (chapter 4's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    x, t, classes = load_data(args.data, args.n, args.seed, args.data_dir)
    with jax.enable_x64(args.dtype == "float64"):
        dtype = jnp.dtype(args.dtype)
        params = net.init(jax.random.PRNGKey(args.seed + 1), x.shape[1], args.hidden, classes,
                          weight_init_std=args.weight_init_std, dtype=dtype)
        x = jnp.asarray(x, dtype)
        t = jax.nn.one_hot(t, classes, dtype=dtype) if args.one_hot else jnp.asarray(t, jnp.int32)
        print(f"TwoLayerNet {x.shape[1]}-{args.hidden}-{classes} ({args.activation}), {args.data} data, "
              f"{args.n} samples, {args.dtype}, {'one-hot' if args.one_hot else 'label'} targets")
        results = gradient_check(params, x, t, progress=not args.no_progress, activation=args.activation)
        kinks = near_kink(params, x) if args.activation == "relu" else 0
    print(f"{'param':<6}{'shape':>12}{'mean|bp-num|':>15}{'max|bp-num|':>14}{'max|bp-jax.grad|':>18}{'max|bp|':>11}")
    for k, (mean_num, max_num, max_auto, scale) in results.items():
        shape = str(tuple(params[k].shape))
        print(f"{k:<6}{shape:>12}{mean_num:>15.3e}{max_num:>14.3e}{max_auto:>18.3e}{scale:>11.3e}")
    if kinks:
        print(f"note: {kinks} hidden pre-activation(s) lie within h = {H:g} (times the input scale) of "
              "the ReLU kink; central differences straddle it there, so |bp - num| is large for those "
              "entries only")
    return results


if __name__ == "__main__":
    main()
