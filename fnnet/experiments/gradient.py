"""`gradient` (chapter 4): numerical differentiation, in float64 as the book.

Four panels: f(x) = 0.01x^2 + 0.1x with its tangent lines at x = 5 and 10, slopes from
`numerical_diff` (figure 4-7); the surface of f(x0, x1) = x0^2 + x1^2 (4-8); its negative gradient
by `numerical_gradient` as arrows (4-9); the points visited by `gradient_descent` from (-3, 4),
lr 0.1, 20 steps (4-10).
"""

from __future__ import annotations

import numpy as np

from fnnet.experiments import _common
from fnnet.gradient import gradient_descent, numerical_diff, numerical_gradient

TANGENTS_AT = (5.0, 10.0)
POINTS = ((3.0, 4.0), (0.0, 2.0), (3.0, 0.0))
START, LR, STEPS = (-3.0, 4.0), 0.1, 20


def function_1(x):
    return 0.01 * x**2 + 0.1 * x


def function_2(x):
    """x0^2 + x1^2 for x (2,)."""
    return x[0] ** 2 + x[1] ** 2


def gradient_field(step=0.25):
    """Grid points (M, 2) over [-2, 2.5)^2 and the numerical gradient of x0^2 + x1^2 at each (M, 2)."""
    x0, x1 = np.meshgrid(np.arange(-2, 2.5, step), np.arange(-2, 2.5, step))
    points = np.stack([x0.ravel(), x1.ravel()], axis=1)
    # A sum over the points: each point's entries of the gradient are that point's own gradient.
    grad = numerical_gradient(lambda p: (p[:, 0] ** 2 + p[:, 1] ** 2).sum(), points)
    return points, np.asarray(grad)


def figure(results):
    plt = _common.pyplot()
    fig = plt.figure(figsize=(10, 8.2))

    ax = fig.add_subplot(2, 2, 1)
    x = np.arange(0.0, 20.0, 0.1)
    ax.plot(x, function_1(x), label="f(x) = 0.01x² + 0.1x")
    for (a, slope), style in zip(results["derivatives"], ("--", ":"), strict=True):
        ax.plot(x, slope * (x - a) + function_1(a), style, label=f"tangent at x = {a:g} (slope {slope:.4f})")
        ax.plot(a, function_1(a), "ko", markersize=4)
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.set_title("numerical derivative (figure 4-7)")
    ax.legend(fontsize=8)

    ax = fig.add_subplot(2, 2, 2, projection="3d")
    g = np.linspace(-3, 3, 25)
    x0, x1 = np.meshgrid(g, g)
    ax.plot_surface(x0, x1, x0**2 + x1**2, cmap="viridis", linewidth=0, antialiased=False)
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    ax.set_zlabel("f(x)")
    ax.set_title("f(x0, x1) = x0² + x1² (figure 4-8)")

    ax = fig.add_subplot(2, 2, 3)
    pts, grad = np.asarray(results["field_points"]), np.asarray(results["field_gradients"])
    ax.quiver(pts[:, 0], pts[:, 1], -grad[:, 0], -grad[:, 1], angles="xy", color="#666666")
    ax.set_xlim(-2, 2)
    ax.set_ylim(-2, 2)
    ax.set_aspect("equal")
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    ax.set_title("negative gradient, by numerical_gradient (figure 4-9)")
    ax.grid(alpha=0.3)

    ax = fig.add_subplot(2, 2, 4)
    path = np.asarray(results["descent_path"])
    ax.plot([-5, 5], [0, 0], "--b", lw=0.8)
    ax.plot([0, 0], [-5, 5], "--b", lw=0.8)
    ax.plot(path[:, 0], path[:, 1], "o", markersize=4)
    ax.set_xlim(-3.5, 3.5)
    ax.set_ylim(-4.5, 4.5)
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    end = results["descent_end"]
    ax.set_title(f"gradient descent from {START}, lr {LR}, {STEPS} steps (figure 4-10)\n"
                 f"ends at ({end[0]:.4f}, {end[1]:.4f})", fontsize=10)
    fig.tight_layout()
    return fig


@_common.experiment("gradient")
def run(out_dir, *, seed, quick, progress):
    """Slopes, gradients, the descent path and gradient.png (seed and quick change nothing)."""
    with _common.bar(4, "gradient", progress) as pbar:
        derivatives = [(a, float(numerical_diff(function_1, a))) for a in TANGENTS_AT]
        pbar.update()
        gradients = {f"({a:g}, {b:g})": np.asarray(numerical_gradient(function_2, np.array([a, b])))
                     for a, b in POINTS}
        pbar.update()
        points, field = gradient_field()
        pbar.update()
        end, path = gradient_descent(function_2, np.array(START), lr=LR, step_num=STEPS, return_history=True)
        pbar.update()
    results = {
        "derivatives": derivatives,
        "gradients": gradients,
        "field_points": points,
        "field_gradients": field,
        "descent_path": np.vstack([np.asarray(path), np.asarray(end)[None]]),
        "descent_end": np.asarray(end),
    }
    results["figures"] = [_common.save(figure(results), out_dir, "gradient.png")]
    _common.say("slopes " + ", ".join(f"{s:.6f} at x = {a:g}" for a, s in derivatives) + "; descent ends at "
                f"({end[0]:.6f}, {end[1]:.6f})", progress)
    return results
