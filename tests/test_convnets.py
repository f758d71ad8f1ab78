"""SimpleConvNet and DeepConvNet: hand-written gradients, reference forward, Model view, book weights."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import record, rel_error

from fnnet.augment import affine_warp, augment, make_augment
from fnnet.layers import ConvImpl
from fnnet.models import deep_convnet, get_model, simple_convnet

SMALL_CP = {"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 1}
# The convolution's paths: the book's im2col, the fast layout whole, and in chunks of one image.
FAST, CHUNKED = ConvImpl("fast"), ConvImpl("fast", chunk_bytes=1)
# The reference and chunked paths' three-way checks run in tests/test_conv.py by default (layer by
# layer); inside whole models they are slow, since compiling a model per path dominates.
IMPLS = [pytest.param(ConvImpl(), id="reference", marks=pytest.mark.slow), pytest.param(FAST, id="fast"),
         pytest.param(CHUNKED, id="chunked", marks=pytest.mark.slow)]
# Compiled once for the module: compiling DeepConvNet dominates these tests' time.
DEEP_PREDICT = jax.jit(deep_convnet.predict, static_argnames="train")


def _batch(shape, n, classes, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.random((n,) + shape, dtype=np.float32)), jnp.asarray(rng.integers(0, classes, n))


# ----------------------------------------------------------------------------- reference forward


def _ref_conv(x, W, b, pad):
    dn = ("NCHW", "OIHW", "NCHW")
    y = jax.lax.conv_general_dilated(x, W, (1, 1), [(pad, pad)] * 2, dimension_numbers=dn)
    return y + b[:, None, None]


def _ref_pool(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def test_simple_convnet_default_shapes_and_reference_forward():
    params = simple_convnet.init(jax.random.PRNGKey(0))
    shapes = {k: v.shape for k, v in params.items()}
    assert shapes == {"W1": (30, 1, 5, 5), "b1": (30,), "W2": (4320, 100), "b2": (100,),
                      "W3": (100, 10), "b3": (10,)}
    assert abs(float(jnp.std(params["W2"])) - 0.01) < 0.001
    x, _ = _batch((1, 28, 28), 3, 10)
    params = jax.tree_util.tree_map(lambda a: a + 0.05, params)  # nonzero biases
    h = _ref_pool(jnp.maximum(_ref_conv(x, params["W1"], params["b1"], 0), 0)).reshape(3, -1)
    ref = jnp.maximum(h @ params["W2"] + params["b2"], 0) @ params["W3"] + params["b3"]
    chex.assert_trees_all_close(simple_convnet.predict(params, x), ref, rtol=1e-4, atol=1e-5)


def test_deep_convnet_shapes_he_init_and_reference_forward_with_dropout_scaling():
    params = deep_convnet.init(jax.random.PRNGKey(0))
    assert all(float(jnp.max(jnp.abs(params[f"b{i}"]))) == 0 for i in range(1, 9))
    assert params["W1"].shape == (16, 1, 3, 3) and params["W6"].shape == (64, 64, 3, 3)
    assert params["W7"].shape == (1024, 50) and params["W8"].shape == (50, 10)
    assert abs(float(jnp.std(params["W7"])) - (2 / 1024) ** 0.5) < 0.003
    assert abs(float(jnp.std(params["W4"])) - (2 / (32 * 9)) ** 0.5) < 0.01
    params = {k: (v + 0.02 if k.startswith("b") else v) for k, v in params.items()}
    x, _ = _batch((1, 28, 28), 2, 10)
    h = x
    for i, pad in enumerate((1, 1, 1, 2, 1, 1), start=1):
        h = jnp.maximum(_ref_conv(h, params[f"W{i}"], params[f"b{i}"], pad), 0)
        if i % 2 == 0:
            h = _ref_pool(h)
    h = jnp.maximum(h.reshape(2, -1) @ params["W7"] + params["b7"], 0) * 0.5  # book: x * (1 - ratio)
    ref = (h @ params["W8"] + params["b8"]) * 0.5
    chex.assert_trees_all_close(DEEP_PREDICT(params, x), ref, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("impl", IMPLS)
def test_simple_convnet_gradient_matches_jax_grad_and_numerical(impl):
    x, t = _batch((1, 6, 8), 2, 4)
    kw = dict(input_dim=(1, 6, 8), conv_param=SMALL_CP, hidden_size=5, output_size=4, weight_init_std=0.3)
    params = simple_convnet.init(jax.random.PRNGKey(1), **kw)
    cfg = dict(conv_param=SMALL_CP, conv_impl=impl)
    g = simple_convnet.gradient(params, x, t, **cfg)
    ref = jax.grad(simple_convnet.loss)(params, x, t, **cfg)
    assert rel_error(g, ref) < 1e-5
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
        x64 = x.astype(jnp.float64)
        g64 = simple_convnet.gradient(p64, x64, t, **cfg)
        num = simple_convnet.numerical_gradient(p64, x64, t, **cfg)
        err_num = rel_error(g64, num)
        assert err_num < 1e-7
    record(rel_error(g, ref), err_num)


@pytest.mark.slow  # stride 2 and padding: layer by layer in tests/test_conv.py (GEOMETRIES)
@pytest.mark.parametrize("impl", IMPLS)
def test_simple_convnet_gradient_with_stride_2_and_pad(impl):
    cp = {"filter_num": 4, "filter_size": 4, "pad": 2, "stride": 2}
    params = simple_convnet.init(jax.random.PRNGKey(2), (2, 10, 10), cp, 6, 3, 0.3)
    x, t = _batch((2, 10, 10), 3, 3)
    g = simple_convnet.gradient(params, x, t, conv_param=cp, conv_impl=impl)
    assert rel_error(g, jax.grad(simple_convnet.loss)(params, x, t, conv_param=cp, conv_impl=impl)) < 1e-5


@pytest.mark.slow
def test_simple_convnet_gradient_default_config():
    params = simple_convnet.init(jax.random.PRNGKey(3))
    x, t = _batch((1, 28, 28), 2, 10)
    g = jax.jit(simple_convnet.gradient)(params, x, t)
    assert rel_error(g, jax.jit(jax.grad(simple_convnet.loss))(params, x, t)) < 1e-5


def _deep_params(seed=0, dtype=jnp.float32):
    """He-initialised params with small random biases: zero biases make many activations exactly
    equal, and at a tie of the max pool the book's backward (first maximum) and jax.grad (split
    evenly) legitimately differ."""
    params = deep_convnet.init(jax.random.PRNGKey(seed))
    ks = jax.random.split(jax.random.PRNGKey(seed + 100), 8)
    params = {k: v + 0.05 * jax.random.normal(ks[int(k[1:]) - 1], v.shape) if k[0] == "b" else v
              for k, v in params.items()}
    return jax.tree_util.tree_map(lambda a: a.astype(dtype), params)


def test_deep_convnet_gradient_matches_jax_grad_with_dropout():
    """Through the Model view (what training runs): loss_and_grad == jax.grad of the loss."""
    m = get_model("deep_convnet", (1, 28, 28), 10)
    params = _deep_params()
    x, t = _batch((1, 28, 28), 2, 10)
    key = jax.random.PRNGKey(7)
    loss_and_grad = jax.jit(m.loss_and_grad)
    value, g, state = loss_and_grad(params, {}, x.reshape(2, -1), t, key)
    assert state == {}
    ref_value, ref = jax.jit(jax.value_and_grad(deep_convnet.loss), static_argnums=3)(params, x, t, True, key)
    assert abs(float(value - ref_value)) < 1e-5
    assert rel_error(g, ref) < 1e-5
    # the same key gives the same masks bit for bit; another key other masks, another gradient
    chex.assert_trees_all_equal(loss_and_grad(params, {}, x, t, key)[1], g)
    g2 = loss_and_grad(params, {}, x, t, jax.random.PRNGKey(8))[1]
    assert rel_error(g, g2) > 1e-3


@pytest.mark.slow  # the chunked path layer by layer: tests/test_conv.py::test_convolution_in_batch_chunks
def test_deep_convnet_gradient_with_batch_chunks():
    """The convolution kernel's chunked path (used for large layers) inside the whole model: the
    same loss and gradient as the unchunked path and the reference path, and jax.grad agrees."""
    params = _deep_params()
    x, t = _batch((1, 28, 28), 4, 10)
    key = jax.random.PRNGKey(7)

    def loss_and_gradient(impl):
        return jax.jit(lambda p: deep_convnet.loss_and_gradient(p, x, t, key, conv_impl=impl))(params)

    ref_value, ref = loss_and_gradient(FAST)
    value, g = loss_and_gradient(CHUNKED)  # one image per chunk
    assert abs(float(value - ref_value)) < 1e-5
    assert rel_error(g, ref) < 1e-5
    book_value, book = loss_and_gradient(ConvImpl())
    assert abs(float(book_value - ref_value)) < 1e-5
    assert rel_error(book, ref) < 1e-5
    ad = jax.jit(jax.grad(lambda p: deep_convnet.loss(p, x, t, True, key, conv_impl=CHUNKED)))(params)
    assert rel_error(g, ad) < 1e-5


@pytest.mark.slow
def test_deep_convnet_gradient_numerical_directional_float64():
    """Float64: <gradient, v> against central differences of the loss along random unit directions
    v (the full numerical gradient has 80,000 entries; a directional check covers all of them)."""
    with jax.enable_x64(True):
        params = _deep_params(dtype=jnp.float64)
        x, t = _batch((1, 28, 28), 2, 10)
        x = x.astype(jnp.float64)
        key = jax.random.PRNGKey(3)
        g = deep_convnet.gradient(params, x, t, key)
        gl = jax.tree_util.tree_leaves(g)
        gnorm = float(jnp.sqrt(sum(jnp.vdot(a, a) for a in gl)))
        loss = jax.jit(lambda p: deep_convnet.loss(p, x, t, True, key))
        leaves, tree = jax.tree_util.tree_flatten(params)
        for seed in range(3):
            ks = jax.random.split(jax.random.PRNGKey(100 + seed), len(leaves))
            v = [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(ks, leaves, strict=True)]
            norm = jnp.sqrt(sum(jnp.vdot(a, a) for a in v))
            v = tree.unflatten([a / norm for a in v])
            up = jax.tree_util.tree_map(lambda a, d: a + 1e-4 * d, params, v)
            down = jax.tree_util.tree_map(lambda a, d: a - 1e-4 * d, params, v)
            num = (loss(up) - loss(down)) / 2e-4
            ana = sum(jnp.vdot(a, b) for a, b in zip(gl, jax.tree_util.tree_leaves(v), strict=True))
            assert abs(float(num - ana)) <= 1e-8 * gnorm, (float(num), float(ana), gnorm)


def test_deep_convnet_train_mode_needs_a_key():
    params = deep_convnet.init(jax.random.PRNGKey(0))
    x, t = _batch((1, 28, 28), 2, 10)
    with pytest.raises(ValueError, match="train=True needs a jax.random key"):
        deep_convnet.predict(params, x, train=True)
    with pytest.raises(ValueError, match="needs a jax.random key"):
        deep_convnet.gradient(params, x, t)
    y = DEEP_PREDICT(params, x, train=True, key=jax.random.PRNGKey(1))
    assert float(jnp.mean(y == 0)) > 0.2  # the output dropout zeroes about half the scores


# ----------------------------------------------------------------------------- Model view, errors


def test_models_through_get_model_train_a_step_on_mnist_and_digits_shapes():
    # (deep_convnet's Model view is exercised by test_deep_convnet_gradient_matches_jax_grad_with_dropout)
    for name, shape in (("simple_convnet", (1, 28, 28)), ("simple_convnet", (1, 8, 8))):
        m = get_model(name, shape, 10)
        assert m.input_shape == shape
        params, state = m.init(jax.random.PRNGKey(0))
        x, t = _batch(shape, 4, 10)
        scores, state = jax.jit(m.apply)(params, state, x.reshape(4, -1))
        assert scores.shape == (4, 10)
        loss, grads, state = jax.jit(m.loss_and_grad)(params, state, x, t, jax.random.PRNGKey(1))
        assert np.isfinite(float(loss))
        chex.assert_trees_all_equal_shapes(grads, params)


def test_model_resolves_the_convolution_once_at_build():
    """`conv_impl` is resolved when the Model is built (a bad one fails there, before any trace);
    every choice trains the same step."""
    with pytest.raises(ValueError, match="resolve: conv_impl must be None, 'fast', 'reference'"):
        get_model("simple_convnet", (1, 8, 8), 10, conv_impl="nhwc")
    with pytest.raises(ValueError, match="resolve: conv_impl must be"):
        get_model("deep_convnet", (1, 28, 28), 10, conv_impl=4 << 20)
    x, t = _batch((1, 8, 8), 4, 10)
    results = []
    for conv_impl in (None, "reference", "fast", CHUNKED):
        m = get_model("simple_convnet", (1, 8, 8), 10, conv_impl=conv_impl, weight_init_std=0.3)
        params, state = m.init(jax.random.PRNGKey(0))
        results.append(jax.jit(m.loss_and_grad)(params, state, x.reshape(4, -1), t)[:2])
    for r in results[1:]:
        chex.assert_trees_all_close(r, results[0], rtol=1e-5, atol=1e-6)


def test_model_geometry_errors_are_clear():
    with pytest.raises(ValueError, match=r"^serial: layer 15 \(Pooling 2x2\) does not tile input "
                       r"\(64, 3, 3\): output height \(3 \+ 2\*0 - 2\) / 2 \+ 1 = 1.5 is not"):
        get_model("deep_convnet", (1, 8, 8), 10)
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\) images, got \(784,\)"):
        get_model("simple_convnet", (784,), 10)
    with pytest.raises(ValueError, match=r"serial: layer 3 \(Pooling 2x2\) does not tile input \(30, 5, 5\)"):
        simple_convnet.init(jax.random.PRNGKey(0), input_dim=(1, 9, 9))
    with pytest.raises(ValueError, match="unknown conv_param keys"):
        simple_convnet.init(jax.random.PRNGKey(0), conv_param={"filters": 3})


def test_bad_inputs_are_clear_errors():
    params = simple_convnet.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"x has 3 channels .* params\['W1'\] expects 1"):
        simple_convnet.predict(params, jnp.zeros((2, 3, 28, 28)))
    with pytest.raises(ValueError, match="x must be 4-D"):
        simple_convnet.predict(params, jnp.zeros((2, 784)))
    with pytest.raises(KeyError, match="missing 'W8'"):
        deep_convnet.predict({k: v for k, v in deep_convnet.init(jax.random.PRNGKey(0)).items() if k != "W8"},
                             jnp.zeros((1, 1, 28, 28)))


def test_accuracy_batches_and_one_hot():
    params = simple_convnet.init(jax.random.PRNGKey(0))
    x, _ = _batch((1, 28, 28), 7, 10)
    t = jnp.argmax(simple_convnet.predict(params, x), axis=1)
    assert simple_convnet.accuracy(params, x, t, batch_size=3) == 1.0
    assert simple_convnet.accuracy(params, x, jax.nn.one_hot((t + 1) % 10, 10), batch_size=3) == 0.0


# ----------------------------------------------------------------------------- augmentation


def test_augment_is_keyed_shape_preserving_and_jittable():
    x, _ = _batch((1, 28, 28), 5, 10)
    a1 = jax.jit(augment)(jax.random.PRNGKey(0), x)
    a2 = jax.jit(augment)(jax.random.PRNGKey(0), x)
    a3 = augment(jax.random.PRNGKey(1), x)
    assert a1.shape == x.shape and a1.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(a1), np.asarray(a2))
    assert float(jnp.max(jnp.abs(a1 - a3))) > 0.01
    np.testing.assert_allclose(np.asarray(make_augment(0.0, 0.0)(jax.random.PRNGKey(0), x)), np.asarray(x),
                               atol=1e-6)


def test_affine_warp_integer_shift_and_quarter_turn():
    x = jnp.asarray(np.random.default_rng(0).random((2, 1, 6, 6), dtype=np.float32))
    shifted = affine_warp(x, jnp.zeros(2), jnp.array([[1.0, 0.0], [0.0, -2.0]]))
    np.testing.assert_allclose(np.asarray(shifted[0, 0, 1:]), np.asarray(x[0, 0, :-1]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(shifted[0, 0, 0]), 0.0)
    np.testing.assert_allclose(np.asarray(shifted[1, 0, :, :-2]), np.asarray(x[1, 0, :, 2:]), atol=1e-6)
    turned = affine_warp(x, jnp.full(2, np.pi / 2), jnp.zeros((2, 2)))
    np.testing.assert_allclose(np.asarray(turned[0, 0]), np.rot90(np.asarray(x[0, 0]), k=-1), atol=1e-5)


# ----------------------------------------------------------------------------- the book's weights


def _book_predict_numpy(P, x):
    """The reference code's SimpleConvNet.predict written with NumPy im2col, in float64."""
    from test_conv import book_conv

    n = x.shape[0]
    h = np.maximum(book_conv(x, P["W1"], P["b1"], 1, 0), 0)
    c, hh, ww = h.shape[1:]
    h = h.reshape(n, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5)).reshape(n, -1)
    h = np.maximum(h @ P["W2"] + P["b2"], 0)
    return h @ P["W3"] + P["b3"]


@pytest.mark.mnist
def test_book_simple_convnet_weights(mnist_dir, book_weights_dir):
    from fnnet.datasets import load_mnist
    from fnnet.io import load_params

    raw = load_params(os.path.join(book_weights_dir, "params.pkl"))
    assert {k: np.shape(v) for k, v in raw.items()}["W2"] == (4320, 100)
    params = {k: jnp.asarray(v, jnp.float32) for k, v in raw.items()}
    _, (x, t) = load_mnist(flatten=False, data_dir=mnist_dir)
    predict = jax.jit(simple_convnet.predict)
    scores = np.concatenate([np.asarray(predict(params, x[i : i + 1000])) for i in range(0, 10000, 1000)])
    p64 = {k: np.asarray(v, np.float64) for k, v in raw.items()}
    ref = _book_predict_numpy(p64, x[:300].astype(np.float64))
    np.testing.assert_allclose(scores[:300], ref, rtol=1e-4, atol=1e-4)
    acc = float(np.mean(scores.argmax(1) == t))
    assert acc > 0.9, f"SimpleConvNet with the book's weights: test accuracy {acc:.4f}"
    for dtype in (jnp.float16, jnp.bfloat16):
        low = {k: v.astype(dtype) for k, v in params.items()}
        pred = np.concatenate([np.asarray(predict(low, jnp.asarray(x[i : i + 1000], dtype))).argmax(1)
                               for i in range(0, 10000, 1000)])
        low_acc = float(np.mean(pred == t))
        assert abs(low_acc - acc) <= 0.001, f"{jnp.dtype(dtype).name}: {low_acc:.4f} vs float32 {acc:.4f}"


@pytest.mark.mnist
@pytest.mark.slow
def test_book_deep_convnet_weights(mnist_dir, book_weights_dir):
    from fnnet.datasets import load_mnist
    from fnnet.io import load_params

    raw = load_params(os.path.join(book_weights_dir, "deep_convnet_params.pkl"))
    params = {k: jnp.asarray(v, jnp.float32) for k, v in raw.items()}
    chex.assert_trees_all_equal_shapes(params, deep_convnet.init(jax.random.PRNGKey(0)))
    _, (x, t) = load_mnist(flatten=False, data_dir=mnist_dir)
    predict = jax.jit(deep_convnet.predict)
    pred = np.concatenate([np.asarray(predict(params, x[i : i + 500])).argmax(1)
                           for i in range(0, 10000, 500)])
    acc = float(np.mean(pred == t))
    assert acc > 0.9, f"DeepConvNet with the book's weights: test accuracy {acc:.4f}"
