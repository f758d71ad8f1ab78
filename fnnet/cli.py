"""The `fnnet` command: train a network and evaluate saved parameters.

    fnnet train                      # MNIST, TwoLayerNet 784-50-10, SGD lr 0.1, batch 100, 17 epochs
    fnnet train --dataset digits     # scikit-learn's 8x8 digits, offline, a few seconds
    fnnet train --model multi_layer_net --batchnorm --optimizer adam --epochs 5
    fnnet eval --params runs/two_layer_net-mnist/params.npz

`train` prints a progress bar per epoch and one line per epoch (loss, train and test accuracy,
images/s) and writes metrics.json, curves.png, params.npz (plus state.npz for models with
running statistics) and checkpoints to --out. MNIST is read from --data-dir or FNNET_DATA_DIR.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

__all__ = ["main", "build_parser"]

MODELS = ("two_layer_net", "multi_layer_net", "simple_convnet", "deep_convnet")
CONV_MODELS = ("simple_convnet", "deep_convnet")
DATASETS = ("mnist", "digits")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
# Without --lr: 0.1 for SGD (the book's chapter 5 run), the book's defaults for the others.
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01, "rmsprop": 0.01, "adam": 0.001}
# Without --epochs: 17 epochs of MNIST are the book's 10,000 iterations (600 per epoch); digits
# has 14 batches per epoch, so it gets more epochs.
DEFAULT_EPOCHS = {"mnist": 17, "digits": 100}


class DataError(Exception):
    """Input data that cannot be loaded; reported as one line, exit status 1."""


def _int(low):
    """An argparse type: an integer >= low."""

    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v

    return parse


_positive_int, _nonneg_int = _int(1), _int(0)


def _float(low, low_open, high=None, high_open=False):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
        if v < low or (low_open and v == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low}, got {v}")
        if high is not None and (v > high or (high_open and v == high)):
            raise argparse.ArgumentTypeError(f"must be {'<' if high_open else '<='} {high}, got {v}")
        return v

    return parse


def _hidden_sizes(text):
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 100,100, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    return sizes


def _add_model_args(p):
    p.add_argument("--model", choices=MODELS, default="two_layer_net", help="(default: two_layer_net)")
    p.add_argument("--dataset", choices=DATASETS, default="mnist", help="data set (default: mnist)")
    p.add_argument(
        "--hidden", type=_hidden_sizes, default=None, metavar="N[,N...]",
        help="hidden layer sizes: one for two_layer_net (default 50) and the convnets (100 simple, 50 deep), "
        "a list for multi_layer_net (default 100,100,100,100,100)",
    )
    p.add_argument("--batchnorm", action="store_true", help="multi_layer_net: use Batch Norm")
    p.add_argument(
        "--dropout", type=_float(0.0, True, 1.0, True), default=None, metavar="RATIO",
        help="multi_layer_net: dropout with this ratio after each hidden activation",
    )
    p.add_argument(
        "--weight-decay", type=_float(0.0, False), default=0.0, metavar="LAMBDA",
        help="L2 weight decay: 0.5*lambda*sum(W^2) over the weight matrices (default 0)",
    )
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: $FNNET_DATA_DIR)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fnnet", description="Deep Learning from Scratch, functionally.")
    sub = parser.add_subparsers(dest="command", metavar="{train,eval}")
    sub.required = True

    t = sub.add_parser("train", help="train a network", description="Train a network (fnnet.training.fit).")
    _add_model_args(t)
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="(default: sgd)")
    t.add_argument(
        "--lr", type=_float(0.0, True), default=None,
        help="learning rate (default: 0.1 for sgd, 0.001 for adam, 0.01 for the others)",
    )
    t.add_argument(
        "--epochs", type=_positive_int, default=None,
        help=f"epochs (default: {DEFAULT_EPOCHS['mnist']} for mnist, {DEFAULT_EPOCHS['digits']} for digits)",
    )
    t.add_argument("--batch-size", type=_positive_int, default=100, help="(default: 100)")
    t.add_argument("--seed", type=_nonneg_int, default=0, help="(default: 0)")
    t.add_argument("--augment", action="store_true", help="convnets: random shifts and rotations")
    t.add_argument("--out", default=None, metavar="DIR", help="default runs/<model>-<dataset>")
    t.add_argument("--resume", action="store_true", help="continue from the latest valid checkpoint in --out")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")

    e = sub.add_parser("eval", help="test accuracy of saved parameters", description="Print test accuracy.")
    e.add_argument(
        "--params", required=True, metavar="FILE",
        help="params.npz written by `fnnet train` (its state.npz is read too), a .ckpt checkpoint, or a .pkl",
    )
    _add_model_args(e)
    parser.commands = {"train": t, "eval": e}  # for usage errors found after parsing
    return parser


def _input_shape(model, dataset):
    side = 28 if dataset == "mnist" else 8
    return (1, side, side) if model in CONV_MODELS else (side * side,)


def _model_config(args, parser):
    cfg = {}
    if args.model == "multi_layer_net":
        cfg["hidden_size_list"] = args.hidden or [100] * 5
        if args.batchnorm:
            cfg["use_batchnorm"] = True
        if args.dropout is not None:
            cfg["use_dropout"] = True
            cfg["dropout_ratio"] = args.dropout
        if args.weight_decay:
            cfg["weight_decay_lambda"] = args.weight_decay
        return cfg
    if args.batchnorm:
        parser.error(f"argument --batchnorm: only multi_layer_net has Batch Norm, not {args.model}")
    if args.dropout is not None:
        parser.error(f"argument --dropout: only multi_layer_net has dropout, not {args.model}")
    if args.hidden is not None:
        if len(args.hidden) != 1:
            parser.error(f"argument --hidden: {args.model} takes one hidden size, got {args.hidden}")
        cfg["hidden_size"] = args.hidden[0]
    return cfg


def _build_model(args, parser):
    from fnnet.models import get_model
    from fnnet.training import with_weight_decay

    cfg = _model_config(args, parser)
    shape = _input_shape(args.model, args.dataset)
    try:
        model = get_model(args.model, shape, 10, **cfg)
    except (ValueError, TypeError) as e:
        parser.error(f"argument --model: {args.model} cannot be built for {args.dataset} input {shape}: {e}")
    if args.weight_decay and args.model != "multi_layer_net":
        model = with_weight_decay(model, args.weight_decay)
    return model, cfg


def _load_data(args):
    from fnnet import datasets

    try:
        if args.dataset == "mnist":
            return datasets.load_mnist(data_dir=args.data_dir)
        return datasets.load_digits()
    except (OSError, ValueError) as e:
        hint = ""
        if args.dataset == "mnist":
            hint = (
                " (set FNNET_DATA_DIR or --data-dir to a folder with the four MNIST IDX files,"
                " or try --dataset digits)"
            )
        raise DataError(f"cannot load {args.dataset}: {e}{hint}") from None


def _train(args, parser):
    from fnnet import optimizers
    from fnnet.training import fit

    model, cfg = _build_model(args, parser)
    if args.augment:
        if args.model not in CONV_MODELS:
            parser.error(f"argument --augment: only the convnets take image augmentation, not {args.model}")
        from fnnet.augment import augment
    else:
        augment = None
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    optimizer = optimizers.get(args.optimizer, lr=lr)
    epochs = args.epochs if args.epochs is not None else DEFAULT_EPOCHS[args.dataset]
    out = args.out or os.path.join("runs", f"{args.model}-{args.dataset}")
    train, test = _load_data(args)
    n = len(train[0])
    if args.batch_size > n:
        parser.error(
            f"argument --batch-size: {args.batch_size} is larger than the {n} training samples "
            f"of {args.dataset}"
        )
    print(
        f"fnnet train: {args.model}{' ' + str(cfg) if cfg else ''} on {args.dataset} "
        f"({n} train, {len(test[0])} test), "
        f"{args.optimizer} lr {lr:g}, batch {args.batch_size}, {epochs} epochs "
        f"({epochs * (n // args.batch_size)} iterations), seed {args.seed} -> {out}",
        flush=True,
    )
    result = fit(
        model, optimizer, train, test, epochs=epochs, batch_size=args.batch_size, seed=args.seed,
        out_dir=out, resume=args.resume, augment=augment, progress=not args.no_progress,
        log=lambda line: print(line, flush=True),
        info={"model": args.model, "config": cfg, "dataset": args.dataset, "optimizer": args.optimizer,
              "lr": lr, "weight_decay": args.weight_decay, "augment": args.augment, "epochs": epochs},
    )
    acc = result.history["test_acc"][-1] if result.history["test_acc"] else float("nan")
    print(f"test accuracy {acc:.4f}; wrote metrics.json, curves.png, params.npz and checkpoints to {out}")
    return 0


def _eval(args, parser):
    import jax

    from fnnet.training import evaluate, load_checkpoint, load_tree, restore_leaves

    model, _ = _build_model(args, parser)
    params, state = model.init(jax.random.PRNGKey(0))
    path = args.params
    try:
        if path.endswith(".ckpt"):
            ck = load_checkpoint(path)
            params = restore_leaves("fnnet eval", path, "params", params, ck["params"])
            state = restore_leaves("fnnet eval", path, "model state", state, ck["state"])
        else:
            from fnnet.io import load_params

            loaded = load_params(path)
            missing = sorted(set(params) - set(loaded))
            extra = sorted(set(loaded) - set(params))
            if missing or extra:
                raise DataError(
                    f"{path} does not fit {args.model} for {args.dataset}: "
                    f"missing {missing}, unexpected {extra}"
                )
            for k, v in loaded.items():
                if tuple(v.shape) != tuple(params[k].shape):
                    raise DataError(
                        f"{path}: {k} has shape {tuple(v.shape)} but {args.model} for {args.dataset} "
                        f"needs {tuple(params[k].shape)} (check --model, --dataset and --hidden)"
                    )
            params = {k: jax.numpy.asarray(v) for k, v in loaded.items()}
            if state:
                state_path = os.path.join(os.path.dirname(path), "state.npz")
                if not os.path.exists(state_path):
                    raise DataError(f"{args.model} needs its running statistics: {state_path} is missing")
                state = load_tree(state_path, state)
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"cannot load {path}: {e}") from None
    _, (x, t) = _load_data(args)
    acc = evaluate(model, params, state, x, t)
    print(f"test accuracy {acc:.4f} ({args.model} on {args.dataset}, {len(x)} test images, {path})")
    return 0


def main(argv=None) -> int:
    """Entry point of the `fnnet` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from fnnet.training import CheckpointError, TrainingDiverged

    sub = parser.commands[args.command]
    try:
        if args.command == "train":
            return _train(args, sub)
        return _eval(args, sub)
    except (DataError, CheckpointError, TrainingDiverged) as e:
        print(f"fnnet {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fnnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
