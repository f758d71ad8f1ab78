"""Training throughput of the fully connected nets: fnnet (jitted epoch scan) vs PyTorch CPU eager.

    python benchmarks/bench_mlp.py [--epochs 3] [--data mnist|random]

Both sides train the same architecture with the same optimizer, batch size (100), dtype (float32)
and data, in this one process:

- TwoLayerNet 784-50-10 (ReLU) and MultiLayerNet 784-100x5-10 (ReLU, no Batch Norm/dropout),
  each with SGD (lr 0.1) and with Adam (lr 0.001);
- fnnet: `fnnet.training.fit` with progress bars off; its images/s per epoch is the time of the
  epoch's jitted scan chunks (evaluation excluded); the first epoch (compilation) is warm-up;
- PyTorch: nn.Sequential of Linear/ReLU, CrossEntropyLoss, torch.optim.SGD/Adam, a Python loop
  over shuffled mini-batches (zero_grad, forward, backward, step), torch.set_num_threads(cores);
  one warm-up epoch, then the same number of timed epochs. PyTorch runs twice: with
  torch.set_num_threads(cores) and with one thread, since for layers this small its intra-op
  threads can cost more than they gain (badly so when the machine is loaded).

With --torch-cuda (on a GPU machine) PyTorch eager also runs on CUDA, as an extra column.

Reported: the median images/s over the timed epochs and the ratio fnnet / PyTorch, against the
faster of the two PyTorch thread settings. The machine
load (os.getloadavg) is printed before and after, since other work on the machine skews both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

BATCH = 100


def load_data(kind):
    if kind == "mnist":
        from fnnet.datasets import load_mnist

        (x, t), _ = load_mnist()
        return x.astype(np.float32), t.astype(np.int64), "MNIST train (60,000)"
    rng = np.random.default_rng(0)
    x = rng.random((60_000, 784), dtype=np.float32)
    t = rng.integers(0, 10, 60_000)
    return x, t, "random (60,000 x 784)"


def bench_fnnet(name, hidden, opt, lr, x, t, epochs):
    from fnnet import optimizers
    from fnnet.models import get_model
    from fnnet.training import fit

    if name == "two_layer_net":
        model = get_model(name, (784,), 10, hidden_size=hidden[0])
    else:
        model = get_model(name, (784,), 10, hidden_size_list=hidden)
    optimizer = optimizers.get(opt, lr=lr)
    test = (x[:1000], t[:1000].astype(np.int32))
    r = fit(model, optimizer, (x, t.astype(np.int32)), test, epochs=1 + epochs, batch_size=BATCH,
            progress=False, log=lambda line: None)
    return statistics.median(r.history["images_per_s"][1:])


def bench_torch(hidden, opt, lr, x, t, epochs, threads, max_steps=None, device="cpu"):
    import torch

    torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.manual_seed(0)
    sizes = [784, *hidden, 10]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).to(device)
    if opt == "sgd":
        optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    else:
        optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, tt = torch.from_numpy(x).to(device), torch.from_numpy(t).to(device)
    steps = x.shape[0] // BATCH if max_steps is None else min(max_steps, x.shape[0] // BATCH)
    gen = torch.Generator().manual_seed(0)
    rates = []
    for epoch in range(1 + epochs):
        perm = torch.randperm(x.shape[0], generator=gen).to(device)
        sync()
        t0 = time.perf_counter()
        for s in range(steps):
            idx = perm[s * BATCH:(s + 1) * BATCH]
            xb, tb = xt[idx], tt[idx]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(xb), tb)
            loss.backward()
            optimizer.step()
        sync()
        elapsed = time.perf_counter() - t0
        if epoch > 0:
            rates.append(steps * BATCH / elapsed)
    return statistics.median(rates)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per run, after one warm-up epoch")
    p.add_argument("--torch-steps", type=int, default=None,
                   help="PyTorch: time only the first N batches of each epoch (default: the whole epoch)")
    p.add_argument("--torch-cuda", action="store_true",
                   help="on a GPU machine, also time PyTorch eager on CUDA (an extra column and ratio)")
    p.add_argument("--data", choices=("mnist", "random"), default="mnist" if os.environ.get("FNNET_DATA_DIR")
                   else "random", help="MNIST (needs FNNET_DATA_DIR) or random data of the same shape")
    args = p.parse_args(argv)

    import jax
    import torch

    threads = os.cpu_count() or 1
    x, t, data_name = load_data(args.data)
    print(f"data: {data_name}; batch {BATCH}; float32; {args.epochs} timed epochs after 1 warm-up epoch"
          + (f" (PyTorch: first {args.torch_steps} batches of each)" if args.torch_steps else ""))
    print(f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
          f"({threads} threads), {threads} CPU cores")
    load0 = os.getloadavg()
    print(f"load average before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    configs = [
        ("two_layer_net", "TwoLayerNet 784-50-10", [50], "sgd", 0.1),
        ("two_layer_net", "TwoLayerNet 784-50-10", [50], "adam", 0.001),
        ("multi_layer_net", "MultiLayerNet 784-100x5-10", [100] * 5, "sgd", 0.1),
        ("multi_layer_net", "MultiLayerNet 784-100x5-10", [100] * 5, "adam", 0.001),
    ]
    rows = []
    for name, label, hidden, opt, lr in configs:
        f = bench_fnnet(name, hidden, opt, lr, x, t, args.epochs)
        tr = bench_torch(hidden, opt, lr, x, t, args.epochs, threads, args.torch_steps)
        tr1 = bench_torch(hidden, opt, lr, x, t, args.epochs, 1, args.torch_steps) if threads > 1 else tr
        tc = None
        if args.torch_cuda:
            tc = bench_torch(hidden, opt, lr, x, t, args.epochs, 1, args.torch_steps, "cuda")
        rows.append((label, f"{opt} lr {lr:g}", f, tr, tr1, f / max(tr, tr1), tc))
        print(f"  {label}, {opt}: fnnet {f:,.0f} images/s, PyTorch {tr:,.0f} ({threads} threads), "
              f"{tr1:,.0f} (1 thread)" + (f", {tc:,.0f} (CUDA)" if tc else "") + " images/s", flush=True)
    load1 = os.getloadavg()
    cuda_head = " PyTorch eager, CUDA | fnnet / PyTorch CUDA |" if args.torch_cuda else ""
    print()
    print(f"| model | optimizer | fnnet images/s | PyTorch eager, {threads} threads "
          f"| PyTorch eager, 1 thread | fnnet / best PyTorch CPU |{cuda_head}")
    print("|---|---|---:|---:|---:|---:|" + ("---:|---:|" if args.torch_cuda else ""))
    for label, opt, f, tr, tr1, ratio, tc in rows:
        cuda_cols = f" {tc:,.0f} | {f / tc:.1f}x |" if tc else ""
        print(f"| {label} | {opt} | {f:,.0f} | {tr:,.0f} | {tr1:,.0f} | {ratio:.1f}x |{cuda_cols}")
    print()
    print(f"load average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")


if __name__ == "__main__":
    main()
