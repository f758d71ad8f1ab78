"""`optimizer-mnist` (chapter 6, figure 6-9): the six optimizers training one network on MNIST.

A 5-layer ReLU MultiLayerNet (4 hidden layers of 100, He initialisation), batch 128, 2,000
iterations (the first 51,200 training images, 5 epochs), the book's learning rates (0.01; Adam
and RMSprop 0.001), the same initial weights for every optimizer. The figure shows the training
loss per iteration smoothed as the book does; SGD's curve stays highest.
--quick: 1,280 images, 50 iterations, 1,000 test images.
"""

from __future__ import annotations

from fnnet import optimizers
from fnnet.experiments import _common
from fnnet.models import multi_layer_net

LEARNING_RATES = {"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01, "rmsprop": 0.001,
                  "adam": 0.001}
BATCH = 128


def figure(results):
    curves = {f"{name} (lr {r['lr']:g})": r["loss"] for name, r in results["optimizers"].items()}
    title = f"5-layer ReLU net on MNIST, batch {BATCH}, {results['iterations']} iterations (figure 6-9)"
    return _common.loss_curves(curves, title, 1.0 if not results["quick"] else 2.5)


@_common.experiment("optimizer-mnist")
def run(out_dir, *, seed, quick, progress):
    """Per optimizer: loss per iteration, mean loss of the last tenth, test accuracy; optimizer_mnist.png."""
    n_train, n_test, epochs = (1280, 1000, 5) if quick else (51_200, None, 5)
    train, test = _common.mnist(n_train, n_test, progress)
    model = multi_layer_net.model(train[0].shape[1:], 10, hidden_size_list=(100,) * 4, weight_init_std="he")
    runs = {name: (model, optimizers.get(name, lr=lr)) for name, lr in LEARNING_RATES.items()}
    histories = _common.fit_runs(runs, train, test, epochs=epochs, batch_size=BATCH, seed=seed,
                                 progress=progress, desc="optimizers")
    out = {}
    for name, h in histories.items():
        out[name] = {"lr": LEARNING_RATES[name], **_common.loss_summary(h)}
        _common.say(f"{name:>9} lr {LEARNING_RATES[name]:<6g} loss (last tenth) "
                    f"{out[name]['final_loss']:.4f}, test acc {h['test_acc'][-1]:.4f}", progress)
    results = {"quick": quick, "n_train": len(train[0]), "n_test": len(test[0]), "batch_size": BATCH,
               "iterations": len(out["sgd"]["loss"]), "optimizers": out}
    results["figures"] = [_common.save(figure(results), out_dir, "optimizer_mnist.png")]
    return results
