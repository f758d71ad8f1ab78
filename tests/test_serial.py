"""Your own network: the layer constructors, `serial`, `sequential`, and the built-in models as stacks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from doc_examples import DOCS, printed_and_shown

from fnnet.layers import (
    Affine,
    BatchNormalization,
    Block,
    Convolution,
    Dropout,
    Flatten,
    Pooling,
    Relu,
    Sigmoid,
    affine,
    batch_norm,
    convolution,
    dropout,
    pooling,
    relu,
    serial,
    softmax_with_loss,
)
from fnnet.layers.normalization import init_batch_norm
from fnnet.models import deep_convnet, multi_layer_net, sequential, simple_convnet, two_layer_net

KEY = jax.random.PRNGKey(0)


def lenet5():
    return serial(Convolution(6, 5, pad=2), Relu(), Pooling(2), Convolution(16, 5), Relu(), Pooling(2),
                  Affine(120), Relu(), Affine(84), Relu(), Affine(10))


def _x(shape, n=4, seed=1):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, *shape))


def test_lenet5_shapes_and_book_names():
    out, params, state = lenet5().init(KEY, (1, 28, 28))
    assert out == (10,) and state == {}
    chex.assert_trees_all_equal_shapes(params, {
        "W1": jnp.zeros((6, 1, 5, 5)), "b1": jnp.zeros(6),
        "W2": jnp.zeros((16, 6, 5, 5)), "b2": jnp.zeros(16),
        "W3": jnp.zeros((400, 120)), "b3": jnp.zeros(120), "W4": jnp.zeros((120, 84)), "b4": jnp.zeros(84),
        "W5": jnp.zeros((84, 10)), "b5": jnp.zeros(10)})


def test_batchnorm_and_weights_are_numbered_separately():
    net = serial(Affine(8), BatchNormalization(), Relu(), Affine(6), BatchNormalization(), Sigmoid(),
                 Affine(3))
    _, params, state = net.init(KEY, (5,))
    assert sorted(params) == sorted(["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3",
                                     "b3"])
    assert sorted(state) == ["running_mean1", "running_mean2", "running_var1", "running_var2"]
    assert params["gamma2"].shape == (6,)


def test_serial_inside_serial_is_the_same_network():
    inner = serial(Convolution(4, 3, pad=1), BatchNormalization(), Relu(), Pooling(2))
    nested = serial(inner, serial(Flatten(), Affine(7)), Dropout(0.3), Affine(3))
    flat = serial(Convolution(4, 3, pad=1), BatchNormalization(), Relu(), Pooling(2), Flatten(), Affine(7),
                  Dropout(0.3), Affine(3))
    assert isinstance(nested, Block) and len(nested.layers) == 8
    x, key = _x((2, 6, 6)), jax.random.PRNGKey(3)
    a, b = nested.init(KEY, (2, 6, 6)), flat.init(KEY, (2, 6, 6))
    chex.assert_trees_all_equal(a, b)
    _, params, state = a
    ya, ca, sa = nested.forward(params, x, state, train=True, key=key)
    yb, cb, sb = flat.forward(params, x, state, train=True, key=key)
    chex.assert_trees_all_equal((ya, sa), (yb, sb))
    chex.assert_trees_all_equal(nested.backward(ca, jnp.ones_like(ya)), flat.backward(cb, jnp.ones_like(yb)))


def test_backward_is_the_reversed_loop_and_equals_jax_grad():
    net = serial(Convolution(3, 3, pad=1), BatchNormalization(), Relu(), Pooling(2), Dropout(0.2), Affine(5))
    _, params, state = net.init(KEY, (2, 6, 6))
    x, key = _x((2, 6, 6)), jax.random.PRNGKey(9)
    y, cache, _ = net.forward(params, x, state, train=True, key=key)
    dy = jax.random.normal(jax.random.PRNGKey(4), y.shape)
    dx, grads = net.backward(cache, dy)
    ref_dp, ref_dx = jax.grad(lambda p, x: jnp.sum(net.forward(p, x, state, train=True, key=key)[0] * dy),
                              argnums=(0, 1))(params, x)
    chex.assert_trees_all_close((dx, grads), (ref_dx, ref_dp), rtol=1e-4, atol=1e-5)


def test_shape_errors_name_the_layer_position_and_shapes_at_build():
    net = serial(Convolution(6, 5), Relu(), Pooling(2), Convolution(16, 5, pad=1), Pooling(2), Affine(10))
    bad = serial(Convolution(6, 5), Relu(), Pooling(2), Convolution(16, 8), Pooling(2), Affine(10))
    with pytest.raises(ValueError, match=r"^serial: layer 5 \(Pooling 2x2\) does not tile input \(16, 5, 5"):
        bad.model((1, 28, 28))
    assert net.init(KEY, (1, 28, 28))[0] == (10,)
    with pytest.raises(ValueError, match=r"serial: layer 1 \(Convolution 6x5x5\) needs \(C, H, W\) images "
                       r"but gets input \(784,\)"):
        net.init(KEY, (784,))
    with pytest.raises(ValueError, match=r"serial: layer 4 \(Convolution 16x5x5\) does not fit input "
                       r"\(6, 2, 2\)"):
        serial(Convolution(6, 5), Pooling(2), Pooling(2), Convolution(16, 5)).init(KEY, (1, 12, 12))
    with pytest.raises(ValueError, match=r"sequential: .* gives output \(6, 24, 24\) per sample"):
        sequential(serial(Convolution(6, 5)), (1, 28, 28))
    with pytest.raises(TypeError, match=r"serial: layer 2 is a function, not a layer Block; "
                       r"call it: Relu\(\)"):
        serial(Affine(3), Relu)


def test_batchnorm_per_channel_by_default_and_per_position_by_axis():
    x = _x((3, 4, 5), n=6) * 2 + 1
    for axis, stat_axes, d in ((1, (0, 2, 3), 3), ((1, 2, 3), (0,), 60)):
        bn = BatchNormalization(axis=axis)
        _, params, state = bn.init(KEY, (3, 4, 5))
        assert params["gamma"].shape == (d,)
        y, _, new_state = bn.forward(params, x, state, train=True)
        mean, var = x.mean(axis=stat_axes, keepdims=True), x.var(axis=stat_axes, keepdims=True)
        np.testing.assert_allclose(y, (x - mean) / jnp.sqrt(var + 1e-6), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(new_state["running_mean"], 0.1 * mean.reshape(-1), rtol=1e-5, atol=1e-6)
    # flat input: per feature, exactly the pure batch_norm layer
    x2 = _x((7,), n=5)
    params, state = init_batch_norm(7)
    chex.assert_trees_all_equal(BatchNormalization().forward(params, x2, state, train=True)[::2],
                                batch_norm.forward(params, x2, state, train=True)[::2])


def test_dropout_keys_are_split_per_dropout_layer():
    net = serial(Dropout(0.5), Relu(), Dropout(0.5))
    x = jnp.abs(_x((1000,), n=2)) + 1
    key = jax.random.PRNGKey(7)
    y, cache, _ = net.forward({}, x, train=True, key=key)
    k1, k2 = jax.random.split(key)
    m1 = jax.random.uniform(k1, x.shape) > 0.5
    m2 = jax.random.uniform(k2, x.shape) > 0.5
    np.testing.assert_array_equal(y, jnp.where(m1 & m2, x, 0))
    assert not bool(jnp.all(m1 == m2))
    chex.assert_trees_all_equal(net.forward({}, x, train=True, key=key)[0], y)
    np.testing.assert_allclose(net.forward({}, x)[0], x * 0.25, rtol=1e-6)
    with pytest.raises(ValueError, match="serial.forward: training a network with Dropout needs a PRNG key"):
        net.forward({}, x, train=True)


# ------------------------------------------------------------------ the built-in models are the same nets


def _chain(params, x, t, steps, state=None):
    """The book's hand-written chain: forward through (layer, params, kwargs) steps, SoftmaxWithLoss,
    then backward in reverse; the reference the serial definitions must equal."""
    caches, h = [], x
    for layer, names, kw in steps:
        p = {k: params[v] for k, v in names.items()}
        out = layer.forward(p, h, **kw)
        h, c = out[0], out[1]
        caches.append(c)
    loss, c = softmax_with_loss.forward({}, h, t)
    d, _ = softmax_with_loss.backward(c, 1.0)
    grads = {}
    for (layer, names, _), c in zip(reversed(steps), reversed(caches), strict=True):
        d, g = layer.backward(c, d)
        grads.update({v: g[k] for k, v in names.items()})
    return loss, grads


def _wb(i):
    return {"W": f"W{i}", "b": f"b{i}"}


def _references(x, t, key):
    k1, k2 = jax.random.split(key)
    deep = []
    for i, pad in enumerate(deep_convnet.PADS, start=1):
        deep += [(convolution, _wb(i), {"pad": pad}), (relu, {}, {})]
        if i in deep_convnet.POOL_AFTER:
            deep.append((pooling, {}, {"pool_h": 2, "pool_w": 2, "stride": 2}))
    deep += [(affine, _wb(7), {}), (relu, {}, {}), (dropout, {}, {"key": k1}), (affine, _wb(8), {}),
             (dropout, {}, {"key": k2})]
    pool = (pooling, {}, {"pool_h": 2, "pool_w": 2, "stride": 2})
    simple = [(convolution, _wb(1), {}), (relu, {}, {}), pool, (affine, _wb(2), {}), (relu, {}, {}),
              (affine, _wb(3), {})]
    mlp = [(affine, _wb(1), {}), (relu, {}, {}), (affine, _wb(2), {}), (relu, {}, {}), (affine, _wb(3), {})]
    p2 = two_layer_net.init(KEY, 784, 20, 10, 0.1, x.dtype)
    pm, _ = multi_layer_net.init(KEY, 784, [16, 12], 10, dtype=x.dtype)
    ps = simple_convnet.init(KEY, conv_param={"filter_num": 5}, hidden_size=12, dtype=x.dtype)
    pd = deep_convnet.init(KEY, hidden_size=16, dtype=x.dtype)
    flat = x.reshape(len(x), -1)
    return [
        ("two_layer_net", two_layer_net.loss_and_gradient(p2, flat, t), _chain(p2, flat, t, mlp[:3])),
        ("multi_layer_net", multi_layer_net.loss_and_gradient(pm, {}, flat, t)[:2], _chain(pm, flat, t, mlp)),
        ("simple_convnet", simple_convnet.loss_and_gradient(ps, x, t), _chain(ps, x, t, simple)),
        ("deep_convnet", deep_convnet.loss_and_gradient(pd, x, t, key), _chain(pd, x, t, deep)),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_builtin_models_equal_the_books_hand_chains(dtype):
    """float32 within 1e-6 (relative), float64 bit for bit: the order of operations is unchanged."""
    with jax.enable_x64(dtype == "float64"):
        x = jax.random.uniform(jax.random.PRNGKey(2), (6, 1, 28, 28), jnp.dtype(dtype))
        t = jnp.arange(6) % 10
        for name, got, ref in _references(x, t, jax.random.PRNGKey(5)):
            if dtype == "float64":
                chex.assert_trees_all_equal(got, ref, custom_message=name)
            else:
                chex.assert_trees_all_close(got, ref, rtol=1e-6, atol=0, custom_message=name)


@pytest.mark.pages
def test_the_docs_page_runs_and_prints_what_it_shows():
    for printed, shown in printed_and_shown(DOCS / "your_own_network.md", 7):
        assert printed == shown
