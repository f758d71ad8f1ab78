"""fnnet.training: reproducibility, checkpoints and resume, divergence, input checks, accuracy."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet import optimizers
from fnnet.models import Model, get_model
from fnnet.training import (
    CheckpointError,
    RunFolderError,
    TrainingDiverged,
    evaluate,
    fit,
    load_checkpoint,
    load_run_params,
)


def quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def digits():
    from fnnet.datasets import load_digits

    return load_digits()


@pytest.fixture(scope="module")
def small(digits):
    """A 600/200 slice of digits: fast enough for many short runs."""
    (x, t), (xt, tt) = digits
    return (x[:600], t[:600]), (xt[:200], tt[:200])


def two_layer(input_size=64):
    return get_model("two_layer_net", (input_size,), 10, hidden_size=20, weight_init_std=0.1)


def noisy_counting(input_size=64):
    """TwoLayerNet whose training step uses its PRNG key (input dropout) and a model state (a step
    counter), so that resume is checked for keys and state as well as params."""
    base = two_layer(input_size)

    def init(key):
        params, _ = base.init(key)
        return params, {"n": jnp.zeros((), jnp.int32)}

    def apply(params, state, x, train=False, key=None):
        return base.apply(params, {}, x, train=train, key=key)[0], state

    def loss_and_grad(params, state, x, t, key):
        keep = jax.random.bernoulli(key, 0.8, x.shape)
        loss, grads, _ = base.loss_and_grad(params, {}, jnp.where(keep, x, 0.0) / 0.8, t, key)
        return loss, grads, {"n": state["n"] + 1}

    return Model(init, apply, loss_and_grad, base.input_shape)


def run(data, epochs, **kw):
    train, test = data
    kw.setdefault("optimizer", optimizers.adam(0.01))
    model = kw.pop("model", None) or noisy_counting()
    return fit(model, kw.pop("optimizer"), train, test, epochs=epochs, progress=False, log=quiet, **kw)


def test_same_seed_bit_identical_and_seed_matters(small):
    a = run(small, 2, seed=3)
    b = run(small, 2, seed=3)
    chex.assert_trees_all_equal(a.params, b.params)
    chex.assert_trees_all_equal(a.opt_state, b.opt_state)
    for k in ("loss", "train_acc", "test_acc"):
        assert a.history[k] == b.history[k], k
    c = run(small, 2, seed=4)
    assert not np.array_equal(np.asarray(a.params["W1"]), np.asarray(c.params["W1"]))


def test_history_shapes_and_output_files(small, tmp_path):
    r = run(small, 2, batch_size=64, out_dir=tmp_path)
    steps = 600 // 64  # the incomplete tail batch is dropped each epoch
    assert len(r.history["loss"]) == 2 * steps
    assert all(len(r.history[k]) == 2 for k in ("train_acc", "test_acc", "images_per_s"))
    assert int(r.state["n"]) == 2 * steps
    for name in ("metrics.json", "curves.png", "params.npz", "checkpoint-0002.ckpt"):
        assert (tmp_path / name).stat().st_size > 0, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["final_test_acc"] == r.history["test_acc"][-1]
    assert metrics["history"]["loss"] == r.history["loss"]
    with np.load(tmp_path / "params.npz") as z:
        np.testing.assert_array_equal(z["W1"], np.asarray(r.params["W1"]))
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def full3(small, tmp_path_factory):
    """The uninterrupted 3-epoch run that the resumed runs must reproduce."""
    return run(small, 3, out_dir=tmp_path_factory.mktemp("full"))


def test_resume_reproduces_uninterrupted_run(small, full3, tmp_path):
    full = full3
    run(small, 2, out_dir=tmp_path / "part")
    assert sorted(os.listdir(tmp_path / "part")).count("checkpoint-0002.ckpt") == 1
    logs = []
    resumed = fit(
        noisy_counting(), optimizers.adam(0.01), *small, epochs=3, out_dir=tmp_path / "part",
        resume=True, progress=False, log=logs.append,
    )
    assert any("resuming from" in line and "epoch 2" in line for line in logs)
    chex.assert_trees_all_equal(full.params, resumed.params)
    chex.assert_trees_all_equal(full.opt_state, resumed.opt_state)
    chex.assert_trees_all_equal(full.state, resumed.state)
    assert full.history["loss"] == resumed.history["loss"]
    assert full.history["test_acc"] == resumed.history["test_acc"]
    # Only the last two checkpoints are kept.
    assert sorted(p for p in os.listdir(tmp_path / "part") if p.endswith(".ckpt")) == [
        "checkpoint-0002.ckpt", "checkpoint-0003.ckpt"]


def test_truncated_and_altered_checkpoints_are_refused(small, tmp_path):
    run(small, 1, out_dir=tmp_path)
    path = tmp_path / "checkpoint-0001.ckpt"
    good = path.read_bytes()
    assert load_checkpoint(path)["meta"]["epoch"] == 1

    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="SHA-256.*truncated or was altered"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="checkpoint-0001.ckpt"):
        run(small, 2, out_dir=tmp_path, resume=True)

    altered = bytearray(good)
    altered[-100] ^= 0x01
    path.write_bytes(bytes(altered))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(path)

    path.write_bytes(good[:10])
    with pytest.raises(CheckpointError, match="not a valid fnnet checkpoint"):
        load_checkpoint(path)


def test_resume_skips_a_corrupt_newest_checkpoint(small, full3, tmp_path, capsys):
    full = full3
    run(small, 2, out_dir=tmp_path / "part")
    newest = tmp_path / "part" / "checkpoint-0002.ckpt"
    newest.write_bytes(newest.read_bytes()[:-7])
    logs = []
    resumed = fit(
        noisy_counting(), optimizers.adam(0.01), *small, epochs=3, out_dir=tmp_path / "part",
        resume=True, progress=False, log=logs.append,
    )
    err = capsys.readouterr().err  # the skipped file is a warning: stderr, not the run's log
    assert "warning" in err and "checkpoint-0002.ckpt" in err
    assert not any("checkpoint-0002.ckpt" in line for line in logs)
    assert any("resuming from" in line and "epoch 1" in line for line in logs)
    chex.assert_trees_all_equal(full.params, resumed.params)


def test_resume_across_a_step_decay_boundary_is_exact(small, full3, tmp_path):
    """A step decay inside the optimizer (the chapter 7 records' schedule) resumes exactly across
    its boundary: 1 epoch, then resume for 2 more, with the rate dropping at step 9 (epoch 2),
    equals the uninterrupted run; and it differs from the constant-rate run from the boundary on."""
    from fnnet.schedules import step_decay

    opt = optimizers.adam(step_decay(0.01, [9], 0.1))
    whole = run(small, 3, out_dir=tmp_path / "whole", optimizer=opt)
    run(small, 1, out_dir=tmp_path / "part", optimizer=opt)
    resumed = run(small, 3, out_dir=tmp_path / "part", resume=True, optimizer=opt)
    chex.assert_trees_all_equal(whole.params, resumed.params)
    chex.assert_trees_all_equal(whole.opt_state, resumed.opt_state)
    assert whole.history["loss"][:9] == full3.history["loss"][:9]
    assert whole.history["loss"][9:] != full3.history["loss"][9:]


def test_resume_refuses_a_different_run(small, tmp_path):
    run(small, 1, out_dir=tmp_path)
    with pytest.raises(CheckpointError, match="batch_size=100.*batch_size=50"):
        run(small, 2, out_dir=tmp_path, resume=True, batch_size=50)
    with pytest.raises(CheckpointError, match="different model or optimizer"):
        run(small, 2, out_dir=tmp_path, resume=True, optimizer=optimizers.sgd(0.1))


def test_resume_refuses_another_run_description_but_allows_more_epochs(small, tmp_path):
    info = {"model": "two_layer_net", "optimizer": "adam", "lr": 0.01, "weight_decay": 0.0, "epochs": 1}
    run(small, 1, out_dir=tmp_path, info=info)
    for k, v in (("lr", 0.001), ("optimizer", "sgd"), ("weight_decay", 0.1), ("model", "multi_layer_net")):
        with pytest.raises(CheckpointError, match=f"{k}=.*but this run has {k}="):
            run(small, 2, out_dir=tmp_path, resume=True, info={**info, k: v})
    r = run(small, 2, out_dir=tmp_path, resume=True, info={**info, "epochs": 2})
    assert len(r.history["test_acc"]) == 2
    assert json.loads((tmp_path / "metrics.json").read_text())["run"]["epochs"] == 2


def test_a_folder_holding_a_run_is_refused_without_resume_or_overwrite(small, tmp_path):
    first = run(small, 1, out_dir=tmp_path)
    before = {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)}
    with pytest.raises(RunFolderError, match="already holds a run.*--resume.*--overwrite"):
        run(small, 1, out_dir=tmp_path, seed=1)
    assert {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)} == before
    with pytest.raises(ValueError, match="contradict"):
        run(small, 1, out_dir=tmp_path, resume=True, overwrite=True)
    (tmp_path / "checkpoint-0007.ckpt").write_bytes(b"from an older, longer run")
    second = run(small, 1, out_dir=tmp_path, seed=1, overwrite=True)
    assert not (tmp_path / "checkpoint-0007.ckpt").exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["seed"] == 1
    from fnnet.io import load_params

    chex.assert_trees_all_equal(load_params(tmp_path / "params.npz"), second.params)
    assert not np.array_equal(np.asarray(first.params["W1"]), np.asarray(second.params["W1"]))


def test_load_run_params_takes_what_a_user_has(small, tmp_path):
    r = run(small, 1, out_dir=tmp_path)
    params, state = noisy_counting().init(jax.random.PRNGKey(7))  # fresh, as a user would have them
    for path in (tmp_path / "params.npz", str(tmp_path / "checkpoint-0001.ckpt")):
        got_params, got_state = load_run_params(path, params, state)
        chex.assert_trees_all_equal(got_params, r.params)
        chex.assert_trees_all_equal(got_state, r.state)
    other, other_state = noisy_counting(32).init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"^load_run_params: .*params\.npz: W1 has shape \(64, 20\) "
                                         r"but the model needs \(32, 20\)"):
        load_run_params(tmp_path / "params.npz", other, other_state)
    with pytest.raises(CheckpointError, match=r"^load_run_params: checkpoint .* params array 0 is "
                                              r"float32\(64, 20\)"):
        load_run_params(tmp_path / "checkpoint-0001.ckpt", other, other_state)
    with pytest.raises(ValueError, match=r"^fnnet eval: .*W1 has shape"):
        load_run_params(tmp_path / "params.npz", other, other_state, fn="fnnet eval")
    with pytest.raises(TypeError):  # the caller's name is keyword-only, never the first argument
        load_run_params("fnnet eval", tmp_path / "params.npz", params, state)


def test_nan_loss_stops_with_epoch_and_step_and_keeps_checkpoint(small, tmp_path):
    run(small, 1, out_dir=tmp_path, optimizer=optimizers.sgd(0.1))
    before = load_checkpoint(tmp_path / "checkpoint-0001.ckpt")
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step \d+ of 6.*checkpoint-0001.ckpt"):
        run(small, 3, out_dir=tmp_path, resume=True, optimizer=optimizers.sgd(1e30))
    after = load_checkpoint(tmp_path / "checkpoint-0001.ckpt")
    chex.assert_trees_all_equal(before["params"], after["params"])
    assert not (tmp_path / "checkpoint-0002.ckpt").exists()
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step \d+"):
        run(small, 1, optimizer=optimizers.sgd(1e30))


def test_bad_input_is_rejected_with_clear_messages(small, tmp_path):
    (x, t), test = small
    with pytest.raises(ValueError, match="600 inputs but 599 targets"):
        run(((x, t[:-1]), test), 1)
    with pytest.raises(ValueError, match="batch_size 601 is larger than the 600 training samples"):
        run(small, 1, batch_size=601)
    with pytest.raises(ValueError, match=r"784 values per sample.*input_shape \(64,\)"):
        run(((np.zeros((600, 784), np.float32), t), test), 1)
    with pytest.raises(ValueError, match="resume=True needs out_dir"):
        run(small, 1, resume=True)
    with pytest.raises(TypeError, match="labels t must be integers"):
        run(((x, t.astype(np.float32)), test), 1)
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        run(small, -1)


def test_evaluate_matches_direct_accuracy_with_partial_batch(small):
    model = two_layer()
    params, state = model.init(jax.random.PRNGKey(0))
    (x, t), _ = small
    x, t = x[:333], t[:333]
    want = float(np.mean(np.argmax(np.asarray(model.apply(params, state, jnp.asarray(x))[0]), 1) == t))
    assert evaluate(model, params, state, x, t, batch_size=100) == pytest.approx(want, abs=0)
    one_hot = np.eye(10, dtype=np.float32)[t]
    assert evaluate(model, params, state, x, one_hot, batch_size=1000) == pytest.approx(want, abs=0)


def test_augment_is_applied_to_training_batches(small):
    """An augmentation that blanks the input leaves W1 at its initial value (its gradient is x^T dy)."""
    model = two_layer()
    init_w1 = model.init(jax.random.split(jax.random.PRNGKey(0))[0])[0]["W1"]
    r = run(small, 1, model=model, optimizer=optimizers.sgd(0.1), augment=lambda key, xb: xb * 0.0)
    chex.assert_trees_all_equal(r.params["W1"], init_w1)
    r = run(small, 1, model=model, optimizer=optimizers.sgd(0.1))
    assert not np.array_equal(np.asarray(r.params["W1"]), np.asarray(init_w1))


def test_digits_training_reaches_good_accuracy(digits):
    train, test = digits
    r = fit(two_layer(), optimizers.sgd(0.3), train, test, epochs=30, progress=False, log=quiet)
    assert r.history["test_acc"][-1] >= 0.90
    assert r.history["loss"][-1] < r.history["loss"][0] / 5


@pytest.mark.slow
@pytest.mark.mnist
def test_two_layer_net_mnist_97_percent(mnist_dir):
    """The book's chapter 5 run: 784-50-10 ReLU, SGD lr 0.1, batch 100, 17 epochs (10,200 iterations)."""
    from fnnet.datasets import load_mnist

    train, test = load_mnist(data_dir=mnist_dir)
    model = get_model("two_layer_net", (784,), 10, hidden_size=50)
    r = fit(model, optimizers.sgd(0.1), train, test, epochs=17, progress=False, log=quiet)
    assert len(r.history["loss"]) == 17 * 600
    assert r.history["test_acc"][-1] >= 0.97


def test_bad_data_values_are_refused_naming_the_first_bad_sample(small):
    """A NaN would train into NaN weights (ReLU maps it to 0, so the loss stays finite) and an
    out-of-range label drops out of the loss: fit checks the values once, before jit."""
    (x, t), test = small
    bad_x = x.copy()
    bad_x[5, 3] = np.nan
    with pytest.raises(ValueError, match=r"train_data x\[5\] holds a non-finite value"):
        run(((bad_x, t), test), 1)
    bad_x[9, 0] = np.inf
    with pytest.raises(ValueError, match=r"test_data x\[5\] holds a non-finite value \(2 samples"):
        run(((x, t), (bad_x[:100], t[:100])), 1)
    bad_t = t.copy()
    bad_t[7:] = 10
    with pytest.raises(ValueError, match=r"label t\[7\] = 10 is outside \[0, 10\).*593 labels of 600"):
        run(((x, bad_t), test), 1)
    bad_t[7:] = -1
    with pytest.raises(ValueError, match=r"label t\[7\] = -1 is outside"):
        run(((x, bad_t), test), 1)
    one_hot = np.eye(10, dtype=np.float32)[t]
    one_hot[4] = 0.1
    with pytest.raises(ValueError, match=r"t\[4\] = .* is not a one-hot row"):
        run(((x, one_hot), test), 1)
    with pytest.raises(ValueError, match=r"one-hot t has 9 columns.*10 outputs"):
        run(((x, one_hot[:, :9]), test), 1)


def test_non_finite_parameters_stop_training_even_with_a_finite_loss(small):
    """A NaN bias behind ReLU keeps the loss finite (ReLU's where maps NaN to 0), so the loss alone
    does not show it: the parameters are checked too."""
    base = two_layer()

    def loss_and_grad(params, state, x, t, key):
        loss, grads, state = base.loss_and_grad(params, state, x, t, key)
        return loss, {**grads, "b1": grads["b1"] * jnp.nan}, state

    logs = []
    with pytest.raises(TrainingDiverged, match="a parameter became NaN or infinite at epoch 1.*rate"):
        fit(base._replace(loss_and_grad=loss_and_grad), optimizers.sgd(0.1), *small, epochs=1,
            progress=False, log=logs.append)
