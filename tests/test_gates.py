"""Perceptron logic gates of chapter 2."""

import chex
import jax.numpy as jnp
import pytest

from fnnet import gates

INPUTS = [(0, 0), (1, 0), (0, 1), (1, 1)]
TABLES = {
    "AND": [0, 0, 0, 1],
    "NAND": [1, 1, 1, 0],
    "OR": [0, 1, 1, 1],
    "XOR": [0, 1, 1, 0],
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_truth_table(name):
    gate = getattr(gates, name)
    assert [int(gate(x1, x2)) for x1, x2 in INPUTS] == TABLES[name]


@pytest.mark.parametrize("name", sorted(TABLES))
def test_truth_table_batched(name):
    x1 = jnp.array([a for a, _ in INPUTS])
    x2 = jnp.array([b for _, b in INPUTS])
    y = getattr(gates, name)(x1, x2)
    chex.assert_type(y, jnp.int32)
    chex.assert_trees_all_equal(y, jnp.array(TABLES[name], jnp.int32))


def test_perceptron_is_a_threshold_of_a_weighted_sum():
    x = jnp.array([[0.0, 0.0], [1.0, 1.0], [2.0, -1.0]])
    y = gates.perceptron(x, [0.5, 0.5], -0.7)
    chex.assert_trees_all_equal(y, jnp.array([0, 1, 0], jnp.int32))


def test_xor_is_not_a_single_perceptron():
    """No (w, b) on a small grid reproduces XOR, while AND has such a grid point."""
    grid = [i / 4 for i in range(-8, 9)]
    x1 = jnp.array([a for a, _ in INPUTS])
    x2 = jnp.array([b for _, b in INPUTS])
    x = jnp.stack([x1, x2], axis=-1)

    def found(table):
        return any(
            gates.perceptron(x, [w1, w2], b).tolist() == table for w1 in grid for w2 in grid for b in grid
        )

    assert found(TABLES["AND"])
    assert not found(TABLES["XOR"])
