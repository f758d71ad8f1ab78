"""`fnnet train`: train a network with `fnnet.training.fit` from the command line's options."""

from __future__ import annotations

import argparse
import os
import sys

from fnnet._checks import MAX_SEED, MAX_STEPS
from fnnet.cli.common import (
    CONV_MODELS,
    add_model_args,
    build_model,
    float_type,
    int_list,
    interactive,
    load_data,
    model_config,
    nonneg_int,
    normalize_model,
    positive_int,
    printer,
    seed_type,
)
from fnnet.models import MODEL_NAMES
from fnnet.optimizers import NAMES as OPTIMIZERS

SCHEDULES = ("constant", "step", "cosine")
WEIGHT_INITS = ("xavier", "he")
# Without --lr: 0.1 for SGD (the book's chapter 5 run), the book's defaults for the others.
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01, "rmsprop": 0.01, "adam": 0.001}
# Without --epochs: 17 epochs of MNIST are the book's 10,000 iterations (600 per epoch); digits
# has 14 batches per epoch, so it gets more epochs.
DEFAULT_EPOCHS = {"mnist": 17, "digits": 100}


def _devices(text):
    if text == "all":
        return text
    return positive_int(text)


def _weight_init(text):
    if text.lower() in WEIGHT_INITS:
        return text.lower()
    try:
        return float_type(0.0, True)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive std or one of {', '.join(WEIGHT_INITS)}, "
                                         f"got {text!r}") from None


def add_parser(sub):
    """Register `train` on the subparsers `sub`; returns its parser."""
    t = sub.add_parser("train", help="train a network", description="Train a network (fnnet.training.fit).")
    add_model_args(t)
    t.add_argument(
        "--weight-init", type=_weight_init, default=None, metavar="STD|xavier|he",
        help="initial weight scale (ch. 6): a std such as 0.01, or xavier, or he (default: the model's)",
    )
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="(default: sgd)")
    t.add_argument(
        "--lr", type=float_type(0.0, True), default=None,
        help="(peak) learning rate (default: 0.1 for sgd, 0.001 for adam, 0.01 for the others)",
    )
    t.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help="learning-rate schedule (default: constant, or step given its epochs)")
    t.add_argument("--decay-epochs", type=positive_int, default=None, metavar="N",
                   help="step schedule: the last N epochs at lr/10")
    t.add_argument("--boundaries", type=int_list(1), default=None, metavar="E1[,E2...]",
                   help="step schedule: divide the rate by 10 after each of these epochs")
    t.add_argument("--warmup-epochs", type=positive_int, default=None, metavar="N",
                   help="rise linearly from 0 to lr over the first N epochs, then the schedule")
    t.add_argument("--weight-decay", type=float_type(0.0, False), default=0.0, metavar="LAMBDA",
                   help="L2 weight decay: lambda*W added to the weight gradients (default 0)")
    t.add_argument("--clip-norm", type=float_type(0.0, True), default=None, metavar="X",
                   help="scale the gradients down to a global L2 norm of at most X")
    t.add_argument(
        "--epochs", type=positive_int, default=None,
        help=f"epochs (default: {DEFAULT_EPOCHS['mnist']} for mnist, {DEFAULT_EPOCHS['digits']} for digits)",
    )
    t.add_argument("--batch-size", type=positive_int, default=100, help="(default: 100)")
    t.add_argument("--seed", type=seed_type, default=0, help=f"0..{MAX_SEED} (default: 0)")
    t.add_argument("--augment", action="store_true", help="convnets: random shifts and rotations")
    t.add_argument("--out", default=None, metavar="DIR", help="default runs/<model>-<dataset>")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out")
    mode.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    bars = t.add_mutually_exclusive_group()
    bars.add_argument("--progress", action="store_true", default=None,
                      help="progress bars even when the output is not a terminal (default: bars on a "
                      "terminal, else one line per epoch)")
    bars.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    t.add_argument("--verbose", action="store_true",
                   help="say every place tried for MNIST when the run falls back to the digits")
    d = t.add_argument_group("many devices and hosts (fnnet.distributed)")
    d.add_argument("--devices", type=_devices, default=None, metavar="N|all",
                   help="split every batch over N local devices, or all (default: 1; with several "
                   "processes: all)")
    d.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="process 0's address, for a run over several processes ($FNNET_COORDINATOR)")
    d.add_argument("--num-processes", type=positive_int, default=None, metavar="N",
                   help="number of processes ($FNNET_NUM_PROCESSES)")
    d.add_argument("--process-id", type=nonneg_int, default=None, metavar="I",
                   help="this process's index, 0 to N-1 ($FNNET_PROCESS_ID)")
    d.add_argument("--init-timeout", type=positive_int, default=None, metavar="SECONDS",
                   help="the longest a process waits for the others: to join, when one is silent, at the "
                   "end ($FNNET_INIT_TIMEOUT, default 60)")
    return t


def schedule(args, parser, lr, epochs, steps):
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


def run_name(model):
    """The run folder's stem: the model's name, or the attribute of your own network's spec."""
    return model.rpartition(":")[2] if ":" in model else model


def run(args, parser) -> int:
    """Train as the options say; prints one line per epoch and the final test accuracy."""
    from fnnet import distributed
    from fnnet.training import fit

    processes = distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                                       timeout=args.init_timeout)
    devices = args.devices or ("all" if processes else 1)
    say = printer() if distributed.is_main_process() else (lambda line: None)
    args.model = args.model or "two_layer_net"
    normalize_model(args)
    cfg = model_config(args, parser)
    if args.augment and args.model in MODEL_NAMES and args.model not in CONV_MODELS:
        parser.error(f"argument --augment: only the convnets take image augmentation, not {args.model}")
    dataset, (train, test) = load_data(args, say, printer(sys.stderr) if distributed.is_main_process()
                                       else (lambda line: None))
    model = build_model(args.model, cfg, dataset, parser)
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
    lr_sched, sched_desc = schedule(args, parser, lr, epochs, steps)
    optimizer = _optimizer(args, lr_sched)
    augment = None
    if args.augment:
        from fnnet.augment import augment
    out = args.out or os.path.join("runs", f"{run_name(args.model)}-{dataset}")
    extras = "".join(f", {k} {v:g}" for k, v in (("weight decay", args.weight_decay),
                                                  ("clip norm", args.clip_norm)) if v)
    say(f"fnnet train: {args.model}{' ' + str(cfg) if cfg else ''} on {dataset} ({n} train, {len(test[0])} "
        f"test), {args.optimizer} lr {lr:g} ({sched_desc['kind']} schedule){extras}, "
        f"batch {args.batch_size}, {epochs} epoch{'s' if epochs != 1 else ''} ({epochs * steps} iterations), seed {args.seed}"
        f"{f', devices {devices}' if devices != 1 else ''} -> {out}")
    info = {"model": args.model, "config": cfg, "dataset": dataset, "optimizer": args.optimizer, "lr": lr,
            "schedule": sched_desc, "weight_decay": args.weight_decay, "clip_norm": args.clip_norm,
            "augment": args.augment, "epochs": epochs}
    result = fit(
        model, optimizer, train, test, epochs=epochs, batch_size=args.batch_size, seed=args.seed,
        out_dir=out, resume=args.resume, overwrite=args.overwrite, augment=augment,
        progress=interactive() if args.progress is None else args.progress, log=say, info=info,
        devices=None if devices == 1 else devices,
    )
    acc = result.history["test_acc"][-1] if result.history["test_acc"] else float("nan")
    say(f"test accuracy {acc:.4f}; wrote metrics.json, curves.png, params.npz and checkpoints to {out}")
    return 0
