"""TwoLayerNet: backprop == jax.grad == numerical gradient; the Model contract; bad input."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import record, rel_error

from fnnet.models import get_model
from fnnet.models import two_layer_net as net

IN, HIDDEN, OUT, N = 12, 7, 4, 5


def setup(dtype=jnp.float32, std=0.5, n=N):
    key_p, key_x, key_t = jax.random.split(jax.random.PRNGKey(3), 3)
    params = net.init(key_p, IN, HIDDEN, OUT, weight_init_std=std, dtype=dtype)
    params["b1"] = params["b1"] + 0.1
    x = jax.random.normal(key_x, (n, IN), dtype)
    t = jax.random.randint(key_t, (n,), 0, OUT)
    return params, x, t


def test_init_shapes_and_bias():
    params = net.init(jax.random.PRNGKey(0), 784, 50, 10)
    chex.assert_shape([params[k] for k in net.KEYS], [(784, 50), (50,), (50, 10), (10,)])
    chex.assert_type(list(params.values()), jnp.float32)
    chex.assert_trees_all_equal(params["b1"], jnp.zeros(50))
    assert 0.008 < float(jnp.std(params["W1"])) < 0.012
    chex.assert_trees_all_equal(params, net.init(jax.random.PRNGKey(0), 784, 50, 10))


# sigmoid: chapter 4's net. One-hot targets with ReLU are slow here: labels and one-hot targets give
# the same gradient (test_labels_and_one_hot_give_the_same_loss_and_gradient).
@pytest.mark.parametrize("one_hot, activation", [
    pytest.param(False, "relu", id="labels-relu"),
    pytest.param(True, "relu", id="one_hot-relu", marks=pytest.mark.slow),
    pytest.param(False, "sigmoid", id="labels-sigmoid"),
    pytest.param(True, "sigmoid", id="one_hot-sigmoid"),
])
def test_three_way_gradient_check_float64(one_hot, activation):
    with jax.enable_x64(True):
        params, x, t = setup(jnp.float64)
        if one_hot:
            t = jax.nn.one_hot(t, OUT, dtype=jnp.float64)
        chex.assert_type(params["W1"], jnp.float64)
        backprop = net.gradient(params, x, t, activation=activation)
        numerical = net.numerical_gradient(params, x, t, activation=activation)
        autodiff = jax.grad(lambda p: net.loss(p, x, t, activation=activation))(params)
        if activation == "sigmoid":
            assert rel_error(backprop, net.gradient(params, x, t)) > 1e-2, "sigmoid and ReLU nets must differ"
        chex.assert_trees_all_equal_shapes(backprop, params)
        for k in net.KEYS:
            mean_num = float(jnp.mean(jnp.abs(numerical[k] - backprop[k])))
            max_auto = float(jnp.max(jnp.abs(autodiff[k] - backprop[k])))
            assert mean_num < 1e-9, f"{k}: mean |numerical - backprop| = {mean_num:.3g}"
            assert max_auto < 1e-12, f"{k}: max |jax.grad - backprop| = {max_auto:.3g}"
            assert float(jnp.max(jnp.abs(backprop[k]))) > 1e-3, f"{k}: gradient too small to be a test"
        record(rel_error(backprop, autodiff), rel_error(backprop, numerical))


def test_labels_and_one_hot_give_the_same_loss_and_gradient():
    params, x, t = setup()
    one_hot = jax.nn.one_hot(t, OUT)
    chex.assert_trees_all_close(net.loss(params, x, t), net.loss(params, x, one_hot), rtol=1e-6)
    chex.assert_trees_all_close(net.gradient(params, x, t), net.gradient(params, x, one_hot), rtol=1e-6)


def test_float32_gradient_matches_jax_grad_and_jit():
    params, x, t = setup()
    grads = net.gradient(params, x, t)
    chex.assert_type(list(grads.values()), jnp.float32)
    chex.assert_trees_all_close(grads, jax.grad(net.loss)(params, x, t), rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(jax.jit(net.gradient)(params, x, t), grads, rtol=1e-6, atol=1e-7)
    value, grads2 = net.loss_and_gradient(params, x, t)
    chex.assert_trees_all_close(value, net.loss(params, x, t), rtol=1e-6)
    chex.assert_trees_all_equal(grads2, grads)


def test_batch_of_one_and_single_sample():
    params, x, t = setup(n=1)
    grads = net.gradient(params, x, t)
    chex.assert_trees_all_close(net.gradient(params, x[0], t[0]), grads, rtol=1e-6)
    chex.assert_trees_all_close(net.gradient(params, x[0], jax.nn.one_hot(t[0], OUT)), grads, rtol=1e-6)
    chex.assert_trees_all_close(grads, jax.grad(net.loss)(params, x, t), rtol=1e-5, atol=1e-6)
    chex.assert_shape(net.predict(params, x[0]), (OUT,))
    chex.assert_shape(net.predict(params, x), (1, OUT))


def test_predict_loss_and_accuracy_values():
    params, x, t = setup()
    scores = net.predict(params, x)
    ref = jnp.maximum(x @ params["W1"] + params["b1"], 0) @ params["W2"] + params["b2"]
    chex.assert_trees_all_close(scores, ref, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(net.loss(params, x, t), -jnp.mean(jax.nn.log_softmax(ref)[jnp.arange(N), t]),
                                rtol=1e-5)
    pred = jnp.argmax(ref, axis=1)
    chex.assert_trees_all_close(net.accuracy(params, x, t), jnp.mean(pred == t))
    chex.assert_trees_all_close(net.accuracy(params, x, pred), 1.0)
    chex.assert_trees_all_close(net.accuracy(params, x, jax.nn.one_hot(pred, OUT)), 1.0)


def test_numerical_gradient_does_not_change_params():
    params, x, t = setup()
    before = jax.tree_util.tree_map(np.array, params)
    net.numerical_gradient(params, x, t)
    chex.assert_trees_all_equal(jax.tree_util.tree_map(np.asarray, params), before)


def test_a_few_sgd_steps_lower_the_loss():
    params, x, t = setup()
    start = net.loss(params, x, t)
    step = jax.jit(lambda p: jax.tree_util.tree_map(lambda a, g: a - 0.5 * g, p, net.gradient(p, x, t)))
    for _ in range(20):
        params = step(params)
    assert float(net.loss(params, x, t)) < 0.5 * float(start)


def test_model_contract():
    m = get_model("two_layer_net", (1, 3, 4), OUT, hidden_size=HIDDEN)
    assert m.input_shape == (IN,)
    params, state = m.init(jax.random.PRNGKey(0))
    assert state == {}
    chex.assert_shape(params["W1"], (IN, HIDDEN))
    x = jax.random.normal(jax.random.PRNGKey(1), (N, 1, 3, 4))
    t = jnp.arange(N) % OUT
    scores, state = m.apply(params, state, x)
    chex.assert_shape(scores, (N, OUT))
    value, grads, state = m.loss_and_grad(params, state, x, t, jax.random.PRNGKey(2))
    chex.assert_trees_all_close(value, net.loss(params, x.reshape(N, -1), t))
    chex.assert_trees_all_close(grads, net.gradient(params, x.reshape(N, -1), t))


def test_features_mismatch_raises():
    params, x, t = setup()
    bad = jnp.ones((N, IN + 1))
    msg = (rf"x has {IN + 1} features per sample \(shape \({N}, {IN + 1}\)\) "
           rf"but params\['W1'\] has {IN} rows \(shape \({IN}, {HIDDEN}\)\)")
    for fn in (net.predict, net.accuracy, net.loss, net.gradient):
        args = (params, bad) if fn is net.predict else (params, bad, t)
        with pytest.raises(ValueError, match=rf"two_layer_net\.{fn.__name__}: {msg}"):
            fn(*args)
    with pytest.raises(ValueError, match=rf"two_layer_net\.loss: {msg}"):
        jax.jit(net.loss)(params, bad, t)


def test_labels_out_of_range_raise():
    params, x, _ = setup()
    with pytest.raises(ValueError, match=rf"two_layer_net\.loss: t has labels in \[0, {OUT}\], "
                                         rf"outside \[0, {OUT}\) for {OUT} classes \(shape \(3,\)\)"):
        net.loss(params, x[:3], jnp.array([0, 1, OUT]))
    with pytest.raises(ValueError, match=r"two_layer_net\.gradient: t has labels in \[-1, 2\]"):
        net.gradient(params, x[:3], jnp.array([-1, 1, 2]))
    msg = rf"t must be labels of shape \({N},\) or one-hot of shape \({N}, {OUT}\), got shape \({N}, "
    with pytest.raises(ValueError, match=rf"two_layer_net\.loss: {msg}"):
        net.loss(params, x, jnp.zeros((N, OUT + 1)))


def test_missing_or_misshaped_params_raise():
    params, x, t = setup()
    partial = {k: v for k, v in params.items() if k != "b2"}
    with pytest.raises(KeyError, match=r"two_layer_net\.gradient: params is missing 'b2' "
                                       r"\(has \['W1', 'W2', 'b1'\]\)"):
        net.gradient(partial, x, t)
    with pytest.raises(KeyError, match=r"two_layer_net\.predict: params is missing 'W1', 'b1'"):
        net.predict({"W2": params["W2"], "b2": params["b2"]}, x)
    wrong = dict(params, b1=jnp.zeros(HIDDEN + 1))
    with pytest.raises(ValueError, match=rf"two_layer_net\.loss: params\['b1'\] must have shape "
                                         rf"\({HIDDEN},\).*got shape \({HIDDEN + 1},\)"):
        net.loss(wrong, x, t)
    wrong = dict(params, W2=jnp.zeros((HIDDEN + 2, OUT)))
    with pytest.raises(ValueError, match=rf"two_layer_net\.predict: params\['W2'\] must have shape "
                                         rf"\({HIDDEN}, {OUT}\)"):
        net.predict(wrong, x)


@pytest.mark.parametrize("arg,value", [("hidden_size", -5), ("hidden_size", 0), ("input_size", 0),
                                       ("output_size", -1), ("hidden_size", 2.5), ("input_size", True)])
def test_init_refuses_sizes_below_one(arg, value):
    sizes = {"input_size": IN, "hidden_size": HIDDEN, "output_size": OUT, arg: value}
    with pytest.raises(ValueError, match=rf"two_layer_net\.init: {arg} must be an integer >= 1, "
                                         rf"got {re.escape(repr(value))}"):
        net.init(jax.random.PRNGKey(0), **sizes)


def test_init_accepts_numpy_integer_sizes():
    params = net.init(jax.random.PRNGKey(0), np.int64(IN), np.int32(HIDDEN), np.int64(OUT))
    chex.assert_shape(params["W1"], (IN, HIDDEN))


@pytest.mark.parametrize("fn", [net.loss, net.accuracy, net.gradient, net.loss_and_gradient,
                                net.numerical_gradient], ids=lambda f: f.__name__)
def test_zero_samples_raise(fn):
    params, _, _ = setup()
    name = "gradient" if fn is net.loss_and_gradient else fn.__name__
    msg = rf"two_layer_net\.{name}: x has no samples \(shape \(0, {IN}\), t shape \(0,\)\)"
    with pytest.raises(ValueError, match=msg):
        fn(params, jnp.zeros((0, IN)), jnp.zeros((0,), jnp.int32))
    if fn is net.loss:
        with pytest.raises(ValueError, match=msg):
            jax.jit(net.loss)(params, jnp.zeros((0, IN)), jnp.zeros((0,), jnp.int32))


def test_predict_on_zero_samples_raises():
    params, _, _ = setup()
    with pytest.raises(ValueError, match=rf"two_layer_net\.predict: x has no samples \(shape \(0, {IN}\)\)"):
        net.predict(params, jnp.zeros((0, IN)))


def test_sigmoid_net_predict_and_model():
    params, x, t = setup()
    ref = jax.nn.sigmoid(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    chex.assert_trees_all_close(net.predict(params, x, activation="sigmoid"), ref, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(net.accuracy(params, x, t, activation="sigmoid"),
                                jnp.mean(jnp.argmax(ref, axis=1) == t))
    m = get_model("two_layer_net", (IN,), OUT, hidden_size=HIDDEN, activation="sigmoid")
    scores, _ = m.apply(params, {}, x)
    chex.assert_trees_all_close(scores, ref, rtol=1e-5, atol=1e-6)
    value, grads, _ = m.loss_and_grad(params, {}, x, t)
    chex.assert_trees_all_close(value, net.loss(params, x, t, activation="sigmoid"))
    chex.assert_trees_all_close(grads, net.gradient(params, x, t, activation="sigmoid"))


def test_unknown_activation_raises():
    params, x, t = setup()
    for fn in (net.loss, net.gradient, net.accuracy):
        with pytest.raises(ValueError, match=rf"two_layer_net\.{fn.__name__}: activation must be one of "
                                             r"relu, sigmoid, got 'tanh'"):
            fn(params, x, t, activation="tanh")
    with pytest.raises(ValueError, match=r"two_layer_net\.model: activation must be one of"):
        net.model((IN,), OUT, activation="tanh")
