"""`optimizer-paths` (chapter 6, figure 6-8): the six optimizers on f(x, y) = x^2/20 + y^2.

Each starts at (-7, 2) and takes 30 steps with the book's learning rates (SGD 0.95, Momentum 0.1,
AdaGrad 1.5, Adam 0.3; Nesterov 0.1 and RMSprop 0.3 added), the gradient from jax.grad and the
steps from fnnet.optimizers inside one lax.scan. f is 20 times flatter along x than along y, so
SGD's steps, scaled by the gradient, overshoot in y on every step and crawl in x: a zigzag path
several times longer than the others'. The panels show each path over the contours of f, with
the value of f at its end and the path's length.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fnnet import optimizers
from fnnet.experiments import _common

LEARNING_RATES = {"sgd": 0.95, "momentum": 0.1, "nesterov": 0.1, "adagrad": 1.5, "rmsprop": 0.3, "adam": 0.3}
TITLES = {"sgd": "SGD", "momentum": "Momentum", "nesterov": "Nesterov", "adagrad": "AdaGrad",
          "rmsprop": "RMSprop", "adam": "Adam"}
START = (-7.0, 2.0)


def f(p):
    return p["x"] ** 2 / 20.0 + p["y"] ** 2


def path(opt, start=START, steps: int = 30) -> np.ndarray:
    """Points visited (steps + 1, 2), the start included."""
    params = {"x": jnp.asarray(start[0], jnp.float32), "y": jnp.asarray(start[1], jnp.float32)}

    def step(carry, _):
        params, state = carry
        params, state = opt.update(params, jax.grad(f)(params), state)
        return (params, state), jnp.stack([params["x"], params["y"]])

    _, pts = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), None, length=steps))(params)
    return np.vstack([np.asarray(start, np.float32)[None], np.asarray(pts)])


def figure(results):
    plt = _common.pyplot()
    xs, ys = np.meshgrid(np.arange(-10, 10, 0.05), np.arange(-5, 5, 0.05))
    zs = xs**2 / 20.0 + ys**2
    fig, axes = plt.subplots(2, 3, figsize=(12, 7))
    for ax, (name, r) in zip(axes.ravel(), results["optimizers"].items(), strict=True):
        pts = np.asarray(r["path"])
        ax.contour(xs, ys, zs, levels=np.geomspace(0.05, 6, 12), colors="0.7", linewidths=0.8)
        ax.plot(pts[:, 0], pts[:, 1], "o-", color="red", markersize=3, linewidth=1)
        ax.plot(0, 0, "+", color="black", markersize=10)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-5, 5)
        ax.set_title(f"{TITLES[name]} (lr {r['lr']:g}): end f = {r['final_f']:.2g}, "
                     f"length {r['path_length']:.1f}", fontsize=10)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    fig.suptitle(f"f(x, y) = x²/20 + y², {results['steps']} steps from {START} (figure 6-8)")
    fig.tight_layout()
    return fig


@_common.experiment("optimizer-paths")
def run(out_dir, *, seed, quick, progress):
    """Paths, final f, path lengths and optimizer_paths.png (deterministic: seed and quick change nothing)."""
    steps = 30
    runs = {}
    with _common.bar(len(LEARNING_RATES), "optimizers", progress) as pbar:
        for name, lr in LEARNING_RATES.items():
            pts = path(optimizers.get(name, lr=lr), START, steps).astype(np.float64)
            fx = pts[:, 0] ** 2 / 20 + pts[:, 1] ** 2
            runs[name] = {
                "lr": lr,
                "path": pts,
                "f": fx,
                "final_f": float(fx[-1]),
                "path_length": float(np.sum(np.linalg.norm(np.diff(pts, axis=0), axis=1))),
                "y_sign_changes": int(np.sum(np.sign(pts[1:, 1]) != np.sign(pts[:-1, 1]))),
            }
            pbar.update()
            _common.say(f"{TITLES[name]:>9} lr {lr:<5g} ends at ({pts[-1, 0]:+.4f}, {pts[-1, 1]:+.4f}), "
                        f"f = {fx[-1]:.3g}, path length {runs[name]['path_length']:.1f}", progress)
    results = {"start": START, "steps": steps, "optimizers": runs}
    results["figures"] = [_common.save(figure(results), out_dir, "optimizer_paths.png")]
    return results
