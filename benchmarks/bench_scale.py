"""Training throughput against the device count with fnnet.distributed's sharded epoch chunk.

    python benchmarks/bench_scale.py [--devices 1,2,4] [--steps 200,10] [--repeats 5] [--platform cpu|gpu]

Every device count runs in its own subprocess (JAX fixes its devices when it starts); on the CPU
with XLA_FLAGS=--xla_force_host_platform_device_count=N. Each trains TwoLayerNet 784-50-10 and
SimpleConvNet (1, 28, 28) with Adam (lr 0.001) on random MNIST-shaped data (6,000 samples on the
devices, batch 100) through `fnnet.distributed.shard_chunk`: a jitted lax.scan of `--steps` steps
(per model: 200 and 10, about the same time) gathering x[idx] inside each step, idx sharded along the
batch, everything else replicated. One chunk warms up (compilation), then `--repeats` chunks are
timed; reported is the median images/s. The 1-device subprocess also times the plain single-device
jit (mesh None, fnnet's default path).

Forced CPU devices share the same cores: N of them do not add compute, so this table measures the
overhead of sharding (partitioned programs, all-reduces between devices), not a speed-up. A real
speed-up needs devices with their own compute (several GPUs, a TPU slice).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

BATCH = 100
N_TRAIN = 6000
MODELS = ("two_layer_net", "simple_convnet")


def make_chunk(model, optimizer):
    """The epoch chunk of fnnet.training (gather inside the scan), not yet jitted."""
    import jax

    def step(carry, inp, x, t):
        params, state, opt_state = carry
        idx, key = inp
        loss, grads, state = model.loss_and_grad(params, state, x[idx], t[idx], key)
        params, opt_state = optimizer.update(params, grads, opt_state)
        return (params, state, opt_state), loss

    def chunk(params, state, opt_state, x, t, idx, keys):
        return jax.lax.scan(lambda c, i: step(c, i, x, t), (params, state, opt_state), (idx, keys))

    return chunk


def time_model(name, devices, steps, repeats):
    """Median images/s of `repeats` timed chunks of `steps` steps (after one warm-up chunk)."""
    import jax
    import numpy as np

    from fnnet import distributed, optimizers
    from fnnet.models import get_model

    shape = (784,) if name == "two_layer_net" else (1, 28, 28)
    rng = np.random.default_rng(0)
    x = rng.random((N_TRAIN,) + shape, dtype=np.float32)
    t = rng.integers(0, 10, N_TRAIN).astype(np.int32)
    model = get_model(name, shape, 10)
    optimizer = optimizers.adam(lr=0.001)
    mesh = distributed.make_mesh(devices)
    distributed.check_batch(BATCH, mesh, fn="bench_scale")
    run = distributed.shard_chunk(make_chunk(model, optimizer), mesh)
    params, state = model.init(jax.random.PRNGKey(0))
    carry = distributed.put_replicated((params, state, optimizer.init(params)), mesh)
    x, t = distributed.put_replicated((x, t), mesh)
    keys = distributed.put_replicated(np.asarray(jax.random.split(jax.random.PRNGKey(1), steps)), mesh)
    rates = []
    for r in range(repeats + 1):
        idx = rng.integers(0, N_TRAIN, (steps, BATCH)).astype(np.int32)
        idx = distributed.put_sharded(idx, mesh, axis=1)
        jax.block_until_ready(idx)
        t0 = time.perf_counter()
        carry, losses = run(*carry, x, t, idx, keys)
        jax.block_until_ready((carry, losses))
        if r:
            rates.append(steps * BATCH / (time.perf_counter() - t0))
    return statistics.median(rates)


def child(devices, steps, repeats, with_baseline):
    import jax

    row = {"devices": devices, "platform": jax.devices()[0].platform, "kind": jax.devices()[0].device_kind}
    for name, n in zip(MODELS, steps, strict=True):
        if with_baseline:
            row[name + "/nomesh"] = time_model(name, None, n, repeats)
        row[name] = time_model(name, devices, n, repeats)
    print("RESULT " + json.dumps(row), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="1,2,4", help="comma-separated device counts (default 1,2,4)")
    ap.add_argument("--steps", default="200,10", help="steps per chunk, per model (default 200,10)")
    ap.add_argument("--repeats", type=int, default=5, help="timed chunks after the warm-up (default 5)")
    ap.add_argument("--platform", choices=("cpu", "gpu"), default="cpu",
                    help="cpu: forced host devices; gpu: the machine's GPUs, no forcing (default cpu)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    steps = [int(n) for n in args.steps.split(",")]
    if len(steps) != len(MODELS) or min(steps) < 1:
        ap.error(f"--steps must be {len(MODELS)} positive integers (one per model), got {args.steps!r}")
    if args.child is not None:
        child(args.child, steps, args.repeats, args.child == 1)
        return
    counts = [int(d) for d in args.devices.split(",")]
    per = ", ".join(f"{m} {n}" for m, n in zip(MODELS, steps, strict=True))
    print(f"bench_scale: batch {BATCH}, steps per chunk: {per}; median of {args.repeats} chunks; "
          f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    rows = []
    for d in counts:
        env = dict(os.environ)
        if args.platform == "cpu":
            env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={d}")
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(d), "--steps", args.steps,
               "--repeats", str(args.repeats)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"bench_scale: the {d}-device run failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(lines[-1][len("RESULT "):]))
    print(f"\nplatform {rows[0]['platform']} ({rows[0]['kind']}); images/s, higher is better")
    head = f"{'devices':>8s} " + " ".join(f"{m:>16s} {'vs 1':>6s}" for m in MODELS)
    print(head)
    base = rows[0]
    if "two_layer_net/nomesh" in base:
        cells = " ".join(f"{base[m + '/nomesh']:16,.0f} {'':>6s}" for m in MODELS)
        print(f"{'no mesh':>8s} {cells}")
    for row in rows:
        cells = " ".join(f"{row[m]:16,.0f} {row[m] / base[m]:6.2f}" for m in MODELS)
        print(f"{row['devices']:>8d} {cells}")
    if args.platform == "cpu":
        print("\nForced CPU devices share the same cores: this is the overhead of sharding, not a speed-up.")
    print(f"load {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
