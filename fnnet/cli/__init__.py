"""The `fnnet` command: train a network, evaluate saved parameters, run the book's experiments,
classify your own handwriting and draw digits in the browser.

    fnnet train                      # MNIST (or, offline, the bundled digits), TwoLayerNet, SGD lr 0.1
    fnnet train --dataset digits     # scikit-learn's 8x8 digits, offline, a few seconds
    fnnet train --model multi_layer_net --batchnorm --optimizer adam --epochs 5
    fnnet train --model deep_convnet --optimizer adam --epochs 20 --schedule step --decay-epochs 4
    fnnet eval --params runs/two_layer_net-mnist/params.npz
    fnnet experiment --list
    fnnet predict --params runs/simple_convnet-mnist/params.npz seven.png
    fnnet draw                       # http://127.0.0.1:8000/ (needs pip install "fnnet[draw]")

`train` prints a progress bar per epoch and one line per epoch (loss, train and test accuracy,
images/s) and writes metrics.json, curves.png, params.npz (plus state.npz for models with
running statistics) and checkpoints to --out. Every failure is one line on stderr and a
non-zero exit status (2 for usage errors); --debug shows the traceback instead.

One module per command (`train`, `eval`, `experiment`, `predict`, `draw`), each with
`add_parser(subparsers)` and `run(args, parser)`; `common` holds the shared options and the
one-line error handling.
"""

from __future__ import annotations

import argparse

from fnnet.cli import draw, experiment, predict, train
from fnnet.cli import eval as eval_command
from fnnet.cli.common import DataError, Parser, Terminated, enable_compile_cache, run_command
from fnnet.cli.train import schedule as _schedule  # noqa: F401  (the old name, for callers)

__all__ = ["main", "build_parser", "enable_compile_cache", "DataError", "Terminated"]

COMMANDS = {"train": train, "eval": eval_command, "experiment": experiment, "predict": predict, "draw": draw}


def build_parser() -> argparse.ArgumentParser:
    """The `fnnet` parser; `parser.commands` maps each command to its subparser (for usage errors
    found after parsing)."""
    parser = Parser(prog="fnnet", description="Deep Learning from Scratch, functionally.")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    sub.required = True
    parser.commands = {}
    for name, module in COMMANDS.items():
        p = module.add_parser(sub)
        if p is not None:
            parser.commands[name] = p
    return parser


def main(argv=None) -> int:
    """Entry point of the `fnnet` console script; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    sub = parser.commands[args.command]
    if extra:
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    enable_compile_cache()
    command = COMMANDS[args.command]
    return run_command(args.command, lambda: command.run(args, sub), debug=getattr(args, "debug", False),
                       resume_hint="; resume with --resume" if args.command == "train" else "")

