"""Tanh, LeakyRelu and Softmax: the pure layers and the blocks for `serial`, each hand-written
backward checked three ways (== jax.vjp, == jit, == float64 central differences)."""

import jax
import jax.numpy as jnp
import pytest
from gradcheck import check_layer

from fnnet import gradcheck as fgc
from fnnet.layers import Affine, LeakyRelu, ShapeError, Softmax, Tanh, leaky_relu, serial, softmax, tanh

KEY = jax.random.PRNGKey(0)


def away_from_zero(shape, seed=1):
    x = jax.random.normal(jax.random.fold_in(KEY, seed), shape)
    return x + 0.2 * jnp.sign(x)


def test_tanh_layer():
    x = jax.random.normal(KEY, (3, 4))
    check_layer(tanh, {}, x)
    y, cache = tanh.forward({}, x)
    assert jnp.allclose(y, jnp.tanh(x)) and cache is y


def test_leaky_relu_layer_keeps_a_slope_below_zero():
    x = away_from_zero((3, 4))
    check_layer(leaky_relu, {}, x, alpha=0.1)
    y, _ = leaky_relu.forward({}, x, alpha=0.1)
    assert jnp.array_equal(y, jnp.where(x > 0, x, 0.1 * x))
    dx, grads = leaky_relu.backward(leaky_relu.forward({}, x, alpha=0.1)[1], jnp.ones_like(x))
    assert grads == {} and jnp.allclose(dx, jnp.where(x > 0, 1.0, 0.1))


def test_softmax_layer_rows_sum_to_one_and_its_jacobian_is_checked():
    x = jax.random.normal(KEY, (3, 5)) * 3
    check_layer(softmax, {}, x)
    y, _ = softmax.forward({}, x)
    assert jnp.allclose(y.sum(axis=1), 1.0)
    dx, _ = softmax.backward(y, jnp.ones_like(y))  # a constant dy moves no probability
    assert float(jnp.max(jnp.abs(dx))) < 1e-6


@pytest.mark.parametrize("block, name", [(Tanh(), "Tanh"), (LeakyRelu(0.2), "LeakyRelu 0.2"),
                                         (Softmax(), "Softmax")])
def test_the_blocks_in_a_serial_net_pass_three_ways(block, name):
    net = serial(Affine(5), block, Affine(3))
    assert net.layers[1].name == name and repr(block) == f"Block({name})"
    _, params, _ = net.init(KEY, (4,))
    check_layer(net, params, away_from_zero((3, 4)))


def test_a_wrong_leaky_slope_fails_the_check():
    wrong = LeakyRelu(0.1)._replace(backward=lambda cache, dy: (jnp.where(cache[0], dy, 0.2 * dy), {}))
    report = fgc.check_layer(wrong, {}, away_from_zero((3, 4)))
    assert not report.passed and report.vjp["x"] > 0.01 and report.numerical["x"] > 0.01


def test_block_arguments_and_shapes_are_checked():
    with pytest.raises(ValueError, match=r"LeakyRelu: alpha must be a number in \[0, 1\), got 1.5"):
        LeakyRelu(1.5)
    with pytest.raises(ShapeError, match=r"serial: layer 1 \(Softmax\) needs flat \(D,\) input but gets "
                                         r"input \(1, 4, 4\); put Flatten\(\) before it"):
        serial(Softmax()).init(KEY, (1, 4, 4))
