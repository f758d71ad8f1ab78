"""`weight-init-mnist` (chapter 6, figure 6-15): the initial weight scale decides whether a deep
ReLU net learns at all.

A 5-layer ReLU MultiLayerNet (4 hidden layers of 100) on MNIST with weights N(0, 1) * std for
std 0.01, Xavier sqrt(1/n) and He sqrt(2/n); SGD lr 0.01, batch 128, 2,000 iterations (the first
51,200 training images, 5 epochs). With std 0.01 the signal fades layer by layer and the loss
stays at ln 10 = 2.30; Xavier and He start learning at once, He fastest.
--quick: 2,560 images, 100 iterations, 1,000 test images.
"""

from __future__ import annotations

from fnnet import optimizers
from fnnet.experiments import _common
from fnnet.models import multi_layer_net

INITS = {"std 0.01": 0.01, "Xavier": "xavier", "He": "he"}
LR, BATCH = 0.01, 128


def figure(results):
    curves = {name: r["loss"] for name, r in results["inits"].items()}
    title = f"initial weights of a 5-layer ReLU net, MNIST, SGD lr {LR} (figure 6-15)"
    return _common.loss_curves(curves, title, 2.5)


@_common.experiment("weight-init-mnist")
def run(out_dir, *, seed, quick, progress):
    """Per initialisation: loss per iteration, mean loss of the last tenth, test accuracy;
    weight_init_mnist.png."""
    n_train, n_test, epochs = (2560, 1000, 5) if quick else (51_200, None, 5)
    train, test = _common.mnist(n_train, n_test, progress)
    runs = {name: (multi_layer_net.model(train[0].shape[1:], 10, hidden_size_list=(100,) * 4,
                                         weight_init_std=spec), optimizers.sgd(lr=LR))
            for name, spec in INITS.items()}
    histories = _common.fit_runs(runs, train, test, epochs=epochs, batch_size=BATCH, seed=seed,
                                 progress=progress, desc="initialisations")
    out = {}
    for name, h in histories.items():
        out[name] = _common.loss_summary(h)
        _common.say(f"{name:>9}: loss (last tenth) {out[name]['final_loss']:.4f}, "
                    f"test acc {h['test_acc'][-1]:.4f}", progress)
    results = {"n_train": len(train[0]), "n_test": len(test[0]), "batch_size": BATCH, "lr": LR,
               "iterations": len(out["He"]["loss"]), "inits": out}
    results["figures"] = [_common.save(figure(results), out_dir, "weight_init_mnist.png")]
    return results
