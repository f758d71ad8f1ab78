"""The chapter-3 forward pass with the book's example weights."""

import chex
import jax
import jax.numpy as jnp
import pytest

from fnnet.functions import softmax
from fnnet.models import three_layer_net as tln


def test_example_identity_output():
    y = tln.predict(tln.init_example(), jnp.array([1.0, 0.5]), output="identity")
    chex.assert_shape(y, (2,))
    chex.assert_trees_all_close(y, jnp.array([0.31682708, 0.69627909]), rtol=1e-6)


def test_example_softmax_output_and_batch():
    params = tln.init_example()
    x = jnp.array([[1.0, 0.5], [0.0, 0.0], [-2.0, 3.0]])
    identity = tln.predict(params, x, output="identity")
    y = tln.predict(params, x)
    chex.assert_shape(y, (3, 2))
    chex.assert_trees_all_close(jnp.sum(y, axis=1), jnp.ones(3), rtol=1e-6)
    chex.assert_trees_all_close(y, softmax(identity))
    chex.assert_trees_all_close(identity[0], jnp.array([0.31682708, 0.69627909]), rtol=1e-6)
    chex.assert_trees_all_close(jax.jit(tln.predict, static_argnames="output")(params, x), y)


def test_by_hand():
    p = tln.init_example()
    x = jnp.array([1.0, 0.5])
    z1 = jax.nn.sigmoid(x @ p["W1"] + p["b1"])
    chex.assert_trees_all_close(x @ p["W1"] + p["b1"], jnp.array([0.3, 0.7, 1.1]), rtol=1e-6)
    z2 = jax.nn.sigmoid(z1 @ p["W2"] + p["b2"])
    chex.assert_trees_all_close(tln.predict(p, x, output="identity"), z2 @ p["W3"] + p["b3"], rtol=1e-6)


def test_any_depth():
    p = {"W1": jnp.ones((3, 2)), "b1": jnp.zeros(2)}
    assert tln.num_layers(p) == 1
    y = tln.predict(p, jnp.array([1.0, 2.0, 3.0]), output="identity")
    chex.assert_trees_all_close(y, jnp.array([6.0, 6.0]))
    assert tln.num_layers(tln.init_example()) == 3


def test_bad_input():
    params = tln.init_example()
    msg = r"x has 3 features per sample \(shape \(3,\)\) but params\['W1'\] has 2 rows \(shape \(2, 3\)\)"
    with pytest.raises(ValueError, match=rf"three_layer_net\.predict: {msg}"):
        tln.predict(params, jnp.ones(3))
    with pytest.raises(KeyError, match=r"three_layer_net\.predict: params is missing 'b2'"):
        tln.predict({k: v for k, v in params.items() if k != "b2"}, jnp.ones(2))
    with pytest.raises(KeyError, match=r"three_layer_net\.predict: params is missing 'W1', 'b1'"):
        tln.predict({}, jnp.ones(2))
    with pytest.raises(ValueError, match=r"three_layer_net\.predict: params\['W3'\] has 3 rows "
                                         r"\(shape \(3, 2\)\) but params\['W2'\] has 2 columns"):
        tln.predict(dict(params, W3=jnp.ones((3, 2))), jnp.ones(2))
    with pytest.raises(ValueError, match=r"three_layer_net\.predict: output must be 'identity' or 'softmax'"):
        tln.predict(params, jnp.ones(2), output="relu")
