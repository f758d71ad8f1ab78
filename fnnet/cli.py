"""The `fnnet` command: train a network, evaluate saved parameters, run the book's experiments.

    fnnet train                      # MNIST (or, offline, the bundled digits), TwoLayerNet, SGD lr 0.1
    fnnet train --dataset digits     # scikit-learn's 8x8 digits, offline, a few seconds
    fnnet train --model multi_layer_net --batchnorm --optimizer adam --epochs 5
    fnnet train --model deep_convnet --optimizer adam --epochs 20 --schedule step --decay-epochs 4
    fnnet eval --params runs/two_layer_net-mnist/params.npz
    fnnet experiment --list

`train` prints a progress bar per epoch and one line per epoch (loss, train and test accuracy,
images/s) and writes metrics.json, curves.png, params.npz (plus state.npz for models with
running statistics) and checkpoints to --out. Every failure is one line on stderr and a
non-zero exit status (2 for usage errors); --debug shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from fnnet._checks import MAX_SEED, MAX_STEPS
from fnnet.models import MODEL_NAMES
from fnnet.optimizers import NAMES as OPTIMIZERS

__all__ = ["main", "build_parser"]

CONV_MODELS = ("simple_convnet", "deep_convnet")
DATASETS = ("mnist", "digits")
SCHEDULES = ("constant", "step", "cosine")
WEIGHT_INITS = ("xavier", "he")
# Without --lr: 0.1 for SGD (the book's chapter 5 run), the book's defaults for the others.
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01, "rmsprop": 0.01, "adam": 0.001}
# Without --epochs: 17 epochs of MNIST are the book's 10,000 iterations (600 per epoch); digits
# has 14 batches per epoch, so it gets more epochs.
DEFAULT_EPOCHS = {"mnist": 17, "digits": 100}
COMPILE_CACHE_ENV = "FNNET_COMPILE_CACHE"  # "0" turns JAX's persistent compilation cache off
METRICS_MAX_BYTES = 256 * 2**20  # metrics.json: settings and about 20 bytes per training step


class DataError(Exception):
    """Input data that cannot be loaded; reported as one line (plus its indented causes), exit status 1."""

    def __init__(self, message: str, causes=()):
        super().__init__(message)
        self.causes = list(causes)


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so files in progress are removed and the lock released."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line plus where to read more, not the whole usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\nsee {self.prog} --help\n")


def _int(low, high=None, why=""):
    """An argparse type: an integer >= low (and <= high)."""

    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
        if v < low or (high is not None and v > high):
            want = f">= {low}" if high is None else f"in {low}..{high}{why}"
            raise argparse.ArgumentTypeError(f"must be {want}, got {v}")
        return v

    return parse


_positive_int, _nonneg_int = _int(1), _int(0)
_seed = _int(0, MAX_SEED, " (a JAX PRNG key holds 32 bits)")


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


def _int_list(low):
    def parse(text):
        try:
            values = [int(s) for s in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected integers like 100,100, got {text!r}") from None
        if min(values) < low:
            raise argparse.ArgumentTypeError(f"values must be >= {low}, got {text!r}")
        return values

    return parse


def _devices(text):
    if text == "all":
        return text
    return _positive_int(text)


def _weight_init(text):
    if text.lower() in WEIGHT_INITS:
        return text.lower()
    try:
        return _float(0.0, True)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive std or one of {', '.join(WEIGHT_INITS)}, "
                                         f"got {text!r}") from None


def _model_name(text):
    """A built-in model's name, or your own network as package.module:attr or path/to/file.py:attr."""
    from fnnet.models.user import is_spec

    if text in MODEL_NAMES or is_spec(text):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(MODEL_NAMES)}, or "
                                     "name your own network as package.module:attr or path/to/file.py:attr)")


def _add_model_args(p):
    p.add_argument("--model", type=_model_name, default=None, metavar="NAME|MODULE:ATTR|FILE.py:ATTR",
                   help=f"one of {', '.join(MODEL_NAMES)} (default: two_layer_net), or your own network: "
                   "a serial net, a Model or a function (input_shape, output_size) -> Model in your code")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="data set (default: mnist; without --data-dir, the bundled digits when MNIST "
                   "cannot be loaded)")
    p.add_argument(
        "--hidden", type=_int_list(1), default=None, metavar="N[,N...]",
        help="hidden layer sizes: one for two_layer_net (default 50) and the convnets (100 simple, 50 deep), "
        "a list for multi_layer_net (default 100,100,100,100,100)",
    )
    p.add_argument("--batchnorm", action="store_true", help="multi_layer_net: use Batch Norm")
    p.add_argument(
        "--dropout", type=_float(0.0, True, 1.0, True), default=None, metavar="RATIO",
        help="multi_layer_net: dropout with this ratio after each hidden activation",
    )
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: $FNNET_DATA_DIR)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fnnet", description="Deep Learning from Scratch, functionally.")
    sub = parser.add_subparsers(dest="command", metavar="{train,eval,experiment}")
    sub.required = True

    t = sub.add_parser("train", help="train a network", description="Train a network (fnnet.training.fit).")
    _add_model_args(t)
    t.add_argument(
        "--weight-init", type=_weight_init, default=None, metavar="STD|xavier|he",
        help="initial weight scale (ch. 6): a std such as 0.01, or xavier, or he (default: the model's)",
    )
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="(default: sgd)")
    t.add_argument(
        "--lr", type=_float(0.0, True), default=None,
        help="(peak) learning rate (default: 0.1 for sgd, 0.001 for adam, 0.01 for the others)",
    )
    t.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help="learning-rate schedule (default: constant, or step given its epochs)")
    t.add_argument("--decay-epochs", type=_positive_int, default=None, metavar="N",
                   help="step schedule: the last N epochs at lr/10")
    t.add_argument("--boundaries", type=_int_list(1), default=None, metavar="E1[,E2...]",
                   help="step schedule: divide the rate by 10 after each of these epochs")
    t.add_argument("--warmup-epochs", type=_positive_int, default=None, metavar="N",
                   help="rise linearly from 0 to lr over the first N epochs, then the schedule")
    t.add_argument("--weight-decay", type=_float(0.0, False), default=0.0, metavar="LAMBDA",
                   help="L2 weight decay: lambda*W added to the weight gradients (default 0)")
    t.add_argument("--clip-norm", type=_float(0.0, True), default=None, metavar="X",
                   help="scale the gradients down to a global L2 norm of at most X")
    t.add_argument(
        "--epochs", type=_positive_int, default=None,
        help=f"epochs (default: {DEFAULT_EPOCHS['mnist']} for mnist, {DEFAULT_EPOCHS['digits']} for digits)",
    )
    t.add_argument("--batch-size", type=_positive_int, default=100, help="(default: 100)")
    t.add_argument("--seed", type=_seed, default=0, help=f"0..{MAX_SEED} (default: 0)")
    t.add_argument("--augment", action="store_true", help="convnets: random shifts and rotations")
    t.add_argument("--out", default=None, metavar="DIR", help="default runs/<model>-<dataset>")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out")
    mode.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    d = t.add_argument_group("many devices and hosts (fnnet.distributed)")
    d.add_argument("--devices", type=_devices, default=None, metavar="N|all",
                   help="split every batch over N local devices, or all (default: 1; with several "
                   "processes: all)")
    d.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="process 0's address, for a run over several processes ($FNNET_COORDINATOR)")
    d.add_argument("--num-processes", type=_positive_int, default=None, metavar="N",
                   help="number of processes ($FNNET_NUM_PROCESSES)")
    d.add_argument("--process-id", type=_nonneg_int, default=None, metavar="I",
                   help="this process's index, 0 to N-1 ($FNNET_PROCESS_ID)")
    d.add_argument("--init-timeout", type=_positive_int, default=None, metavar="SECONDS",
                   help="give up when not every process has joined within this time ($FNNET_INIT_TIMEOUT, "
                   "default 60)")

    e = sub.add_parser("eval", help="test accuracy of saved parameters", description="Print test accuracy.")
    e.add_argument(
        "--params", required=True, metavar="FILE",
        help="params.npz written by `fnnet train` (its state.npz and metrics.json are read too), a .ckpt "
        "checkpoint, or the book's .pkl (sample_weight.pkl: the chapter 3 network)",
    )
    _add_model_args(e)
    parser.commands = {"train": t, "eval": e}  # for usage errors found after parsing
    try:
        from fnnet import experiments
    except ImportError:
        experiments = None
    if experiments is not None:
        parser.commands["experiment"] = experiments.add_parser(sub)
    return parser


def _input_shape(model, dataset):
    """Images (1, H, W) for the convnets and your own networks, flat vectors for the others."""
    side = 28 if dataset == "mnist" else 8
    return (side * side,) if model in MODEL_NAMES and model not in CONV_MODELS else (1, side, side)


def _model_config(args, parser):
    """The model's keyword arguments from the options; usage errors need no data."""
    cfg = {}
    if args.model not in MODEL_NAMES:
        used = [opt for opt, v in (("--hidden", args.hidden), ("--batchnorm", args.batchnorm or None),
                                   ("--dropout", args.dropout),
                                   ("--weight-init", getattr(args, "weight_init", None))) if v is not None]
        if used:
            parser.error(f"argument {used[0]}: configures the built-in models; your network {args.model} "
                         "sets its own layers")
        return cfg
    if getattr(args, "weight_init", None) is not None:
        if args.model == "deep_convnet":
            parser.error("argument --weight-init: deep_convnet uses He initialisation, as the book does")
        cfg["weight_init_std"] = args.weight_init
    if args.model == "multi_layer_net":
        cfg["hidden_size_list"] = args.hidden or [100] * 5
        if args.batchnorm:
            cfg["use_batchnorm"] = True
        if args.dropout is not None:
            cfg["use_dropout"] = True
            cfg["dropout_ratio"] = args.dropout
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


def _build_model(name, cfg, dataset, parser, shape=None):
    from fnnet.models import get_model
    from fnnet.models.user import is_spec, load_model

    shape = tuple(shape or _input_shape(name, dataset))
    if is_spec(name):
        return load_model(name, shape, 10)
    try:
        return get_model(name, shape, 10, **cfg)
    except (ValueError, TypeError) as e:
        parser.error(f"argument --model: {name} cannot be built for {dataset} input {shape}: {e}")


def _tried(e) -> list:
    """The "Tried, in order" list of MNIST's not-found message: each place and what was found."""
    return [line[4:] for line in str(e).splitlines() if line.startswith("  - ")]


def _load_data(args, say, warn):
    """(dataset name, data). Without --dataset and --data-dir, MNIST falls back to the digits,
    saying why on stderr (`warn`)."""
    from fnnet import datasets

    explicit = args.dataset is not None or args.data_dir is not None
    name = args.dataset or "mnist"
    try:
        if name == "digits":
            return name, datasets.load_digits()
        return name, datasets.load_mnist(data_dir=args.data_dir)
    except datasets.MNISTNotFoundError as e:
        tried = _tried(e)
        if explicit:
            raise DataError("cannot load mnist: no verified copy of the four MNIST files. Set FNNET_DATA_DIR "
                            "or --data-dir to a folder with them, allow a download, or try --dataset digits "
                            "(bundled, offline). Tried, in order:", tried) from None
        env = next((t for t in tried if t.startswith("FNNET_DATA_DIR")), None)
        warn(f"fnnet: MNIST is not available ({env or 'FNNET_DATA_DIR: not set'}; no verified copy "
             "elsewhere), so this run uses the bundled 8x8 digits; for MNIST set "
             "FNNET_DATA_DIR=/path/to/mnist or go online, and pass --dataset mnist to require it. "
             "Tried, in order:")
        for t in tried:
            warn(f"  - {t}")
        return "digits", datasets.load_digits()
    except (OSError, ValueError) as e:
        raise DataError(f"cannot load {name}: {str(e).splitlines()[0]}") from None


def _schedule(args, parser, lr, epochs, steps):
    """(lr or schedule, JSON description) from --schedule, --decay-epochs, --boundaries, --warmup-epochs."""
    from fnnet import schedules

    kind = args.schedule or ("step" if args.decay_epochs or args.boundaries else "constant")
    desc = {"kind": kind, "lr": lr}
    if kind != "step" and (args.decay_epochs or args.boundaries):
        parser.error(f"argument --schedule: --decay-epochs and --boundaries belong to the step schedule, "
                     f"not {kind}")
    if args.decay_epochs and args.boundaries:
        parser.error("argument --boundaries: give --decay-epochs or --boundaries, not both")
    warmup = args.warmup_epochs or 0
    if warmup >= epochs:
        parser.error(f"argument --warmup-epochs: {warmup} must be fewer than the {epochs} epochs")
    sched = lr
    if kind == "step":
        if not (args.decay_epochs or args.boundaries):
            parser.error("argument --schedule: step needs --decay-epochs N or --boundaries E1,E2")
        bounds = [epochs - args.decay_epochs] if args.decay_epochs else sorted(args.boundaries)
        if bounds[0] <= warmup or bounds[-1] >= epochs or len(set(bounds)) != len(bounds):
            parser.error(f"argument --decay-epochs/--boundaries: the rate must drop after epoch(s) strictly "
                         f"between {warmup} and {epochs}, got {bounds}")
        # linear_warmup hands its schedule the steps counted from the end of the warm-up
        sched = schedules.step_decay(lr, [(b - warmup) * steps for b in bounds], 0.1)
        desc.update(boundaries_epochs=bounds, factor=0.1)
    elif kind == "cosine":
        sched = schedules.cosine_decay(lr, (epochs - warmup) * steps)
        desc.update(decay_epochs=epochs - warmup)
    if warmup:
        sched = schedules.linear_warmup(sched, warmup * steps)
        desc.update(warmup_epochs=warmup)
    return sched, desc


def _optimizer(args, lr_or_schedule):
    from fnnet import optimizers, regularization

    opt = optimizers.get(args.optimizer, lr=lr_or_schedule)
    transforms = []
    if args.weight_decay:
        transforms.append(regularization.weight_decay(args.weight_decay))
    if args.clip_norm is not None:
        transforms.append(regularization.clip_by_global_norm(args.clip_norm))
    return optimizers.chain(opt, *transforms) if transforms else opt


def _train(args, parser):
    from fnnet import distributed
    from fnnet.training import fit

    processes = distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                                       timeout=args.init_timeout)
    devices = args.devices or ("all" if processes else 1)
    say = _printer() if distributed.is_main_process() else (lambda line: None)
    args.model = args.model or "two_layer_net"
    if ":" in args.model:
        from fnnet.models.user import normalize_spec

        args.model = normalize_spec(args.model)
    cfg = _model_config(args, parser)
    if args.augment and args.model in MODEL_NAMES and args.model not in CONV_MODELS:
        parser.error(f"argument --augment: only the convnets take image augmentation, not {args.model}")
    dataset, (train, test) = _load_data(args, say, _printer(sys.stderr) if distributed.is_main_process()
                                        else (lambda line: None))
    model = _build_model(args.model, cfg, dataset, parser)
    n = len(train[0])
    if args.batch_size > n:
        parser.error(f"argument --batch-size: {args.batch_size} is larger than the {n} training samples "
                     f"of {dataset}")
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    epochs = args.epochs if args.epochs is not None else DEFAULT_EPOCHS[dataset]
    steps = n // args.batch_size
    if epochs * steps > MAX_STEPS:
        parser.error(f"argument --epochs: {epochs:,} epochs of {steps:,} steps are {epochs * steps:,} steps, "
                     f"more than the {MAX_STEPS:,} that the step counter (int32) counts")
    lr_sched, sched_desc = _schedule(args, parser, lr, epochs, steps)
    optimizer = _optimizer(args, lr_sched)
    augment = None
    if args.augment:
        from fnnet.augment import augment
    out = args.out or os.path.join("runs", f"{_run_name(args.model)}-{dataset}")
    extras = "".join(f", {k} {v:g}" for k, v in (("weight decay", args.weight_decay),
                                                  ("clip norm", args.clip_norm)) if v)
    say(f"fnnet train: {args.model}{' ' + str(cfg) if cfg else ''} on {dataset} ({n} train, {len(test[0])} "
        f"test), {args.optimizer} lr {lr:g} ({sched_desc['kind']} schedule){extras}, "
        f"batch {args.batch_size}, {epochs} epochs ({epochs * steps} iterations), seed {args.seed}"
        f"{f', devices {devices}' if devices != 1 else ''} -> {out}")
    info = {"model": args.model, "config": cfg, "dataset": dataset, "optimizer": args.optimizer, "lr": lr,
            "schedule": sched_desc, "weight_decay": args.weight_decay, "clip_norm": args.clip_norm,
            "augment": args.augment, "epochs": epochs}
    result = fit(
        model, optimizer, train, test, epochs=epochs, batch_size=args.batch_size, seed=args.seed,
        out_dir=out, resume=args.resume, overwrite=args.overwrite, augment=augment,
        progress=not args.no_progress, log=say, info=info, devices=None if devices == 1 else devices,
    )
    acc = result.history["test_acc"][-1] if result.history["test_acc"] else float("nan")
    say(f"test accuracy {acc:.4f}; wrote metrics.json, curves.png, params.npz and checkpoints to {out}")
    return 0


def _run_name(model):
    """The run folder's stem: the model's name, or the attribute of your own network's spec."""
    return model.rpartition(":")[2] if ":" in model else model


def _run_info(params_path):
    """(the run description, the recorded input shape or None) from metrics.json beside a params
    file; ({}, None) when there is none."""
    from fnnet.io import read_regular

    path = os.path.join(os.path.dirname(os.path.abspath(params_path)), "metrics.json")
    try:
        metrics = json.loads(read_regular(path, fn="fnnet eval", what="run description",
                                          max_bytes=METRICS_MAX_BYTES))
        run, shape = metrics.get("run"), metrics.get("input_shape")
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError, AttributeError) as e:
        print(f"fnnet eval: warning: ignoring {path}: {_one_line(e)}", file=sys.stderr)
        return {}, None
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
        shape = None
    return (run if isinstance(run, dict) else {}), shape


def _eval_three_layer_net(path, x, t):
    """The book's sample_weight.pkl: chapter 3's sigmoid 784-50-100-10 network, forward only."""
    import numpy as np

    from fnnet.io import load_params
    from fnnet.models import batched_accuracy, three_layer_net

    params = load_params(path)
    bad = sorted(k for k, v in params.items() if not np.isfinite(np.asarray(v, np.float64)).all())
    if bad:
        raise DataError(f"{path}: {', '.join(bad)} hold NaN or infinite values; refusing to evaluate them")
    return batched_accuracy(lambda xb: three_layer_net.predict(params, xb), x, t, batch_size=1000)


def _eval(args, parser):
    import jax

    from fnnet.io import load_params
    from fnnet.training import CheckpointError, evaluate, load_run_params

    path = args.params
    run, recorded_shape = _run_info(path)
    chapter3 = False
    if path.endswith(".pkl") and args.model is None:
        loaded = load_params(path)
        chapter3 = isinstance(loaded, dict) and "W3" in loaded and "W4" not in loaded \
            and getattr(loaded.get("W1"), "ndim", 0) == 2
    recorded = run.get("model")
    if args.model is None and isinstance(recorded, str) and recorded not in MODEL_NAMES \
            and ":" not in recorded:
        raise DataError(f"{path} was trained on the model {recorded!r}, which fnnet cannot rebuild by name; "
                        "pass --model package.module:attr or path/to/file.py:attr naming that network")
    args.model = args.model or recorded or "two_layer_net"
    if ":" in args.model:
        from fnnet.models.user import normalize_spec

        args.model = normalize_spec(args.model)
    args.dataset = args.dataset or run.get("dataset")
    if path.endswith(".pkl") and not args.dataset:
        args.dataset = "mnist"
    dataset, (_, (x, t)) = _load_data(args, _printer(sys.stderr), _printer(sys.stderr))
    if chapter3:
        acc = _eval_three_layer_net(path, x.reshape(len(x), -1), t)
        print(f"test accuracy {acc:.4f} (the chapter 3 network on {dataset}, {len(x)} test images, {path})")
        return 0
    shaped = args.hidden is not None or args.batchnorm or args.dropout is not None
    cfg = run.get("config")
    if shaped or run.get("model") != args.model or not isinstance(cfg, dict):
        cfg = _model_config(args, parser)
    same_run = run.get("model") == args.model and run.get("dataset") == dataset
    model = _build_model(args.model, cfg, dataset, parser, recorded_shape if same_run else None)
    params, state = model.init(jax.random.PRNGKey(0))
    try:
        params, state = load_run_params(path, params, state, fn="fnnet eval")
    except CheckpointError:
        raise
    except ValueError as e:
        raise DataError(f"{e} (check --model, --dataset and --hidden)") from None
    acc = evaluate(model, params, state, x, t)
    print(f"test accuracy {acc:.4f} ({args.model} on {dataset}, {len(x)} test images, {path})")
    return 0


def _printer(stream=None):
    def say(line):
        print(line, file=stream or sys.stdout, flush=True)

    return say


def enable_compile_cache() -> str | None:
    """Turn on JAX's persistent compilation cache in fnnet's cache folder, so that a repeated run
    skips compilation; FNNET_COMPILE_CACHE=0 turns it off. A folder that cannot be created or
    written leaves the cache off (JAX itself treats an unreadable entry as a miss). Returns the
    folder, or None."""
    if os.environ.get(COMPILE_CACHE_ENV, "1").strip().lower() in ("0", "off", "false", "no"):
        return None
    from fnnet.datasets import default_cache_dir
    from fnnet.io import ensure_writable_dir

    folder = os.path.join(default_cache_dir(), "jax-compile")
    try:
        ensure_writable_dir(folder)
    except OSError:
        return None
    import warnings

    import jax

    # An unreadable or unwritable entry is a cache miss: JAX recompiles, and the run goes on quietly.
    warnings.filterwarnings("ignore", message="Error (reading|writing) persistent compilation cache entry")
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return folder


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    known = (DataError, OSError, ValueError)
    return text if isinstance(e, known) or type(e).__module__.startswith("fnnet") \
        else f"{type(e).__name__}: {text}"


def _terminate(signum, frame):
    raise Terminated()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line on stderr, naming the command, not a source line."""
    print(f"fnnet: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    """Entry point of the `fnnet` console script; returns the exit status."""
    import signal
    import warnings

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    sub = parser.commands[args.command]
    if extra:
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    enable_compile_cache()
    resume = "; resume with --resume" if args.command == "train" else ""
    import threading

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            if args.command == "train":
                return _train(args, sub)
            if args.command == "eval":
                return _eval(args, sub)
            from fnnet import experiments

            return experiments.run(args)
    except KeyboardInterrupt:
        print(f"fnnet {args.command}: interrupted{resume}", file=sys.stderr)
        return 130
    except Terminated:
        print(f"fnnet {args.command}: terminated{resume}", file=sys.stderr)
        return 143
    except Exception as e:
        if getattr(args, "debug", False):
            raise
        causes = getattr(e, "causes", ())
        hint = "" if causes else " (--debug shows the traceback)"
        print(f"fnnet {args.command}: error: {_one_line(e)}{hint}", file=sys.stderr)
        for cause in causes:
            print(f"  - {cause}", file=sys.stderr)
        return 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
