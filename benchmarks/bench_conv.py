"""Training throughput of SimpleConvNet and DeepConvNet: fnnet (jit) vs PyTorch CPU eager vs NumPy.

    python benchmarks/bench_conv.py [--steps 30] [--threads 2] [--out runs/bench_conv]

Images per second of Adam training steps (batch 100, float32, random 28x28 inputs and labels,
the same architecture in all three):
- fnnet: the model's hand-written `loss_and_grad` + `fnnet.optimizers.adam`, `--steps` steps in
  one jitted `lax.scan` with donated parameters (compiled and run once before timing);
- PyTorch eager (torch.set_num_threads(--threads)), autograd + torch.optim.Adam;
- the book's NumPy im2col layers (written out below), float32.
Prints the figures and the fnnet/PyTorch and fnnet/NumPy ratios, and the machine load (from
/proc/loadavg) before and after; writes them as JSON to --out. Wall-clock timings on a shared
machine: note the load. With --torch-cuda (on a GPU machine) PyTorch eager also runs on CUDA.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np

BATCH = 100
DEEP_FILTERS, DEEP_PADS = (16, 16, 32, 32, 64, 64), (1, 1, 1, 2, 1, 1)


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


# ----------------------------------------------------------------------------- fnnet


def bench_fnnet(name, steps):
    from fnnet.models import get_model

    return bench_model(get_model(name, (1, 28, 28), 10), steps)


def bench_model(model, steps):
    """Images/s of `steps` Adam training steps of a `fnnet.models.Model` on random 28x28 batches."""
    import jax
    import jax.numpy as jnp

    from fnnet import optimizers

    opt = optimizers.adam(0.001)
    params, state = model.init(jax.random.PRNGKey(0))
    opt_state = opt.init(params)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((steps, BATCH, 1, 28, 28), dtype=np.float32))
    t = jnp.asarray(rng.integers(0, 10, (steps, BATCH)))
    keys = jax.random.split(jax.random.PRNGKey(1), steps)

    def run(params, state, opt_state, x, t, keys):
        def step(carry, inp):
            p, s, o = carry
            xb, tb, k = inp
            loss, grads, s = model.loss_and_grad(p, s, xb, tb, k)
            p, o = opt.update(p, grads, o)
            return (p, s, o), loss

        return jax.lax.scan(step, (params, state, opt_state), (x, t, keys))

    run = jax.jit(run, donate_argnums=(0, 1, 2))
    (params, state, opt_state), losses = run(params, state, opt_state, x, t, keys)  # compile + warm up
    losses.block_until_ready()
    t0 = time.perf_counter()
    (params, state, opt_state), losses = run(params, state, opt_state, x, t, keys)
    losses.block_until_ready()
    return steps * BATCH / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------- PyTorch


def bench_torch(name, steps, threads, device="cpu"):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if name == "simple_convnet":
        net = nn.Sequential(nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
                            nn.Linear(4320, 100), nn.ReLU(), nn.Linear(100, 10))
    else:
        layers, c = [], 1
        for i, (f, p) in enumerate(zip(DEEP_FILTERS, DEEP_PADS, strict=True), start=1):
            layers += [nn.Conv2d(c, f, 3, padding=p), nn.ReLU()]
            c = f
            if i % 2 == 0:
                layers.append(nn.MaxPool2d(2, 2))
        layers += [nn.Flatten(), nn.Linear(1024, 50), nn.ReLU(), nn.Dropout(0.5), nn.Linear(50, 10),
                   nn.Dropout(0.5)]
        net = nn.Sequential(*layers)
    return time_torch(net, steps, threads, device)


def time_torch(net, steps, threads, device="cpu"):
    """Images/s of `steps` eager Adam training steps of a torch module on random 28x28 batches."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=0.001)
    lossf = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    xs = torch.from_numpy(rng.random((steps, BATCH, 1, 28, 28), dtype=np.float32)).to(device)
    ts = torch.from_numpy(rng.integers(0, 10, (steps, BATCH))).to(device)

    def step(i):
        opt.zero_grad()
        loss = lossf(net(xs[i]), ts[i])
        loss.backward()
        opt.step()

    for i in range(min(3, steps)):
        step(i)
    sync()
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    sync()
    return steps * BATCH / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------- NumPy (the book's layers)


def im2col(x, fh, fw, s, p):
    n, c, h, w = x.shape
    oh, ow = (h + 2 * p - fh) // s + 1, (w + 2 * p - fw) // s + 1
    img = np.pad(x, [(0, 0), (0, 0), (p, p), (p, p)])
    col = np.zeros((n, c, fh, fw, oh, ow), x.dtype)
    for y in range(fh):
        for xx in range(fw):
            col[:, :, y, xx] = img[:, :, y : y + s * oh : s, xx : xx + s * ow : s]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, -1)


def col2im(col, shape, fh, fw, s, p):
    n, c, h, w = shape
    oh, ow = (h + 2 * p - fh) // s + 1, (w + 2 * p - fw) // s + 1
    col = col.reshape(n, oh, ow, c, fh, fw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * p + s - 1, w + 2 * p + s - 1), col.dtype)
    for y in range(fh):
        for xx in range(fw):
            img[:, :, y : y + s * oh : s, xx : xx + s * ow : s] += col[:, :, y, xx]
    return img[:, :, p : h + p, p : w + p]


class NpConv:
    def __init__(self, W, b, pad):
        self.W, self.b, self.pad = W, b, pad

    def forward(self, x):
        fn, _, fh, fw = self.W.shape
        n, _, h, w = x.shape
        oh, ow = h + 2 * self.pad - fh + 1, w + 2 * self.pad - fw + 1
        self.x, self.col, self.col_W = x, im2col(x, fh, fw, 1, self.pad), self.W.reshape(fn, -1).T
        return (self.col @ self.col_W + self.b).reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)

    def backward(self, d):
        fn, c, fh, fw = self.W.shape
        d = d.transpose(0, 2, 3, 1).reshape(-1, fn)
        self.db, self.dW = d.sum(0), (self.col.T @ d).T.reshape(self.W.shape)
        return col2im(d @ self.col_W.T, self.x.shape, fh, fw, 1, self.pad)


class NpPool:
    def forward(self, x):
        n, c, h, w = x.shape
        self.x = x
        col = im2col(x, 2, 2, 2, 0).reshape(-1, 4)
        self.arg = col.argmax(1)
        return col.max(1).reshape(n, h // 2, w // 2, c).transpose(0, 3, 1, 2)

    def backward(self, d):
        d = d.transpose(0, 2, 3, 1)
        dmax = np.zeros((d.size, 4), d.dtype)
        dmax[np.arange(self.arg.size), self.arg] = d.ravel()
        dcol = dmax.reshape(d.shape[0] * d.shape[1] * d.shape[2], -1)  # rows (N, OH, OW), cols (C, 2, 2)
        return col2im(dcol, self.x.shape, 2, 2, 2, 0)


class NpRelu:
    def forward(self, x):
        self.mask = x <= 0
        return np.where(self.mask, 0, x)

    def backward(self, d):
        return np.where(self.mask, 0, d)


class NpAffine:
    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.shape, self.x = x.shape, x.reshape(x.shape[0], -1)
        return self.x @ self.W + self.b

    def backward(self, d):
        self.dW, self.db = self.x.T @ d, d.sum(0)
        return (d @ self.W.T).reshape(self.shape)


class NpDropout:
    def __init__(self, rng):
        self.rng = rng

    def forward(self, x):
        self.mask = self.rng.random(x.shape, dtype=np.float32) > 0.5
        return x * self.mask

    def backward(self, d):
        return d * self.mask


def bench_numpy(name, steps):
    rng = np.random.default_rng(0)

    def normal(shape, std):
        return (std * rng.standard_normal(shape)).astype(np.float32)

    if name == "simple_convnet":
        layers = [NpConv(normal((30, 1, 5, 5), 0.01), np.zeros(30, np.float32), 0), NpRelu(), NpPool(),
                  NpAffine(normal((4320, 100), 0.01), np.zeros(100, np.float32)), NpRelu(),
                  NpAffine(normal((100, 10), 0.01), np.zeros(10, np.float32))]
    else:
        layers, c = [], 1
        for i, (f, p) in enumerate(zip(DEEP_FILTERS, DEEP_PADS, strict=True), start=1):
            conv = NpConv(normal((f, c, 3, 3), (2 / (c * 9)) ** 0.5), np.zeros(f, np.float32), p)
            layers += [conv, NpRelu()]
            c = f
            if i % 2 == 0:
                layers.append(NpPool())
        layers += [NpAffine(normal((1024, 50), (2 / 1024) ** 0.5), np.zeros(50, np.float32)), NpRelu(),
                   NpDropout(rng), NpAffine(normal((50, 10), (2 / 50) ** 0.5), np.zeros(10, np.float32)),
                   NpDropout(rng)]
    trainable = [la for la in layers if hasattr(la, "W")]
    m = [[np.zeros_like(la.W), np.zeros_like(la.b)] for la in trainable]
    v = [[np.zeros_like(la.W), np.zeros_like(la.b)] for la in trainable]
    xs = rng.random((steps, BATCH, 1, 28, 28), dtype=np.float32)
    ts = rng.integers(0, 10, (steps, BATCH))

    def step(i, it):
        h = xs[i]
        for la in layers:
            h = la.forward(h)
        e = np.exp(h - h.max(1, keepdims=True))
        d = e / e.sum(1, keepdims=True)
        d[np.arange(BATCH), ts[i]] -= 1
        d /= BATCH
        for la in reversed(layers):
            d = la.backward(d)
        lr_t = 0.001 * np.sqrt(1 - 0.999**it) / (1 - 0.9**it)
        for la, mm, vv in zip(trainable, m, v, strict=True):
            for j, (pname, gname) in enumerate((("W", "dW"), ("b", "db"))):
                g = getattr(la, gname)
                mm[j] += 0.1 * (g - mm[j])
                vv[j] += 0.001 * (g * g - vv[j])
                setattr(la, pname, getattr(la, pname) - lr_t * mm[j] / (np.sqrt(vv[j]) + 1e-7))

    step(0, 1)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i, i + 2)
    return steps * BATCH / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="timed training steps for fnnet and PyTorch")
    ap.add_argument("--numpy-steps", type=int, default=5, help="timed steps for the NumPy version")
    ap.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    ap.add_argument("--torch-cuda", action="store_true",
                    help="on a GPU machine, also time PyTorch eager on CUDA (extra figure and ratio)")
    ap.add_argument("--models", default="simple_convnet,deep_convnet")
    ap.add_argument("--out", default="runs/bench_conv")
    args = ap.parse_args(argv)
    results = {"load_before": loadavg(), "batch": BATCH, "steps": args.steps, "threads": args.threads}
    for name in args.models.split(","):
        r = {
            "fnnet": bench_fnnet(name, args.steps),
            "torch": bench_torch(name, args.steps, args.threads),
            "numpy": bench_numpy(name, args.numpy_steps),
        }
        r["fnnet/torch"] = r["fnnet"] / r["torch"]
        r["fnnet/numpy"] = r["fnnet"] / r["numpy"]
        cuda = ""
        if args.torch_cuda:
            r["torch_cuda"] = bench_torch(name, args.steps, args.threads, "cuda")
            r["fnnet/torch_cuda"] = r["fnnet"] / r["torch_cuda"]
            cuda = (f"   torch CUDA {r['torch_cuda']:8.0f} img/s   "
                    f"fnnet/torch CUDA {r['fnnet/torch_cuda']:5.2f}x")
        results[name] = r
        print(f"{name:15s} fnnet {r['fnnet']:8.0f} img/s   torch {r['torch']:8.0f} img/s   "
              f"numpy {r['numpy']:8.0f} img/s   fnnet/torch {r['fnnet/torch']:5.2f}x   "
              f"fnnet/numpy {r['fnnet/numpy']:5.1f}x" + cuda, flush=True)
    results["load_after"] = loadavg()
    print(f"load average (1, 5, 15 min): before {results['load_before']}, after {results['load_after']}")
    os.makedirs(args.out, exist_ok=True)
    from fnnet.io import save_json

    save_json(results, os.path.join(args.out, "bench_conv.json"))


if __name__ == "__main__":
    main()
