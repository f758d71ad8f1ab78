"""`two-layer-net-numerical` (chapter 4): the book's TwoLayerNet trained by numerical gradients, then by
backprop, and what the difference costs.

The net is chapter 4's: Affine - Sigmoid - Affine - Softmax, 784-50-10, W ~ 0.01 * N(0, 1), SGD
lr 0.1, in float64 as the book's NumPy code. Training by `two_layer_net.numerical_gradient` (central
differences, two evaluations of the loss per parameter: 79,520 per step) is so slow that it runs
here for 10 iterations on mini-batches of 10 drawn from the first 1,000 training images; the same
net then takes the same 10 steps on the same batches by backprop (`two_layer_net.gradient`). The
figure shows the two loss trajectories (they coincide), the measured time per iteration of each and
their ratio, and the book's full run (10,200 iterations of 100 images, figures 4-11 and 4-12) by
backprop, with what as many numerical-gradient steps would take at the measured speed.
--quick: hidden layer of 4, 3 iterations; the full run is one epoch on 1,000 images.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from fnnet import optimizers
from fnnet.experiments import _common
from fnnet.models import two_layer_net

LR, WEIGHT_INIT_STD, ACTIVATION = 0.1, 0.01, "sigmoid"


def _step(gradient):
    """A jitted SGD step: (params, x, t) -> (new params, loss on the batch after the update)."""

    sgd = optimizers.sgd(lr=LR)

    def step(params, x, t):
        grads = gradient(params, x, t, activation=ACTIVATION)
        params, _ = sgd.update(params, grads, sgd.init(params))  # a constant rate: no state to carry
        return params, two_layer_net.loss(params, x, t, activation=ACTIVATION)

    return jax.jit(step)


def _train(params, step, batches, label, progress):
    """Losses after each step and the seconds each step took (the first includes compilation)."""
    losses, seconds = [], []
    with _common.bar(len(batches), label, progress) as pbar:
        for x, t in batches:
            t0 = time.perf_counter()
            params, loss = jax.block_until_ready(step(params, x, t))
            seconds.append(time.perf_counter() - t0)
            losses.append(float(loss))
            pbar.update()
    return params, losses, seconds


def _per_step(seconds):
    """Seconds per step without the first (compiling) one when there are others."""
    return float(np.median(seconds[1:] if len(seconds) > 1 else seconds))


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def figure(results):
    plt = _common.pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    ax = axes[0]
    it = np.arange(1, len(results["numerical_loss"]) + 1)
    ax.plot(it, results["backprop_loss"], "-", color="C1", lw=2, label="backprop (gradient)")
    ax.plot(it, results["numerical_loss"], "o", color="C0", mfc="none", ms=8, label="numerical_gradient")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss on the batch")
    ax.set_title(f"same steps, same batches: largest difference {results['max_loss_difference']:.1e}",
                 fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))

    ax = axes[1]
    times = [results["numerical_seconds_per_step"], results["backprop_seconds_per_step"]]
    ax.bar(["numerical_gradient", "backprop"], times, color=["C0", "C1"])
    ax.set_yscale("log")
    ax.set_ylabel("seconds per iteration")
    for i, s in enumerate(times):
        ax.text(i, s, f"{s:.3g} s", ha="center", va="bottom")
    ax.set_title(f"backprop is {results['speed_ratio']:,.0f} times faster "
                 f"(batch {results['batch_size']}, 784-{results['hidden_size']}-10)", fontsize=10)

    ax = axes[2]
    full = results["full_run"]
    e = np.arange(1, len(full["train_acc"]) + 1)
    ax.plot(e, full["train_acc"], "o-", label="train")
    ax.plot(e, full["test_acc"], "s--", label="test")
    ax.set_ylim(0, 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title(f"by backprop: {full['iterations']:,} iterations of {full['batch_size']} in "
                 f"{full['seconds']:.0f} s\n({full['iterations']:,} numerical_gradient steps of "
                 f"{results['batch_size']}: {_duration(full['numerical_estimate_seconds'])})", fontsize=10)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("Chapter 4's TwoLayerNet (sigmoid, float64): numerical gradient vs backprop")
    fig.tight_layout()
    return fig


@_common.experiment("two-layer-net-numerical")
def run(out_dir, *, seed, quick, progress):
    """Loss trajectories of both trainings, the time per step of each and their ratio, and the full
    run by backprop; two_layer_net_numerical.png."""
    hidden, iterations, batch, subset = (4, 3, 10, 1000) if quick else (50, 10, 10, 1000)
    (x_train, t_train), (x_test, t_test) = _common.mnist(None, 1000 if quick else None, progress)
    rng = np.random.default_rng(seed)
    picks = [rng.choice(subset, batch, replace=False) for _ in range(iterations)]

    with jax.enable_x64(True):
        params0 = two_layer_net.init(jax.random.PRNGKey(seed), x_train.shape[1], hidden, 10,
                                     weight_init_std=WEIGHT_INIT_STD, dtype=jnp.float64)
        batches = [(jnp.asarray(x_train[i], jnp.float64), jnp.asarray(t_train[i])) for i in picks]
        p_num, num_loss, num_s = _train(params0, _step(two_layer_net.numerical_gradient), batches,
                                        "numerical_gradient steps", progress)
        bp_step = _step(two_layer_net.gradient)
        p_bp, bp_loss, _ = _train(params0, bp_step, batches, "backprop steps", progress)
        repeats = []
        for _ in range(100):
            t0 = time.perf_counter()
            jax.block_until_ready(bp_step(params0, *batches[0]))
            repeats.append(time.perf_counter() - t0)
        param_diff = max(float(jnp.max(jnp.abs(p_num[k] - p_bp[k]))) for k in two_layer_net.KEYS)

    num_per_step, bp_per_step = _per_step(num_s), float(np.median(repeats))
    _common.say(f"numerical_gradient: {num_per_step:.3g} s per step (first step with compilation "
                f"{num_s[0]:.3g} s); backprop: {bp_per_step:.3g} s per step", progress)

    full_n, full_epochs, full_batch = (1000, 1, 100) if quick else (None, 17, 100)
    model = two_layer_net.model(x_train.shape[1:], 10, hidden_size=hidden, weight_init_std=WEIGHT_INIT_STD,
                                activation=ACTIVATION)
    t0 = time.perf_counter()
    hist = _common.fit_runs({"full": (model, optimizers.sgd(lr=LR))}, (x_train[:full_n], t_train[:full_n]),
                            (x_test, t_test), epochs=full_epochs, batch_size=full_batch, seed=seed,
                            progress=progress, desc="backprop, the book's run")["full"]
    full_seconds = time.perf_counter() - t0
    full_iterations = len(hist["loss"])
    results = {
        "hidden_size": hidden, "batch_size": batch, "subset": subset, "lr": LR, "iterations": iterations,
        "batch_indices": picks, "numerical_loss": num_loss, "backprop_loss": bp_loss,
        "max_loss_difference": float(np.max(np.abs(np.subtract(num_loss, bp_loss)))),
        "max_param_difference": param_diff,
        "numerical_step_seconds": num_s, "numerical_seconds_per_step": num_per_step,
        "backprop_seconds_per_step": bp_per_step, "speed_ratio": num_per_step / bp_per_step,
        "full_run": {"epochs": full_epochs, "batch_size": full_batch, "iterations": full_iterations,
                     "seconds": full_seconds, "loss": hist["loss"], "train_acc": hist["train_acc"],
                     "test_acc": hist["test_acc"],
                     "numerical_estimate_seconds": full_iterations * num_per_step},
    }
    _common.say(f"largest loss difference {results['max_loss_difference']:.2e}, speed ratio "
                f"{results['speed_ratio']:,.0f}; full run test acc {hist['test_acc'][-1]:.4f}", progress)
    results["figures"] = [_common.save(figure(results), out_dir, "two_layer_net_numerical.png")]
    return results
