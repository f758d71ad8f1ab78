import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet.init import normal, weight_std


@pytest.mark.parametrize(
    "spec,n_in,want",
    [
        (0.01, 784, 0.01),
        (1, 10, 1.0),
        (np.float32(0.5), 3, 0.5),
        ("xavier", 100, 0.1),
        ("sigmoid", 400, 0.05),
        ("Xavier", 4, 0.5),
        ("he", 100, math.sqrt(0.02)),
        ("relu", 50, 0.2),
        ("HE", 8, 0.5),
    ],
)
def test_weight_std(spec, n_in, want):
    assert weight_std(spec, n_in) == pytest.approx(want, rel=1e-7)


def test_weight_std_numpy_int():
    assert weight_std("he", np.int64(200)) == pytest.approx(0.1)


@pytest.mark.parametrize("spec", ["glorot", "", "kaiming"])
def test_unknown_spec(spec):
    with pytest.raises(ValueError, match="weight_std: unknown spec"):
        weight_std(spec, 10)


@pytest.mark.parametrize("spec,exc", [(0.0, ValueError), (-1.0, ValueError), (float("inf"), ValueError),
                                      (None, TypeError), (True, TypeError), ([0.1], TypeError)])
def test_bad_spec(spec, exc):
    with pytest.raises(exc, match="weight_std"):
        weight_std(spec, 10)


@pytest.mark.parametrize("n_in", [0, -3, 2.5, True])
def test_bad_n_in(n_in):
    with pytest.raises(ValueError, match="n_in must be a positive integer"):
        weight_std("he", n_in)


def test_normal_std_and_fan_in():
    key = jax.random.PRNGKey(0)
    w = normal(key, (400, 300), "he")
    assert w.dtype == jnp.float32 and w.shape == (400, 300)
    assert float(jnp.std(w)) == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    f = normal(key, (64, 16, 3, 3), "xavier")
    assert float(jnp.std(f)) == pytest.approx(math.sqrt(1 / (16 * 9)), rel=0.03)
    # same key, same weights; the spec only scales
    np.testing.assert_allclose(np.asarray(normal(key, (400, 300), 1.0)) * math.sqrt(2 / 400), np.asarray(w),
                               rtol=1e-6)
