"""simpleNet of chapter 4 against the numbers printed in the book's text."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet.gradient import numerical_gradient
from fnnet.models import simple_net

# The book's W (one draw of np.random.randn(2, 3)) and what its text prints for it. The printed
# loss and dW are those of the cross-entropy without the 1e-7 delta, -log(y[2]) and x (y - t):
# the delta that cross_entropy_error keeps, as the book's code does, lowers the loss by
# log(1 + 1e-7 / y[2]) = 2.5e-7 and scales dW by y[2] / (y[2] + 1e-7). The tests take both
# effects out exactly; what remains is the rounding of the printed W to 8 digits (~4e-9).
BOOK_W = [[0.47355232, 0.9977393, 0.84668094], [0.85557411, 0.03563661, 0.69422093]]
X = [0.6, 0.9]
T = [0, 0, 1]
BOOK_SCORES = [1.05414809, 0.63071653, 1.1328074]
BOOK_LOSS = 0.92806853663411326
BOOK_DW = [[0.21924763, 0.14356247, -0.36281009], [0.32887144, 0.2153437, -0.54421514]]
DELTA = 1e-7


def book_params():
    return {"W": jnp.array(BOOK_W, jnp.float64)}


def test_predict_loss_and_numerical_gradient_give_the_books_numbers():
    with jax.enable_x64(True):
        params, x, t = book_params(), jnp.array(X, jnp.float64), jnp.array(T)
        scores = simple_net.predict(params, x)
        assert scores.dtype == jnp.float64
        np.testing.assert_allclose(scores, BOOK_SCORES, rtol=0, atol=1e-8)
        y2 = jax.nn.softmax(scores)[2]

        value = simple_net.loss(params, x, t)
        assert value.dtype == jnp.float64
        assert abs(float(value) - BOOK_LOSS) < 3e-7
        np.testing.assert_allclose(float(value + jnp.log1p(DELTA / y2)), BOOK_LOSS, rtol=0, atol=1e-8)

        dW = numerical_gradient(lambda p: simple_net.loss(p, x, t), params)["W"]
        assert dW.shape == (2, 3) and dW.dtype == jnp.float64
        np.testing.assert_allclose(dW, BOOK_DW, rtol=0, atol=2e-7)
        np.testing.assert_allclose(dW * (y2 + DELTA) / y2, BOOK_DW, rtol=0, atol=1e-8)
        np.testing.assert_array_equal(simple_net.numerical_gradient(params, x, t)["W"], dW)

        exact = jax.grad(simple_net.loss)(params, x, t)["W"]
        np.testing.assert_allclose(dW, exact, rtol=0, atol=1e-9)


def test_the_book_way_with_numpy_float64_gives_numpy_in_float64():
    """The book's own call: W a NumPy float64 array, differentiated in float64, left unchanged."""
    W = np.array(BOOK_W)
    dW = numerical_gradient(lambda w: simple_net.loss({"W": w}, np.array(X), np.array(T)), W)
    assert isinstance(dW, np.ndarray) and dW.dtype == np.float64
    np.testing.assert_allclose(dW, BOOK_DW, rtol=0, atol=2e-7)
    with jax.enable_x64(True):
        exact = jax.grad(simple_net.loss)(book_params(), jnp.array(X), jnp.array(T))["W"]
    np.testing.assert_allclose(dW, exact, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(W, np.array(BOOK_W))


def test_init_example_is_the_books_w_and_init_draws_a_2x3_normal():
    with jax.enable_x64(True):
        np.testing.assert_array_equal(simple_net.init_example()["W"], np.array(BOOK_W))
    params = simple_net.init(jax.random.PRNGKey(0))
    assert set(params) == {"W"} and params["W"].shape == (2, 3) and params["W"].dtype == jnp.float32
    many = simple_net.init(jax.random.PRNGKey(1))["W"]
    assert not np.array_equal(params["W"], many)
    draws = np.asarray(jax.vmap(simple_net.init)(jax.random.split(jax.random.PRNGKey(2), 500))["W"])
    assert abs(draws.mean()) < 0.05 and abs(draws.std() - 1.0) < 0.05


def test_float32_by_default_and_batches_of_samples():
    params = {"W": jnp.array(BOOK_W)}
    x = jnp.array([X, [1.0, -2.0]])
    scores = simple_net.predict(params, x)
    assert scores.dtype == jnp.float32 and scores.shape == (2, 3)
    np.testing.assert_allclose(scores[0], BOOK_SCORES, rtol=1e-6)
    batch = simple_net.loss(params, x, jnp.array([2, 0]))
    each = [simple_net.loss(params, x[i], t) for i, t in enumerate([T, [1, 0, 0]])]
    np.testing.assert_allclose(batch, np.mean(each), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(simple_net.loss)(params, x[0], jnp.array(T)), BOOK_LOSS, rtol=1e-6)


def test_bad_input_names_the_function_and_the_shapes():
    with pytest.raises(KeyError, match=r"simple_net\.predict: params is missing 'W'"):
        simple_net.predict({}, jnp.array(X))
    with pytest.raises(ValueError, match=r"simple_net\.predict: x has 3 features .* 2 rows"):
        simple_net.predict({"W": jnp.array(BOOK_W)}, jnp.ones(3))
