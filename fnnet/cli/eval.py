"""`fnnet eval`: the test accuracy of saved parameters (a run's params.npz, a checkpoint, the book's .pkl)."""

from __future__ import annotations

import sys

from fnnet.cli.common import (
    DATASETS,
    DataError,
    add_model_args,
    add_trust_run,
    build_model,
    check_params_file,
    load_data,
    model_config,
    normalize_model,
    printer,
    untrusted_line,
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
    add_trust_run(e)
    return e


def _eval_three_layer_net(path, x, t):
    """The book's sample_weight.pkl: chapter 3's sigmoid 784-50-100-10 network, forward only."""
    from fnnet.inference import load_finite_params
    from fnnet.models import batched_accuracy, three_layer_net

    params = load_finite_params(path, fn="fnnet eval")
    return batched_accuracy(lambda xb: three_layer_net.predict(params, xb), x, t, batch_size=1000)


def _run_info(args, path):
    """(run description, recorded input shape) from the metrics.json beside a run's file: refused
    when damaged (ignored, with a warning, when --model is given), when it names code without
    --trust-run, or a model or data set that fnnet eval cannot rebuild or load."""
    from fnnet.inference import metrics_path, read_run_info
    from fnnet.models.user import is_spec

    warn = (lambda line: print(f"fnnet eval: warning: {line}", file=sys.stderr)) if args.model else None
    run_info, shape = read_run_info(path, fn="fnnet eval", warn=warn)
    recorded = run_info.get("model") if args.model is None else None
    if recorded is not None and is_spec(recorded) and not args.trust_run:
        raise DataError(untrusted_line(metrics_path(path), recorded))
    if recorded is not None and recorded not in MODEL_NAMES and not is_spec(recorded):
        raise DataError(f"{path} was trained on the model {recorded!r}, which fnnet cannot rebuild by name; "
                        "pass --model package.module:attr or path/to/file.py:attr naming that network")
    dataset = run_info.get("dataset")
    if args.dataset is None and dataset is not None and dataset not in DATASETS:
        raise DataError(f"{path}: its run was trained on {dataset!r}, not a data set fnnet eval loads; pass "
                        f"--dataset ({' or '.join(DATASETS)})")
    return run_info, shape


def run(args, parser) -> int:
    """Print the test accuracy of --params on the data set it was trained on."""
    import jax

    from fnnet.inference import check_param_count, config_from_shapes, guess_model
    from fnnet.io import load_params
    from fnnet.models.user import is_spec, normalize_spec
    from fnnet.training import CheckpointError, evaluate, load_run_params

    path = args.params
    check_params_file(path)
    if path.endswith(".pkl"):  # the book's weights: the network their own arrays fit, on MNIST
        loaded = load_params(path)
        args.model = args.model or guess_model(loaded, path, fn="fnnet eval")
        run_info, recorded_shape, cfg = {}, None, config_from_shapes(args.model, loaded)
        args.dataset = args.dataset or "mnist"
    else:
        run_info, recorded_shape = _run_info(args, path)
        args.model = args.model or run_info.get("model") or "two_layer_net"
        args.dataset = args.dataset or run_info.get("dataset")
        cfg = None
    normalize_model(args)
    recorded = run_info.get("model")
    if isinstance(recorded, str) and is_spec(recorded):
        recorded = normalize_spec(recorded)  # as args.model: your own network's file by its absolute path
    if cfg is None and recorded == args.model:
        cfg = run_info.get("config")
    dataset, (_, (x, t)) = load_data(args, printer(sys.stderr), printer(sys.stderr))
    if args.model == "three_layer_net":
        acc = _eval_three_layer_net(path, x.reshape(len(x), -1), t)
        print(f"test accuracy {acc:.4f} (the chapter 3 network on {dataset}, {len(x)} test images, {path})")
        return 0
    if args.hidden is not None or args.batchnorm or args.dropout is not None or not isinstance(cfg, dict):
        cfg = model_config(args, parser)
    same_run = recorded == args.model and run_info.get("dataset") == dataset
    model = build_model(args.model, cfg, dataset, parser, recorded_shape if same_run else None)
    key = jax.random.PRNGKey(0)
    what = f"{args.model}{' ' + str(cfg) if cfg else ''} for input {tuple(model.input_shape)}"
    check_param_count(jax.eval_shape(model.init, key)[0], path, fn="fnnet eval", what=what)
    params, state = model.init(key)
    try:
        params, state = load_run_params(path, params, state, fn="fnnet eval")
    except CheckpointError:
        raise
    except ValueError as e:
        raise DataError(f"{e} (check --model, --dataset and --hidden)") from None
    acc = evaluate(model, params, state, x, t)
    print(f"test accuracy {acc:.4f} ({args.model} on {dataset}, {len(x)} test images, {path})")
    return 0
