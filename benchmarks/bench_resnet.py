"""The ResNet of scripts/ch08_resnet.py: training throughput against PyTorch and DeepConvNet, and what a
residual block costs beyond its layers.

    python benchmarks/bench_resnet.py [--steps 20] [--threads 1,2] [--rounds 3] [--out runs/bench_resnet]

Each round, in one process and one after another:
- training images/s (batch 100, float32, Adam, random 28x28 inputs and labels) of the ResNet in fnnet
  (its hand-written `loss_and_grad` in one jitted `lax.scan`, as `bench_conv.py` times the built-in
  models) and of the same network in PyTorch eager (the faster of `torch.set_num_threads(n)` for n
  in --threads), and of DeepConvNet on both sides;
- the residual block's overhead: jitted forward + backward (training mode) of the stage-1 block
  residual(conv, BN, ReLU, conv, BN) on (100, 16, 28, 28), against serial(the same layers) with the
  add written out (y = F(x) + x, dx = dF + dy), milliseconds per call, median of --calls calls,
  and whether XLA compiled the two into the same program (optimised HLO, names and metadata aside).
Prints each round and the ranges over the rounds, and the machine load (/proc/loadavg) before and
after; writes them as JSON to --out. Wall-clock timings on a shared machine: note the load.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from bench_conv import BATCH, bench_fnnet, bench_model, bench_torch, loadavg, time_torch


def torch_resnet(widths=(16, 32, 64), classes=10):
    """scripts/ch08_resnet.py's `resnet` in PyTorch: the same layers, biases, BN epsilon and momentum."""
    import torch
    from torch import nn

    def conv_bn(cin, c, size=3):
        return [nn.Conv2d(cin, c, size, padding=size // 2), nn.BatchNorm2d(c, eps=1e-6, momentum=0.1)]

    class Basic(nn.Module):
        def __init__(self, cin, c):
            super().__init__()
            self.f = nn.Sequential(*conv_bn(cin, c), nn.ReLU(), *conv_bn(c, c))
            self.shortcut = nn.Identity() if cin == c else nn.Sequential(*conv_bn(cin, c, 1))

        def forward(self, x):
            return torch.relu(self.f(x) + self.shortcut(x))

    c1, c2, c3 = widths
    return nn.Sequential(*conv_bn(1, c1), nn.ReLU(), Basic(c1, c1), nn.MaxPool2d(2), Basic(c1, c2),
                         nn.MaxPool2d(2), Basic(c2, c3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(c3, classes))


def _program(f, *args):
    """The optimised HLO instructions of jit(f)(*args), sorted, without names and source metadata."""
    import jax

    text = jax.jit(f).lower(*args).compile().as_text()
    text = re.sub(r"%[\w.\-]+", "%", re.sub(r", metadata=\{[^}]*\}", "", text))
    return sorted(line.strip() for line in text.splitlines() if " = " in line)


def residual_overhead(calls, c=16, hw=28):
    """(ms per call of residual(...), of serial(...) + the add written out, the largest difference of
    their outputs, whether they compile to the same program); medians over `calls`, alternating the
    two so that the machine's load falls on both alike."""
    import jax
    import jax.numpy as jnp

    from fnnet.layers import BatchNormalization, Convolution, Relu, residual, serial

    layers = (Convolution(c, 3, pad=1), BatchNormalization(), Relu(), Convolution(c, 3, pad=1),
              BatchNormalization())
    block, chain = residual(*layers), serial(*layers)
    _, params, state = block.init(jax.random.PRNGKey(0), (c, hw, hw))  # the same names and values
    x = jax.random.normal(jax.random.PRNGKey(1), (BATCH, c, hw, hw))
    dy = jax.random.normal(jax.random.PRNGKey(2), (BATCH, c, hw, hw))

    def with_residual(params, state, x, dy):
        y, cache, state = block.forward(params, x, state, train=True)
        dx, grads = block.backward(cache, dy)
        return y, dx, grads, state

    def with_serial(params, state, x, dy):
        y, cache, state = chain.forward(params, x, state, train=True)
        dx, grads = chain.backward(cache, dy)
        return y + x, dx + dy, grads, state

    same = _program(with_residual, params, state, x, dy) == _program(with_serial, params, state, x, dy)
    with_residual, with_serial = jax.jit(with_residual), jax.jit(with_serial)
    ref, got = with_serial(params, state, x, dy), with_residual(params, state, x, dy)
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(ref),
                                                               jax.tree_util.tree_leaves(got), strict=True))
    times = {"residual": [], "serial": []}
    for _ in range(calls):
        for name, f in (("residual", with_residual), ("serial", with_serial)):
            t0 = time.perf_counter()
            jax.block_until_ready(f(params, state, x, dy))
            times[name].append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times["residual"]), statistics.median(times["serial"]), diff, same


def _range(values, fmt="{:,.0f}"):
    return f"{fmt.format(min(values))}..{fmt.format(max(values))}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per measurement")
    ap.add_argument("--threads", default="1,2", help="PyTorch thread counts to try (the faster counts)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=20, help="timed calls of each block per round")
    ap.add_argument("--out", default="runs/bench_resnet")
    args = ap.parse_args(argv)

    import importlib.util

    spec = importlib.util.spec_from_file_location("ch08_resnet", os.path.join(HERE, "..", "scripts",
                                                                               "ch08_resnet.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    import torch

    threads = [int(n) for n in args.threads.split(",")]
    results = {"load_before": loadavg(), "batch": BATCH, "steps": args.steps, "threads": threads,
               "torch": torch.__version__, "rounds": []}
    model = script.resnet.model((1, 28, 28))
    for r in range(1, args.rounds + 1):
        row = {"resnet_fnnet": bench_model(model, args.steps),
               "deep_fnnet": bench_fnnet("deep_convnet", args.steps)}
        for n in threads:
            torch.manual_seed(0)
            row[f"resnet_torch_{n}"] = time_torch(torch_resnet(), args.steps, n)
            row[f"deep_torch_{n}"] = bench_torch("deep_convnet", args.steps, n)
        row["resnet_torch"] = max(row[f"resnet_torch_{n}"] for n in threads)
        row["deep_torch"] = max(row[f"deep_torch_{n}"] for n in threads)
        row["residual_ms"], row["serial_plus_add_ms"], row["max_abs_diff"], row["same_program"] = \
            residual_overhead(args.calls)
        row["load"] = loadavg()
        results["rounds"].append(row)
        print(f"round {r}: ResNet fnnet {row['resnet_fnnet']:7,.0f} img/s, "
              f"PyTorch {row['resnet_torch']:7,.0f} ({row['resnet_fnnet'] / row['resnet_torch']:.2f}x) | "
              f"DeepConvNet fnnet {row['deep_fnnet']:7,.0f}, "
              f"PyTorch {row['deep_torch']:7,.0f} ({row['deep_fnnet'] / row['deep_torch']:.2f}x) | block "
              f"residual {row['residual_ms']:.2f} ms, serial + add {row['serial_plus_add_ms']:.2f} ms "
              f"({row['residual_ms'] / row['serial_plus_add_ms']:.3f}x, outputs within "
              f"{row['max_abs_diff']:.1e}, same program: {row['same_program']}) | load {row['load']}",
              flush=True)
    rows = results["rounds"]
    ratio = [r["resnet_fnnet"] / r["resnet_torch"] for r in rows]
    vs_deep = [r["resnet_fnnet"] / r["deep_fnnet"] for r in rows]
    overhead = [r["residual_ms"] / r["serial_plus_add_ms"] for r in rows]
    results["load_after"] = loadavg()
    print(f"ResNet fnnet {_range([r['resnet_fnnet'] for r in rows])} img/s, PyTorch "
          f"{_range([r['resnet_torch'] for r in rows])}: fnnet/PyTorch {_range(ratio, '{:.2f}')}x; "
          f"ResNet/DeepConvNet in fnnet {_range(vs_deep, '{:.2f}')}x; residual/(serial + add) "
          f"{_range(overhead, '{:.3f}')}x")
    print(f"load average (1, 5, 15 min): before {results['load_before']}, after {results['load_after']}")
    os.makedirs(args.out, exist_ok=True)
    from fnnet.io import save_json

    save_json(results, os.path.join(args.out, "bench_resnet.json"))


if __name__ == "__main__":
    main()
