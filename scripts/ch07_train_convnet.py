"""Train SimpleConvNet or DeepConvNet on MNIST with Adam (chapters 7 and 8).

    python scripts/ch07_train_convnet.py --model deep_convnet --epochs 20 --out runs/deep
    python scripts/ch07_train_convnet.py --model deep_convnet --augment --epochs 30 --decay-epochs 6 \
        --out runs/deep_aug

MNIST comes from --data-dir or $FNNET_DATA_DIR. The run goes through `fnnet.training.fit`
(whole epochs as jitted scans, a checkpoint per epoch, --resume to continue); --out receives
params.npz, metrics.json (per-epoch accuracies, images/s) and curves.png, plus run.json with
the settings and the final test accuracy. --decay-epochs N trains the last N epochs with the
learning rate divided by 10 (a step decay: the run stops after epochs - N epochs and resumes from
that checkpoint, which keeps the Adam moments and the key, with the smaller rate).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fnnet import optimizers
from fnnet.augment import make_augment
from fnnet.datasets import load_mnist
from fnnet.io import save_json
from fnnet.models import get_model
from fnnet.training import fit, latest_checkpoint


def _done(out, epochs):
    """True when the latest checkpoint in `out` is at or past `epochs`."""
    if not os.path.isdir(out):
        return False
    _, ck = latest_checkpoint(out, log=lambda *a: None)
    return ck is not None and ck["meta"]["epoch"] >= epochs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("simple_convnet", "deep_convnet"), default="simple_convnet")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--decay-epochs", type=int, default=0, help="last epochs trained at lr / 10 (default 0)")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--augment", action="store_true", help="random shifts and rotations of each batch")
    ap.add_argument("--max-shift", type=float, default=2.0, help="pixels (with --augment)")
    ap.add_argument("--max-degrees", type=float, default=10.0, help="degrees (with --augment)")
    ap.add_argument("--data-dir", default=None, help="MNIST folder (default: $FNNET_DATA_DIR)")
    ap.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    ap.add_argument("--out", default=None, help="output folder (default runs/ch07_<model>)")
    args = ap.parse_args(argv)
    if not 0 <= args.decay_epochs <= args.epochs:
        ap.error(f"--decay-epochs must be between 0 and --epochs ({args.epochs}), got {args.decay_epochs}")
    out = args.out or os.path.join("runs", f"ch07_{args.model}{'_aug' if args.augment else ''}")

    (x_tr, t_tr), (x_te, t_te) = load_mnist(flatten=False, data_dir=args.data_dir)
    model = get_model(args.model, (1, 28, 28), 10)
    augment = make_augment(args.max_shift, args.max_degrees) if args.augment else None
    aug_info = {"max_shift": args.max_shift, "max_degrees": args.max_degrees} if args.augment else None
    info = {"model": args.model, "optimizer": "adam", "lr": args.lr, "epochs": args.epochs,
            "decay_epochs": args.decay_epochs, "augment": aug_info}
    t0 = time.perf_counter()
    phases = [(args.epochs, args.lr)]
    if args.decay_epochs:
        phases = [(args.epochs - args.decay_epochs, args.lr), (args.epochs, args.lr / 10)]
    resume = args.resume
    for i, (epochs, lr) in enumerate(phases):
        if i < len(phases) - 1 and (epochs == 0 or (resume and _done(out, epochs))):
            continue
        result = fit(
            model, optimizers.adam(lr=lr), (x_tr, t_tr), (x_te, t_te),
            epochs=epochs, batch_size=args.batch_size, seed=args.seed, out_dir=out,
            resume=resume, augment=augment, info=info,
        )
        resume = True
    elapsed = time.perf_counter() - t0
    h = result.history
    summary = {
        "model": args.model, "optimizer": "adam", "lr": args.lr, "batch_size": args.batch_size,
        "epochs": args.epochs, "decay_epochs": args.decay_epochs, "seed": args.seed, "augment": args.augment,
        "max_shift": args.max_shift if args.augment else None,
        "max_degrees": args.max_degrees if args.augment else None,
        "final_test_acc": h["test_acc"][-1] if h["test_acc"] else None,
        "best_test_acc": max(h["test_acc"]) if h["test_acc"] else None,
        "seconds": elapsed,
    }
    save_json(summary, os.path.join(out, "run.json"))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
