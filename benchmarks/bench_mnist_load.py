"""Time load_mnist: the first load (verify + decode the IDX files) and the cached load (.npz).

    FNNET_DATA_DIR=path/to/mnist python benchmarks/bench_mnist_load.py --repeats 3

Each load runs in a fresh Python process with an empty (first) or warm (cached) private
XDG_CACHE_HOME, and is timed inside that process around the `load_mnist()` call alone
(the import of jax/numpy is not counted); the median of the repeats is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import time
from fnnet.datasets import load_mnist
t0 = time.perf_counter()
(x, t), (xt, tt) = load_mnist(progress=False)
print(time.perf_counter() - t0)
"""
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def timed_load(cache_home: str) -> float:
    env = dict(os.environ, XDG_CACHE_HOME=cache_home, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if not os.environ.get("FNNET_DATA_DIR"):
        raise SystemExit("set FNNET_DATA_DIR to the folder of the four MNIST files")
    first, cached = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="fnnet-bench-") as home:
            first.append(timed_load(home))
            cached.append(timed_load(home))
    print(f"first load (verify + decode .gz, write cache): median {statistics.median(first):.3f} s  "
          f"runs {[round(s, 3) for s in first]}")
    print(f"cached load (.npz, digests checked):           median {statistics.median(cached):.3f} s  "
          f"runs {[round(s, 3) for s in cached]}")


if __name__ == "__main__":
    main()
