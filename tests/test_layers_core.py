"""Core layers of chapter 5: backward == jax.vjp == numerical gradient, jit == eager."""

import chex
import jax
import jax.numpy as jnp
import pytest
from gradcheck import check_layer

from fnnet.layers import Layer, add, affine, mul, relu, sigmoid, softmax_with_loss

KEY = jax.random.PRNGKey(0)


def normal(i, shape, scale=1.0):
    return scale * jax.random.normal(jax.random.fold_in(KEY, i), shape)


def away_from_zero(i, shape):
    """Values with |x| in [0.1, 2]: central differences never straddle relu's kink."""
    k1, k2 = jax.random.split(jax.random.fold_in(KEY, i))
    sign = jnp.where(jax.random.bernoulli(k1, 0.5, shape), 1.0, -1.0)
    return sign * jax.random.uniform(k2, shape, minval=0.1, maxval=2.0)


def assert_cache_is_arrays(cache):
    for leaf in jax.tree_util.tree_leaves(cache):
        assert isinstance(leaf, jax.Array), f"cache leaf of type {type(leaf).__name__}"


@pytest.mark.parametrize("shape", [(), (1, 3), (2, 3, 4)])
@pytest.mark.parametrize("layer", [mul, add], ids=["mul", "add"])
def test_two_input_layers(layer, shape):
    x, y = normal(1, shape), normal(2, shape)
    check_layer(layer, {}, x, y)
    out, cache = layer.forward({}, x, y)
    assert_cache_is_arrays(cache)
    chex.assert_trees_all_close(out, x * y if layer is mul else x + y)


@pytest.mark.parametrize("shape", [(1, 5), (4, 7), (2, 3, 4, 5)])
def test_relu(shape):
    x = away_from_zero(3, shape)
    check_layer(relu, {}, x)
    y, cache = relu.forward({}, x)
    assert_cache_is_arrays(cache)
    chex.assert_trees_all_equal(y, jnp.maximum(x, 0))
    dx, grads = relu.backward(cache, jnp.ones_like(x))
    chex.assert_trees_all_equal(dx, (x > 0).astype(x.dtype))
    assert grads == {}


@pytest.mark.parametrize("shape", [(1, 5), (4, 7), (2, 3, 4)])
def test_sigmoid(shape):
    x = normal(4, shape, 3.0)
    check_layer(sigmoid, {}, x)
    y, cache = sigmoid.forward({}, x)
    assert_cache_is_arrays(cache)
    chex.assert_trees_all_close(y, 1 / (1 + jnp.exp(-x)), rtol=1e-6)


def affine_params(i, n_in, n_out):
    return {"W": normal(10 + i, (n_in, n_out)), "b": normal(20 + i, (n_out,))}


@pytest.mark.parametrize("x_shape,n_out", [((1, 6), 3), ((5, 6), 4), ((2, 3, 4, 5), 7), ((6,), 2)])
def test_affine(x_shape, n_out):
    n_in = 1
    for d in (x_shape[1:] if len(x_shape) > 1 else x_shape):
        n_in *= d
    params = affine_params(len(x_shape), n_in, n_out)
    x = normal(5, x_shape)
    check_layer(affine, params, x)
    y, cache = affine.forward(params, x)
    assert_cache_is_arrays(cache)
    batch_shape = (x_shape[0],) if len(x_shape) > 1 else ()
    chex.assert_shape(y, batch_shape + (n_out,))
    ref = x.reshape(*batch_shape, -1) @ params["W"] + params["b"]
    chex.assert_trees_all_close(y, ref, rtol=1e-5, atol=1e-5)
    dx, grads = affine.backward(cache, jnp.ones_like(y))
    chex.assert_shape(dx, x_shape)
    chex.assert_trees_all_equal_shapes(grads, params)


@pytest.mark.parametrize("n,c", [(1, 4), (5, 10), (3, 2)])
def test_softmax_with_loss_labels(n, c):
    x = normal(6, (n, c), 2.0)
    t = jax.random.randint(jax.random.fold_in(KEY, 7), (n,), 0, c)
    check_layer(softmax_with_loss, {}, x, t)
    loss, cache = softmax_with_loss.forward({}, x, t)
    assert_cache_is_arrays(cache)
    chex.assert_shape(loss, ())
    ref = -jnp.mean(jax.nn.log_softmax(x)[jnp.arange(n), t])
    chex.assert_trees_all_close(loss, ref, rtol=1e-5)


@pytest.mark.parametrize("n,c", [(1, 4), (5, 10)])
def test_softmax_with_loss_one_hot(n, c):
    x = normal(8, (n, c), 2.0)
    t = jax.random.randint(jax.random.fold_in(KEY, 9), (n,), 0, c)
    one_hot = jax.nn.one_hot(t, c)
    check_layer(softmax_with_loss, {}, x, one_hot, nondiff=(1,))
    loss_oh, cache_oh = softmax_with_loss.forward({}, x, one_hot)
    loss_lb, cache_lb = softmax_with_loss.forward({}, x, t)
    chex.assert_trees_all_equal(loss_oh, loss_lb)
    dx_oh, _ = softmax_with_loss.backward(cache_oh, 1.0)
    chex.assert_trees_all_equal(dx_oh, softmax_with_loss.backward(cache_lb, 1.0)[0])
    grad_x = jax.grad(lambda z: softmax_with_loss.forward({}, z, one_hot)[0])(x)
    chex.assert_trees_all_close(dx_oh, grad_x, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(dx_oh, (jax.nn.softmax(x) - one_hot) / n, rtol=1e-5, atol=1e-7)


def test_softmax_with_loss_scalar_label_for_batch_of_one():
    x = normal(10, (1, 3))
    loss, _ = softmax_with_loss.forward({}, x, jnp.array(2))
    chex.assert_trees_all_equal(loss, softmax_with_loss.forward({}, x, jnp.array([2]))[0])


@pytest.mark.parametrize(
    "layer,params,inputs",
    [
        (relu, {}, lambda: (away_from_zero(11, (3, 4)),)),
        (sigmoid, {}, lambda: (normal(12, (3, 4)),)),
        (affine, affine_params(1, 12, 5), lambda: (normal(13, (2, 3, 4)),)),
        (mul, {}, lambda: (normal(14, (3,)), normal(15, (3,)))),
        (softmax_with_loss, {}, lambda: (normal(16, (4, 6)), jnp.array([0, 5, 2, 2]))),
    ],
    ids=["relu", "sigmoid", "affine", "mul", "softmax_with_loss"],
)
def test_jit_equals_eager_exactly(layer, params, inputs):
    xs = inputs()
    y, cache = layer.forward(params, *xs)
    dy = jnp.ones_like(y) * 0.5
    eager = (y, layer.backward(cache, dy))
    jy, jcache = jax.jit(layer.forward)(params, *xs)
    jitted = (jy, jax.jit(layer.backward)(jcache, dy))
    chex.assert_trees_all_close(jitted, eager, rtol=2e-7, atol=1e-7)


def test_check_layer_catches_a_wrong_backward():
    broken = Layer(relu.forward, lambda mask, dy: (dy, {}))
    with pytest.raises(AssertionError, match="jax.vjp"):
        check_layer(broken, {}, away_from_zero(17, (3, 4)))
    off = Layer(sigmoid.forward, lambda out, dy: (dy * out * (1 - out) * (1 + 1e-6), {}))
    with pytest.raises(AssertionError, match="numerical"):
        check_layer(off, {}, normal(18, (3, 4)))


def test_computational_graph_apples_and_oranges():
    """2 apples at 100, 3 oranges at 150, tax 1.1 (chapter 5 figure 5-17)."""
    apple, apple_num, orange, orange_num, tax = 100.0, 2.0, 150.0, 3.0, 1.1
    apple_price, c_apple = mul.forward({}, apple, apple_num)
    orange_price, c_orange = mul.forward({}, orange, orange_num)
    all_price, c_add = add.forward({}, apple_price, orange_price)
    price, c_tax = mul.forward({}, all_price, tax)

    (d_all_price, d_tax), _ = mul.backward(c_tax, 1.0)
    (d_apple_price, d_orange_price), _ = add.backward(c_add, d_all_price)
    (d_orange, d_orange_num), _ = mul.backward(c_orange, d_orange_price)
    (d_apple, d_apple_num), _ = mul.backward(c_apple, d_apple_price)

    got = {"price": price, "d_apple": d_apple, "d_apple_num": d_apple_num, "d_orange": d_orange,
           "d_orange_num": d_orange_num, "d_tax": d_tax}
    want = {"price": 715.0, "d_apple": 2.2, "d_apple_num": 110.0, "d_orange": 3.3,
            "d_orange_num": 165.0, "d_tax": 650.0}
    chex.assert_trees_all_close(got, want, rtol=1e-6)

    def total(a, an, o, on, t):
        return (a * an + o * on) * t

    auto = jax.grad(total, argnums=(0, 1, 2, 3, 4))(apple, apple_num, orange, orange_num, tax)
    chex.assert_trees_all_close((d_apple, d_apple_num, d_orange, d_orange_num, d_tax), auto, rtol=1e-6)


def test_bad_input_names_function_argument_and_shapes():
    params = affine_params(0, 6, 3)
    with pytest.raises(ValueError, match=r"affine\.forward: x has 5 features per sample \(shape \(2, 5\)\) "
                                         r"but params\['W'\] has 6 rows \(shape \(6, 3\)\)"):
        affine.forward(params, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"affine\.forward: params\['b'\] must have shape \(3,\).*"
                                         r"got shape \(4,\)"):
        affine.forward({"W": params["W"], "b": jnp.zeros(4)}, jnp.ones((2, 6)))
    with pytest.raises(KeyError, match=r"affine\.forward: params is missing 'b'"):
        affine.forward({"W": params["W"]}, jnp.ones((2, 6)))
    with pytest.raises(ValueError, match=r"softmax_with_loss\.forward: t has labels in \[0, 3\], "
                                         r"outside \[0, 3\)"):
        softmax_with_loss.forward({}, jnp.ones((2, 3)), jnp.array([0, 3]))
    with pytest.raises(ValueError, match=r"softmax_with_loss\.forward: x must be 2-D, got shape \(3,\)"):
        softmax_with_loss.forward({}, jnp.ones(3), jnp.array(0))
    with pytest.raises(ValueError, match=r"mul\.forward: x shape \(2,\) and y shape \(3,\) differ"):
        mul.forward({}, jnp.ones(2), jnp.ones(3))
    with pytest.raises(ValueError, match=r"affine\.forward: x has 5 features"):
        jax.jit(affine.forward)(params, jnp.ones((2, 5)))
