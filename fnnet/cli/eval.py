"""`fnnet eval`: the test accuracy of saved parameters (a run's params.npz, a checkpoint, the book's .pkl)."""

from __future__ import annotations

import sys

from fnnet.cli.common import (
    DataError,
    add_model_args,
    build_model,
    load_data,
    model_config,
    normalize_model,
    printer,
)
from fnnet.models import MODEL_NAMES


def add_parser(sub):
    """Register `eval` on the subparsers `sub`; returns its parser."""
    e = sub.add_parser("eval", help="test accuracy of saved parameters", description="Print test accuracy.")
    e.add_argument(
        "--params", required=True, metavar="FILE",
        help="params.npz written by `fnnet train` (its state.npz and metrics.json are read too), a .ckpt "
        "checkpoint, or the book's .pkl (sample_weight.pkl: the chapter 3 network)",
    )
    add_model_args(e)
    return e


def _eval_three_layer_net(path, x, t):
    """The book's sample_weight.pkl: chapter 3's sigmoid 784-50-100-10 network, forward only."""
    from fnnet.inference import load_finite_params
    from fnnet.models import batched_accuracy, three_layer_net

    params = load_finite_params(path, fn="fnnet eval")
    return batched_accuracy(lambda xb: three_layer_net.predict(params, xb), x, t, batch_size=1000)


def run(args, parser) -> int:
    """Print the test accuracy of --params on the data set it was trained on."""
    import jax

    from fnnet.inference import read_run_info
    from fnnet.io import load_params
    from fnnet.training import CheckpointError, evaluate, load_run_params

    path = args.params
    run_info, recorded_shape = read_run_info(
        path, fn="fnnet eval", warn=lambda line: print(f"fnnet eval: warning: {line}", file=sys.stderr))
    chapter3 = False
    if path.endswith(".pkl") and args.model is None:
        loaded = load_params(path)
        chapter3 = isinstance(loaded, dict) and "W3" in loaded and "W4" not in loaded \
            and getattr(loaded.get("W1"), "ndim", 0) == 2
    recorded = run_info.get("model")
    if args.model is None and isinstance(recorded, str) and recorded not in MODEL_NAMES \
            and ":" not in recorded:
        raise DataError(f"{path} was trained on the model {recorded!r}, which fnnet cannot rebuild by name; "
                        "pass --model package.module:attr or path/to/file.py:attr naming that network")
    args.model = args.model or recorded or "two_layer_net"
    normalize_model(args)
    args.dataset = args.dataset or run_info.get("dataset")
    if path.endswith(".pkl") and not args.dataset:
        args.dataset = "mnist"
    dataset, (_, (x, t)) = load_data(args, printer(sys.stderr), printer(sys.stderr))
    if chapter3:
        acc = _eval_three_layer_net(path, x.reshape(len(x), -1), t)
        print(f"test accuracy {acc:.4f} (the chapter 3 network on {dataset}, {len(x)} test images, {path})")
        return 0
    shaped = args.hidden is not None or args.batchnorm or args.dropout is not None
    cfg = run_info.get("config")
    if shaped or run_info.get("model") != args.model or not isinstance(cfg, dict):
        cfg = model_config(args, parser)
    same_run = run_info.get("model") == args.model and run_info.get("dataset") == dataset
    model = build_model(args.model, cfg, dataset, parser, recorded_shape if same_run else None)
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
