"""What the `fnnet` commands share: the argparse parser that reports usage errors in one line, the
option types and model options, data loading, and `run_command`, which turns every failure into
one line on stderr (SIGTERM and Ctrl-C included) and warnings into one line each."""

from __future__ import annotations

import argparse
import math
import os
import sys

from fnnet._checks import MAX_SEED
from fnnet.models import MODEL_NAMES

CONV_MODELS = ("simple_convnet", "deep_convnet")
DATASETS = ("mnist", "digits")
COMPILE_CACHE_ENV = "FNNET_COMPILE_CACHE"  # "0" turns JAX's persistent compilation cache off


class DataError(Exception):
    """Input data that cannot be loaded; reported as one line (plus its indented causes), exit status 1."""

    def __init__(self, message: str, causes=()):
        super().__init__(message)
        self.causes = list(causes)


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so files in progress are removed and the lock released."""


class Parser(argparse.ArgumentParser):
    """Usage errors as one line plus where to read more, not the whole usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\nsee {self.prog} --help\n")


def int_type(low, high=None, why=""):
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


positive_int, nonneg_int = int_type(1), int_type(0)
seed_type = int_type(0, MAX_SEED, " (a JAX PRNG key holds 32 bits)")


def float_type(low, low_open, high=None, high_open=False):
    """An argparse type: a finite number above `low` (or at it unless `low_open`), below `high`."""

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


def int_list(low):
    """An argparse type: comma-separated integers >= low, such as 100,100."""

    def parse(text):
        try:
            values = [int(s) for s in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected integers like 100,100, got {text!r}") from None
        if min(values) < low:
            raise argparse.ArgumentTypeError(f"values must be >= {low}, got {text!r}")
        return values

    return parse


def model_type(names):
    """An argparse type: one of `names`, or your own network as package.module:attr or
    path/to/file.py:attr."""

    def parse(text):
        from fnnet.models.user import is_spec

        if text in names or is_spec(text):
            return text
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(names)}, or name "
                                         "your own network as package.module:attr or path/to/file.py:attr)")

    return parse


model_name = model_type(MODEL_NAMES)


def add_debug(p):
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")


def add_model_args(p):
    """--model, --dataset, --hidden, --batchnorm, --dropout, --data-dir and --debug (train, eval)."""
    p.add_argument("--model", type=model_name, default=None, metavar="NAME|MODULE:ATTR|FILE.py:ATTR",
                   help=f"one of {', '.join(MODEL_NAMES)} (default: two_layer_net), or your own network: "
                   "a serial net, a Model or a function (input_shape, output_size) -> Model in your code")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="data set (default: mnist; without --data-dir, the bundled digits when MNIST "
                   "cannot be loaded)")
    p.add_argument(
        "--hidden", type=int_list(1), default=None, metavar="N[,N...]",
        help="hidden layer sizes: one for two_layer_net (default 50) and the convnets (100 simple, 50 deep), "
        "a list for multi_layer_net (default 100,100,100,100,100)",
    )
    p.add_argument("--batchnorm", action="store_true", help="multi_layer_net: use Batch Norm")
    p.add_argument(
        "--dropout", type=float_type(0.0, True, 1.0, True), default=None, metavar="RATIO",
        help="multi_layer_net: dropout with this ratio after each hidden activation",
    )
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: $FNNET_DATA_DIR)")
    add_debug(p)


def add_trust_run(p, what="the run"):
    """--trust-run (eval, predict, draw): import the code that a run's metrics.json names."""
    p.add_argument("--trust-run", action="store_true",
                   help=f"import and run the code (your own network, FILE.py:ATTR or MODULE:ATTR) that "
                   f"{what}'s metrics.json names; without it fnnet runs no code from a run folder (--model "
                   "FILE.py:ATTR names the code yourself)")


def untrusted_line(metrics_path: str, spec: str) -> str:
    """The refusal of code that a run's metrics.json names (`UntrustedCodeError`), in the command
    line's words."""
    import shlex

    return (f"{metrics_path} names the code {spec}; fnnet does not run code from a run folder: pass "
            f"--model {shlex.quote(spec)} or --trust-run if you trust it")


def check_params_file(path) -> None:
    """Say `no such file: PATH` before anything else is read (or blamed on a missing metrics.json)."""
    if not os.path.exists(path):
        raise DataError(f"no such file: {path}")


def normalize_model(args) -> None:
    """Your own network's file path made absolute in args.model, so a run's record works anywhere."""
    if args.model and ":" in args.model:
        from fnnet.models.user import normalize_spec

        args.model = normalize_spec(args.model)


def input_shape(model, dataset):
    """Images (1, H, W) for the convnets and your own networks, flat vectors for the others."""
    side = 28 if dataset == "mnist" else 8
    return (side * side,) if model in MODEL_NAMES and model not in CONV_MODELS else (1, side, side)


def model_config(args, parser):
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


def build_model(name, cfg, dataset, parser, shape=None):
    """The Model `name` (built-in with `cfg`, or your own network) for `dataset`'s input."""
    from fnnet.models import get_model
    from fnnet.models.user import is_spec, load_model

    shape = tuple(shape or input_shape(name, dataset))
    if is_spec(name):
        return load_model(name, shape, 10)
    try:
        return get_model(name, shape, 10, **cfg)
    except (ValueError, TypeError) as e:
        parser.error(f"argument --model: {name} cannot be built for {dataset} input {shape}: {e}")


def _tried(e) -> list:
    """The "Tried, in order" list of MNIST's not-found message: each place and what was found."""
    return [line[4:] for line in str(e).splitlines() if line.startswith("  - ")]


def load_data(args, say, warn):
    """(dataset name, data). Without --dataset and --data-dir, MNIST falls back to the digits,
    saying why and how to get MNIST in two lines on stderr (`warn`); every place tried too when
    args.verbose (a command with --verbose: train). The download's progress bars follow
    args.progress (--progress / --no-progress; by default bars only on a terminal)."""
    from fnnet import datasets

    explicit = args.dataset is not None or args.data_dir is not None
    name = args.dataset or "mnist"
    try:
        if name == "digits":
            return name, datasets.load_digits()
        progress = getattr(args, "progress", None)
        return name, datasets.load_mnist(data_dir=args.data_dir,
                                         progress=interactive() if progress is None else progress)
    except datasets.MNISTNotFoundError as e:
        tried = _tried(e)
        if explicit:
            raise DataError("cannot load mnist: no verified copy of the four MNIST files. Set FNNET_DATA_DIR "
                            "or --data-dir to a folder with them, allow a download, or try --dataset digits "
                            "(bundled, offline). Tried, in order:", tried) from None
        env = next((t for t in tried if t.startswith("FNNET_DATA_DIR")), None)
        verbose = getattr(args, "verbose", False)
        warn(f"fnnet: MNIST is not available ({env or 'FNNET_DATA_DIR: not set'}; no verified copy "
             f"elsewhere), so this run uses the bundled 8x8 digits.{' Tried, in order:' if verbose else ''}")
        for t in tried if verbose else ():
            warn(f"  - {t}")
        more = ", --verbose lists the places tried." if hasattr(args, "verbose") and not verbose else "."
        warn("fnnet: for MNIST, set FNNET_DATA_DIR to a folder with its four files or run once online "
             f"(it is downloaded to {datasets.default_cache_dir()}); --dataset mnist requires it{more}")
        return "digits", datasets.load_digits()
    except (OSError, ValueError) as e:
        raise DataError(f"cannot load {name}: {str(e).splitlines()[0]}") from None


def interactive() -> bool:
    """Whether progress bars help: stdout and stderr (where tqdm draws) are both terminals. In a
    log file or a pipe every frame of a bar would stay, so the epoch lines are all there is."""
    return all(stream is not None and hasattr(stream, "isatty") and stream.isatty()
               for stream in (sys.stdout, sys.stderr))


def printer(stream=None):
    """A function that prints one line to `stream` (default stdout) and flushes it."""

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


def one_line(e: BaseException) -> str:
    """An exception as one line: its message, prefixed by its type unless it is one of fnnet's own."""
    text = " ".join(str(e).split()) or type(e).__name__
    known = (DataError, OSError, ValueError)
    return text if isinstance(e, known) or type(e).__module__.startswith("fnnet") \
        else f"{type(e).__name__}: {text}"


def _terminate(signum, frame):
    raise Terminated()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line on stderr, naming the command, not a source line."""
    print(f"fnnet: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def run_command(command: str, run, *, debug: bool = False, resume_hint: str = "") -> int:
    """`run()` with SIGTERM turned into an exception, warnings as one line each, and every failure
    as one line on stderr: exit status 130 for Ctrl-C, 143 for SIGTERM, 1 for an error (its
    traceback with `debug`). `resume_hint` is added to the interruption messages."""
    import signal
    import threading
    import warnings

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return run()
    except KeyboardInterrupt:
        print(f"fnnet {command}: interrupted{resume_hint}", file=sys.stderr)
        return 130
    except Terminated:
        print(f"fnnet {command}: terminated{resume_hint}", file=sys.stderr)
        return 143
    except Exception as e:
        if debug:
            raise
        causes = getattr(e, "causes", ())
        hint = "" if causes else " (--debug shows the traceback)"
        print(f"fnnet {command}: error: {one_line(e)}{hint}", file=sys.stderr)
        for cause in causes:
            print(f"  - {cause}", file=sys.stderr)
        return 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
