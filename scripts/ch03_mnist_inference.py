"""Chapter 3: MNIST inference with the book's trained 784-50-100-10 sigmoid network.

    python scripts/ch03_mnist_inference.py --weights path/to/sample_weight.pkl

Loads the weights through fnnet.io.load_params (restricted unpickler), classifies the 10,000
test images (normalize=True) one by one (a jitted per-image predict) and in batches of 100,
prints the accuracy of both (the book: Accuracy:0.9352), and saves the first training image
(a 5) in --out twice: as it is (28x28 pixels) and enlarged ten times (280x280, each pixel a
10x10 square) so that it can be seen.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from tqdm.auto import tqdm

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fnnet.datasets import MNISTNotFoundError, load_mnist
from fnnet.io import atomic_write, load_params
from fnnet.models import three_layer_net

ENLARGE = 10

@jax.jit
def predict_label(params, x):
    """Class index of one image x (784,), or of each row of a batch x (N, 784)."""
    return jnp.argmax(three_layer_net.predict(params, x), axis=-1)


def predict_one_by_one(params, x, progress=True) -> np.ndarray:
    """The book's first loop: one image at a time (each call runs the compiled function)."""
    images = tqdm(x, desc="one by one", disable=not progress)
    return np.array([int(predict_label(params, xi)) for xi in images])


def predict_batched(params, x, batch_size=100) -> np.ndarray:
    """The book's batched loop: batch_size images per call."""
    return np.concatenate([np.asarray(predict_label(params, x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])


def accuracy_line(pred, t) -> str:
    """The book's output format, `Accuracy:` + str(correct / N)."""
    return "Accuracy:" + str(float(np.sum(pred == t)) / len(t))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="the book's sample_weight.pkl (or an .npz of W1..b3)")
    ap.add_argument("--data-dir", default=None,
                    help="folder of the MNIST files (default: FNNET_DATA_DIR, the cache)")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--out", default=os.path.join("runs", "ch03"), help="folder for the PNG")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    try:
        (x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, flatten=True, one_hot_label=False,
                                                          data_dir=args.data_dir)
    except MNISTNotFoundError as e:
        raise SystemExit(str(e)) from None
    params = {k: jnp.asarray(v) for k, v in load_params(args.weights).items()}
    n = three_layer_net.num_layers(params)
    sizes = [params["W1"].shape[0]] + [params[f"W{i}"].shape[1] for i in range(1, n + 1)]
    print(f"network {'-'.join(map(str, sizes))} from {args.weights}; {len(x_test)} test images")

    t0 = time.perf_counter()
    one = predict_one_by_one(params, x_test, progress=not args.no_progress)
    t1 = time.perf_counter()
    print(f"one by one ({len(x_test)} jitted calls, {t1 - t0:.2f} s):")
    print(accuracy_line(one, t_test))
    batched = predict_batched(params, x_test, args.batch_size)
    t2 = time.perf_counter()
    print(f"in batches of {args.batch_size} ({t2 - t1:.2f} s):")
    print(accuracy_line(batched, t_test))
    if not np.array_equal(one, batched):
        raise SystemExit(f"one-by-one and batched predictions differ on {int(np.sum(one != batched))} images")

    os.makedirs(args.out, exist_ok=True)
    image = x_train[0].reshape(28, 28)
    png = os.path.join(args.out, f"mnist_train0_label{int(t_train[0])}.png")
    large = os.path.join(args.out, f"mnist_train0_label{int(t_train[0])}_x{ENLARGE}.png")
    for path, img in ((png, image), (large, np.kron(image, np.ones((ENLARGE, ENLARGE), image.dtype)))):
        atomic_write(path, lambda f, img=img: plt.imsave(f, img, cmap="gray", vmin=0.0, vmax=1.0,
                                                         format="png"))
    print(f"first training image (label {int(t_train[0])}) -> {png}, enlarged {ENLARGE} times -> {large}")
    return {"one_by_one": one, "batched": batched, "t_test": t_test, "png": png, "png_large": large}


if __name__ == "__main__":
    main()
