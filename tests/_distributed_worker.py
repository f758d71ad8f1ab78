"""Subprocess side of tests/test_distributed.py: `fnnet.training.fit` on digits, on 1 or more devices.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python _distributed_worker.py parity OUT.json \\
        two_layer_net=2+4,simple_convnet                    # CASE[=DEVICE COUNTS], default 4
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python _distributed_worker.py resume OUT.json DIR
    FNNET_COORDINATOR=127.0.0.1:PORT FNNET_NUM_PROCESSES=2 FNNET_PROCESS_ID=I \\
        XLA_FLAGS=--xla_force_host_platform_device_count=2 python _distributed_worker.py processes OUT.json

Each case trains with `fit(devices=None)` (one device, the reference) and with `fit(devices=N)`,
from the same seed, and reports the largest absolute difference of every leaf of the parameters,
model state and optimizer state, of the per-iteration losses, and both test accuracies.
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np

from fnnet import distributed, optimizers
from fnnet.augment import augment as random_augment
from fnnet.datasets import load_digits
from fnnet.models import get_model
from fnnet.training import fit
from fnnet.training.epoch import make_chunk

BATCH = 100  # digits: 14 steps per epoch, run in 2 chunks
# case: (model, its config, image input (else flat), optimizer, augment)
BN_DROPOUT = {"hidden_size_list": (50, 50, 50), "use_batchnorm": True, "use_dropout": True,
              "dropout_ratio": 0.2}
CASES = {
    "two_layer_net": ("two_layer_net", {}, False, "adam", False),
    "multi_layer_net": ("multi_layer_net", BN_DROPOUT, False, "adam", False),
    "multi_layer_net_momentum": ("multi_layer_net", BN_DROPOUT, False, "momentum", False),
    "simple_convnet": ("simple_convnet", {"hidden_size": 50}, True, "adam", True),
}
DEFAULT_CASES = ("two_layer_net", "multi_layer_net", "multi_layer_net_momentum", "simple_convnet")


def setup(case):
    name, config, conv, opt, aug = CASES[case]
    train, test = load_digits(flatten=not conv)
    model = get_model(name, train[0].shape[1:], 10, **config)
    optimizer = optimizers.adam(lr=0.001) if opt == "adam" else optimizers.momentum(lr=0.1)
    return model, optimizer, train, test, (random_augment if aug else None)


def train(case, devices, epochs=1, **kw):
    model, optimizer, train_data, test_data, augment = setup(case)
    r = fit(model, optimizer, train_data, test_data, epochs=epochs, batch_size=BATCH, chunks=2,
            augment=augment, progress=False, log=lambda *a: None, devices=devices, **kw)
    trees = {"params": r.params, "state": r.state, "opt_state": r.opt_state}
    flat = jax.tree_util.tree_leaves_with_path(trees)
    return {"leaves": {jax.tree_util.keystr(p): np.asarray(a) for p, a in flat}, "history": r.history}


def compare(ref, got):
    """Largest absolute difference per leaf and of the losses; both test accuracies."""
    diffs = {k: float(np.max(np.abs(a - got["leaves"][k]), initial=0.0)) for k, a in ref["leaves"].items()}
    return {
        "leaf_diff": diffs,
        "max_abs_diff": max(diffs.values()),
        "loss_diff": float(np.max(np.abs(np.subtract(ref["history"]["loss"], got["history"]["loss"])))),
        "test_acc": got["history"]["test_acc"],
        "test_acc_ref": ref["history"]["test_acc"],
    }


def sharded_hlo_facts(mesh):
    """Whether fit's compiled chunk of TwoLayerNet, sharded over the mesh, all-reduces and computes
    on batch/devices rows."""
    model = get_model("two_layer_net", (64,), 10)
    optimizer = optimizers.adam(lr=0.001)
    run = make_chunk(model, optimizer, None, mesh)
    params, state = model.init(jax.random.PRNGKey(0))
    args = (params, state, optimizer.init(params), np.zeros((1000, 64), np.float32), np.zeros(1000, np.int32),
            np.zeros((7, BATCH), np.int32), np.zeros((7, 2), np.uint32))
    text = run.lower(*args).compile().as_text()
    rows = BATCH // distributed.device_count(mesh)
    return {"all_reduce": "all-reduce" in text, "local_rows": f"f32[{rows},64]" in text}


def random_draws_equal(mesh):
    """Whether augmentation and a dropout mask drawn inside jit are bit-identical unsharded and with the
    batch split over the mesh."""
    (x, _), _ = load_digits(flatten=False)
    idx = np.arange(BATCH, dtype=np.int32)

    def draw(x, idx, key):
        aug_key, model_key = jax.random.split(key)
        xb = random_augment(aug_key, x[idx])
        return xb, jax.random.uniform(jax.random.fold_in(model_key, 1), (BATCH, 50)) > 0.2

    key = jax.random.PRNGKey(3)
    one = jax.jit(draw)(x, idx, key)
    rep = distributed.replicated(mesh)
    many = jax.jit(draw, in_shardings=(rep, distributed.batch_sharding(mesh, 1), rep))(x, idx, key)
    return all(bool((np.asarray(a) == np.asarray(b)).all()) for a, b in zip(one, many, strict=True))


def main():
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "processes":
        distributed.initialize()
    report = {"jax": jax.__version__, "processes": jax.process_count(), "devices": jax.device_count(),
              "models": {}}
    if mode == "parity":
        cases = sys.argv[3].split(",") if len(sys.argv) > 3 else list(DEFAULT_CASES)
        for spec in cases:
            case, _, counts = spec.partition("=")
            ref = train(case, None)
            runs = (counts or "4").split("+")
            report["models"][case] = {d: compare(ref, train(case, int(d))) for d in runs}
        report["hlo"] = sharded_hlo_facts(distributed.make_mesh(jax.device_count()))
        report["random_draws_equal"] = random_draws_equal(distributed.make_mesh(jax.device_count()))
    elif mode == "resume":
        folder = sys.argv[3]
        whole = train("multi_layer_net_momentum", 4, epochs=3)
        for devices in (None, 2):  # a run written on 4 devices continues on 1 or 2
            train("multi_layer_net_momentum", 4, epochs=1, out_dir=f"{folder}/{devices}")
            report["models"][str(devices)] = compare(whole, train(
                "multi_layer_net_momentum", devices, epochs=3, out_dir=f"{folder}/{devices}", resume=True))
    elif mode == "processes":
        try:
            distributed.make_mesh(1)
        except ValueError as e:
            report["mesh_error"] = str(e)
        mesh = distributed.make_mesh("all")
        report["mesh"] = [[d.id, d.process_index] for d in mesh.devices.flat]
        mine = distributed.process_slice(mesh, BATCH)
        report["local_rows"] = [mine.start, mine.stop]
        for case in sys.argv[3].split(","):
            report["models"][case] = {"all": compare(train(case, None), train(case, "all"))}
    else:
        raise SystemExit(f"_distributed_worker: unknown mode {mode!r}; use parity, resume or processes")
    if distributed.is_main_process():
        with open(out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
