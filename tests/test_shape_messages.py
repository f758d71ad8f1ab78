"""Messages for the shapes a learner gets wrong first: the batch axis in a per-sample shape, one
image where a batch is expected, arrays given to a constructor that takes sizes."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet.layers import Affine, Convolution, Dropout, Pooling, Relu, ShapeError, convolution, serial

KEY = jax.random.PRNGKey(0)


def lenet():
    return serial(Convolution(6, 5), Relu(), Pooling(2), Affine(10))


def test_an_input_shape_with_the_batch_axis_says_to_leave_it_out_and_shows_the_shape():
    want = (r"serial: layer 1 (Convolution 6x5x5) needs (C, H, W) images but gets input (100, 1, 28, 28), "
            r"which has the batch axis: shapes are per sample, without N; give (1, 28, 28)")
    with pytest.raises(ShapeError, match=re.escape(want)):
        lenet().init(KEY, (100, 1, 28, 28))
    with pytest.raises(ShapeError, match=re.escape(want)):
        lenet().model((100, 1, 28, 28))
    assert lenet().init(KEY, (1, 28, 28))[0] == (10,)


def test_one_image_where_a_batch_is_expected_says_to_add_the_batch_axis():
    params = {"W": jnp.ones((3, 1, 3, 3)), "b": jnp.zeros(3)}
    with pytest.raises(ValueError, match=re.escape(
            "convolution.forward: x must be 4-D, got shape (1, 28, 28); for one sample add a batch axis: "
            "x[None] has shape (1, 1, 28, 28)")):
        convolution.forward(params, jnp.ones((1, 28, 28)))
    net = lenet()
    _, p, _ = net.init(KEY, (1, 28, 28))
    with pytest.raises(ValueError, match=re.escape("x[None] has shape (1, 1, 28, 28)")):
        net.forward(p, jnp.ones((1, 28, 28)))
    with pytest.raises(ValueError, match=r"x must be 4-D, got shape \(2, 784\)$"):  # not one sample
        convolution.forward(params, jnp.ones((2, 784)))


@pytest.mark.parametrize("make, want", [
    (lambda W, b: Convolution(W, b), "Convolution: filters must be an integer >= 1, got an array of shape "
     "(30, 1, 5, 5) and dtype float32; Convolution takes sizes"),
    (lambda W, b: Affine(b), "Affine: out must be an integer >= 1, got an array of shape (30,) and dtype "
     "float32"),
    (lambda W, b: Pooling(2, pad=b), "Pooling: pad must be an integer >= 0, got an array of shape (30,)"),
    (lambda W, b: Dropout(b), "Dropout: ratio must be a number in [0, 1), got an array of shape (30,)"),
])
def test_arrays_given_to_a_constructor_show_shape_and_dtype_not_entries(make, want):
    W, b = np.full((30, 1, 5, 5), 0.123456, np.float32), np.zeros(30, np.float32)
    with pytest.raises(ValueError) as e:
        make(W, b)
    assert str(e.value).startswith(want) and "0.123" not in str(e.value) and len(str(e.value)) < 300
