"""The book's experiments, one command each: `fnnet experiment NAME [--out DIR] [--seed N] [--quick]`.

Each experiment writes its PNG figures and results.json (the numbers behind the figures) into
--out (default runs/experiments/NAME), shows a progress bar, and returns those numbers as a dict.
--quick shrinks it (fewer images, iterations, runs) so that it finishes in seconds, for tests.

    from fnnet.experiments import EXPERIMENTS
    description, run = EXPERIMENTS["optimizer-paths"]
    results = run("runs/paths", seed=0, quick=False, progress=True)

Experiments that train read MNIST through `fnnet.datasets.load_mnist()` (FNNET_DATA_DIR, the
cache, or a download). Each is one module of this package.
"""

from __future__ import annotations

import argparse
import importlib

from fnnet._checks import MAX_SEED

__all__ = ["EXPERIMENTS", "add_parser", "run"]

# name -> (module, one-line description); the modules are imported only when an experiment runs.
_TABLE = {
    "gates": ("gates", "ch. 2: AND, NAND, OR, XOR perceptrons and their decision lines"),
    "gradient": ("gradient", "ch. 4: numerical derivative and tangents, x0^2 + x1^2, its gradient field, "
                             "gradient descent from (-3, 4)"),
    "two-layer-net-numerical": ("two_layer_net_numerical",
                                "ch. 4: the sigmoid TwoLayerNet trained by numerical_gradient, then by "
                                "backprop; the speed ratio"),
    "optimizer-paths": ("optimizer_paths", "ch. 6: SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam on "
                                           "x^2/20 + y^2 from (-7, 2)"),
    "optimizer-mnist": ("optimizer_mnist", "ch. 6: each optimizer on a 5-layer ReLU net, MNIST, 2,000 "
                                           "iterations: loss curves"),
    "weight-init-histograms": ("weight_init_histograms",
                               "ch. 6: activations of 5 layers for sigmoid, tanh, ReLU and std 1, 0.01, "
                               "Xavier, He"),
    "weight-init-mnist": ("weight_init_mnist",
                          "ch. 6: std 0.01 vs Xavier vs He on a 5-layer ReLU net, MNIST: loss curves"),
    "batchnorm": ("batchnorm", "ch. 6: training accuracy with and without Batch Norm for 16 weight scales"),
    "overfitting": ("overfitting", "ch. 6: 300 images, 7-layer net: plain, weight decay 0.1, dropout 0.2"),
    "hyperparameter-search": ("hyperparameter_search",
                              "ch. 6: random search over learning rate and weight decay on a validation "
                              "split"),
}


def _runner(name: str, module: str):
    def run_experiment(out_dir=None, *, seed: int = 0, quick: bool = False, progress: bool = True) -> dict:
        return importlib.import_module(f"fnnet.experiments.{module}").run(
            out_dir, seed=seed, quick=quick, progress=progress)

    run_experiment.__name__ = module
    run_experiment.__doc__ = (f"Run the experiment {name!r} (fnnet.experiments.{module}.run): "
                              "out_dir, seed, quick, progress -> dict of its numbers.")
    return run_experiment


EXPERIMENTS = {name: (description, _runner(name, module)) for name, (module, description) in _TABLE.items()}


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be in 0..{MAX_SEED} (a JAX PRNG key holds 32 bits), "
                                         f"got {value}")
    return value


def add_parser(subparsers):
    """Register `experiment NAME [--out DIR] [--seed N] [--quick]` and `experiment --list` on an
    argparse subparsers object; returns the new parser."""
    lines = "\n".join(f"  {name:<24} {desc}" for name, (desc, _) in EXPERIMENTS.items())
    p = subparsers.add_parser(
        "experiment", help="run one of the book's experiments (figures + results.json)",
        description="Run one of the book's experiments: its PNG figures and results.json (the numbers "
                    "behind them) go to --out.",
        epilog=f"experiments:\n{lines}", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", metavar="NAME", help="the experiment (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default runs/experiments/NAME)")
    p.add_argument("--seed", type=_seed, default=0, help="PRNG seed (default 0; same seed, same numbers)")
    p.add_argument("--quick", action="store_true", help="a small version that runs in seconds (for tests)")
    return p


def run(args) -> int:
    """Run the experiment the parsed `args` name (or print the list for --list); 0 on success.
    Bad input raises ValueError with a one-line message."""
    if getattr(args, "list", False):
        for name, (desc, _) in EXPERIMENTS.items():
            print(f"{name:<24} {desc}")
        return 0
    name = getattr(args, "name", None)
    if not name:
        raise ValueError("fnnet experiment: name an experiment (fnnet experiment --list shows them)")
    if name not in EXPERIMENTS:
        raise ValueError(f"fnnet experiment: unknown experiment {name!r}; choose one of "
                         f"{', '.join(EXPERIMENTS)}")
    seed = getattr(args, "seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"fnnet experiment: --seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    quick = bool(getattr(args, "quick", False))
    results = EXPERIMENTS[name][1](getattr(args, "out", None), seed=seed, quick=quick, progress=True)
    files = ", ".join(results["figures"])
    print(f"{name}: {files} and results.json in {results['out_dir']} ({results['seconds']:.0f} s)")
    return 0
