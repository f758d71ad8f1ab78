"""Three-way gradient checks of whole `serial` networks: hand-written backward == jax.vjp == float64
numerical differences, through `check_layer(net, params, x)` as a learner would call it."""

import jax
import jax.numpy as jnp
import pytest
from gradcheck import check_layer

from fnnet import gradcheck as fgc
from fnnet.layers import (
    Affine,
    BatchNormalization,
    Block,
    Convolution,
    Dropout,
    Pooling,
    Relu,
    Sigmoid,
    serial,
)

KEY = jax.random.PRNGKey(0)


def lenet5(activation=Relu, pool="max", widths=(6, 16, 120, 84)):
    """The README's LeNet-5 (ReLU, max pooling); with Sigmoid and 'avg' it is LeCun's own form:
    smooth everywhere, so central differences meet no kink (ReLU at 0, max-pool ties)."""
    c1, c2, f1, f2 = widths
    return serial(Convolution(c1, 5, pad=2), activation(), Pooling(2, mode=pool),
                  Convolution(c2, 5), activation(), Pooling(2, mode=pool),
                  Affine(f1), activation(), Affine(f2), activation(), Affine(10))


def conv_bn_dropout():
    return serial(Convolution(4, 3, pad=1), BatchNormalization(), Relu(), Pooling(2),
                  Affine(12), BatchNormalization(), Relu(), Dropout(0.3), Affine(5))


def _params(net, input_shape, seed=0):
    _, params, state = net.init(jax.random.PRNGKey(seed), input_shape)
    # Nudge every parameter off its init so that biases (0) and BN's gamma (1), beta (0) are generic.
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 100), len(leaves))
    moved = [p + 0.1 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys, strict=True)]
    return jax.tree_util.tree_unflatten(tree, moved), state


@pytest.mark.slow
def test_small_smooth_lenet5_passes_all_three_ways():
    net = lenet5(Sigmoid, "avg", widths=(3, 4, 12, 8))
    params, _ = _params(net, (1, 16, 16))
    check_layer(net, params, jax.random.normal(jax.random.PRNGKey(1), (2, 1, 16, 16)))


@pytest.mark.slow
def test_lenet5_passes_all_three_ways():
    """Full size (28x28 MNIST input, 61,706 parameters), LeCun's smooth form: every argument of
    the hand-written backward agrees with jax.vjp, with jit, and with float64 central differences."""
    net = lenet5(Sigmoid, "avg")
    params, _ = _params(net, (1, 28, 28))
    assert sum(p.size for p in params.values()) == 61_706
    check_layer(net, params, jax.random.normal(jax.random.PRNGKey(1), (2, 1, 28, 28)))


@pytest.mark.slow
def test_readme_lenet5_passes_with_the_kinks_its_steps_cross_judged_by_jax_vjp():
    """ReLU and max pooling have kinks: with 13k ReLU inputs and 3k pooling windows, some lie
    within a step h = 1e-4 of one, where central differences are off (measured: up to 3e-2 in W1,
    W4). check_layer finds them by the masks and argmaxes the layers cache, judges those entries
    by float64 jax.vjp and names them in the report; every other entry passes the float64 check."""
    net = lenet5()
    params, _ = _params(net, (1, 28, 28))
    report = fgc.check_layer(net, params, jax.random.normal(jax.random.PRNGKey(1), (2, 1, 28, 28)))
    assert len(report.vjp) == 11 and report.passed, str(report)
    assert report.kinks and report.kink_entries and "numerical check unreliable here" in str(report)


@pytest.mark.slow
def test_conv_relu_conv_relu_pool_affine_on_random_input_passes():
    """The net that failed before kinks were detected: numerical errors up to 9e-3 in W1 and x, all
    from entries whose step crossed a ReLU or max-pooling kink."""
    net = serial(Convolution(8, 3, pad=1), Relu(), Convolution(8, 3, pad=1), Relu(), Pooling(2), Affine(10))
    _, params, _ = net.init(KEY, (1, 28, 28))
    report = fgc.check_layer(net, params, jax.random.normal(jax.random.PRNGKey(1), (4, 1, 28, 28)))
    assert report.passed, str(report)
    assert set(report.kinks) <= {"layer 2 (Relu)", "layer 4 (Relu)", "layer 5 (Pooling 2x2)"}
    assert sum(map(len, report.kinks.values())) >= 1 and "x" in report.kink_entries


# Inference is slow here; Batch Norm's inference backward is checked in tests/test_normalization.py.
@pytest.mark.parametrize("train", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_conv_batchnorm_dropout_net_passes_all_three_ways(train):
    net = conv_bn_dropout()
    params, state = _params(net, (2, 6, 6))
    x = jax.random.normal(jax.random.PRNGKey(2), (5, 2, 6, 6))
    if not train:  # inference uses the running statistics: give it some that are not 0 and 1
        _, _, state = net.forward(params, x, state, train=True, key=KEY)
    check_layer(net, params, x, state=state, train=train, key=jax.random.PRNGKey(3))


def test_a_conv_bias_before_batchnorm_has_gradient_zero_and_passes():
    net = serial(Convolution(3, 3, pad=1), BatchNormalization(), Relu(), Affine(4))
    params, _ = _params(net, (2, 8, 8))
    x = jax.random.normal(jax.random.PRNGKey(4), (4, 2, 8, 8))
    report = fgc.check_layer(net, params, x, train=True)
    _, cache, _ = net.forward(params, x, net.init(KEY, (2, 8, 8))[2], train=True)
    dy = jax.random.normal(KEY, (4, 4))
    _, grads = net.backward(cache, dy)
    assert float(jnp.max(jnp.abs(grads["b1"]))) < 1e-5, "BN removes any per-channel shift: db1 is 0"
    assert float(jnp.max(jnp.abs(grads["W1"]))) > 0.1
    assert report.passed, str(report)


def test_a_wrong_backward_inside_a_serial_net_fails():
    good = Relu()
    leaky = good._replace(backward=lambda cache, dy: (dy, {}))  # forgets the mask
    net = serial(Affine(6), leaky, Affine(3))
    params, _ = _params(net, (5,))
    x = jax.random.normal(jax.random.PRNGKey(5), (4, 5))
    report = fgc.check_layer(net, params, x)
    assert isinstance(net, Block) and not report.passed
    assert report.vjp["params['W1']"] > 0.01 and report.numerical["x"] > 0.01
