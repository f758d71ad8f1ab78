"""im2col / col2im against the book's loops; convolution and pooling checked three ways."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import check_layer

from fnnet.layers import ConvImpl, col2im, conv_fast, convolution, im2col, pooling


def book_im2col(x, fh, fw, stride=1, pad=0):
    """The book's im2col (common/util.py), loop for loop."""
    n, c, h, w = x.shape
    oh = (h + 2 * pad - fh) // stride + 1
    ow = (w + 2 * pad - fw) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((n, c, fh, fw, oh, ow), x.dtype)
    for y in range(fh):
        y_max = y + stride * oh
        for xx in range(fw):
            x_max = xx + stride * ow
            col[:, :, y, xx, :, :] = img[:, :, y:y_max:stride, xx:x_max:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, -1)


def book_col2im(col, shape, fh, fw, stride=1, pad=0):
    n, c, h, w = shape
    oh = (h + 2 * pad - fh) // stride + 1
    ow = (w + 2 * pad - fw) // stride + 1
    col = col.reshape(n, oh, ow, c, fh, fw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1), col.dtype)
    for y in range(fh):
        y_max = y + stride * oh
        for xx in range(fw):
            x_max = xx + stride * ow
            img[:, :, y:y_max:stride, xx:x_max:stride] += col[:, :, y, xx, :, :]
    return img[:, :, pad : h + pad, pad : w + pad]


def book_conv(x, W, b, stride, pad):
    fn_, _, fh, fw = W.shape
    n, _, h, w = x.shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    out = book_im2col(x, fh, fw, stride, pad) @ W.reshape(fn_, -1).T + b
    return out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)


# (N, C, H, W), (FH, FW), stride, pad: all whole output sizes. The first three cover stride 1
# and 2, pad 0, 1 and 2, non-square inputs and filters, several channels and batch 1; the
# three-way check of the others runs with the slow tests.
GEOMETRIES = [
    ((2, 3, 5, 7), (3, 3), 1, 0),
    ((1, 2, 7, 9), (3, 5), 2, 1),
    ((1, 2, 4, 5), (2, 3), 1, 2),
    ((1, 4, 5, 8), (1, 2), 2, 2),
    ((3, 1, 8, 8), (4, 4), 2, 1),
    ((1, 2, 4, 7), (5, 5), 1, 2),
]
SLOW = pytest.mark.slow


# The convolution's paths: the book's im2col / col2im, the fast layout on the whole batch, and the
# fast layout in batch chunks of one image (chunk_bytes=1: every chunk holds at least one image).
IMPLS = {"reference": ConvImpl(), "fast": ConvImpl("fast"), "chunked": ConvImpl("fast", chunk_bytes=1)}
IMPL_PARAMS = [pytest.param(impl, id=name) for name, impl in IMPLS.items()]


def _slow_after(items, k):
    return [pytest.param(*it, marks=SLOW) if i >= k else it for i, it in enumerate(items)]


def _rand(shape, seed=0, scale=0.3):
    """Small values keep float32 outputs near 1, within gradcheck's jit-vs-eager atol."""
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize("shape,f,stride,pad", GEOMETRIES)
def test_im2col_matches_book_loops(shape, f, stride, pad):
    x = _rand(shape)
    col = im2col(x, *f, stride=stride, pad=pad)
    np.testing.assert_array_equal(np.asarray(col), book_im2col(x, *f, stride, pad))
    jit_col = jax.jit(im2col, static_argnums=(1, 2, 3, 4))(x, *f, stride, pad)
    np.testing.assert_array_equal(np.asarray(jit_col), np.asarray(col))


@pytest.mark.parametrize("shape,f,stride,pad", GEOMETRIES)
def test_col2im_matches_book_and_is_the_adjoint(shape, f, stride, pad):
    x = _rand(shape)
    col = _rand(book_im2col(x, *f, stride, pad).shape, seed=1)
    img = col2im(col, shape, *f, stride=stride, pad=pad)
    ref = book_col2im(col, shape, *f, stride, pad)
    np.testing.assert_allclose(np.asarray(img), ref, rtol=1e-6, atol=1e-6)
    # <im2col(x), col> == <x, col2im(col)>
    lhs = float(jnp.vdot(im2col(x, *f, stride=stride, pad=pad), col))
    rhs = float(jnp.vdot(x, img))
    assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs))


@pytest.mark.parametrize("impl", IMPL_PARAMS)
@pytest.mark.parametrize("shape,f,stride,pad", _slow_after(GEOMETRIES, 3))
def test_convolution_three_way(shape, f, stride, pad, impl):
    fn_ = 3
    params = {"W": jnp.asarray(_rand((fn_, shape[1]) + f, 2)), "b": jnp.asarray(_rand((fn_,), 3))}
    x = jnp.asarray(_rand(shape, 4))
    y, cache = convolution.forward(params, x, stride=stride, pad=pad, impl=impl)
    assert (cache.layout, cache.chunk) == (impl.layout, 0 if impl.chunk_bytes is None else 1)
    ref = book_conv(np.asarray(x), np.asarray(params["W"]), np.asarray(params["b"]), stride, pad)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-5)
    err_vjp, err_num = check_layer(convolution, params, x, stride=stride, pad=pad, impl=impl)
    assert err_num < 1e-7


def test_reference_convolution_caches_the_books_im2col():
    """The reference path is the book's: col = im2col(x), out = col @ W.reshape(FN, -1).T + b."""
    params = {"W": jnp.asarray(_rand((3, 2, 3, 5), 2)), "b": jnp.asarray(_rand((3,), 3))}
    x = jnp.asarray(_rand((1, 2, 7, 9), 4))
    y, cache = convolution.forward(params, x, stride=2, pad=1)
    assert cache.layout == "reference"
    np.testing.assert_array_equal(np.asarray(cache.data), np.asarray(im2col(x, 3, 5, stride=2, pad=1)))
    out = cache.data @ params["W"].reshape(3, -1).T + params["b"]
    np.testing.assert_array_equal(np.asarray(y), np.asarray(out.reshape(1, 4, 4, 3).transpose(0, 3, 1, 2)))


@pytest.mark.parametrize("shape,f,stride,pad",
                         [GEOMETRIES[0], pytest.param((4, 2, 7, 9), (3, 5), 2, 1, marks=SLOW)])
def test_convolution_in_batch_chunks(shape, f, stride, pad):
    """Large layers run the batch in chunks (lax.map / lax.scan) and rebuild colT in backward:
    forced here with tiny limits, the chunked kernel gives the unchunked and the reference results
    and passes the same three-way check."""
    params = {"W": jnp.asarray(_rand((3, shape[1]) + f, 2)), "b": jnp.asarray(_rand((3,), 3))}
    x = jnp.asarray(_rand(shape, 4))
    y, cache = convolution.forward(params, x, stride=stride, pad=pad, impl=IMPLS["fast"])
    dy = jnp.asarray(_rand(y.shape, 5))
    dx, grads = convolution.backward(cache, dy)
    assert cache.chunk == 0
    y0, cache0 = convolution.forward(params, x, stride=stride, pad=pad)
    chex.assert_trees_all_close((y0, *convolution.backward(cache0, dy)), (y, dx, grads), rtol=1e-5, atol=1e-6)
    y2, cache2 = convolution.forward(params, x, stride=stride, pad=pad, impl=IMPLS["chunked"])
    assert cache2.chunk == 1 and cache2.data.shape == x.shape
    dx2, grads2 = convolution.backward(cache2, dy)
    chex.assert_trees_all_close((y2, dx2, grads2), (y, dx, grads), rtol=1e-5, atol=1e-6)
    check_layer(convolution, params, x, stride=stride, pad=pad, impl=IMPLS["chunked"])
    two = ConvImpl("fast", chunk_bytes=2 * cache.data.nbytes // shape[0])
    assert convolution.forward(params, x, stride=stride, pad=pad, impl=two)[1].chunk == 2


def test_resolve_chunks_only_on_the_chunked_platforms():
    """Batch chunks are a CPU-cache measure: `resolve` (called by a model's builder) gives the CPU
    chunks of 4 MiB for matrices over 8 MiB, and any other backend (a GPU) the whole batch at once."""
    assert conv_fast.CHUNKED_PLATFORMS == ("cpu",)  # the library's own setting
    cpu, gpu = conv_fast.resolve(backend="cpu"), conv_fast.resolve(backend="gpu")
    assert cpu == ConvImpl("fast", chunk_bytes=4 << 20, unchunked_bytes=8 << 20) and gpu == ConvImpl("fast")
    assert conv_fast.resolve() == (cpu if jax.default_backend() == "cpu" else gpu)
    assert conv_fast.resolve("fast", backend="cpu") == cpu
    assert conv_fast.resolve("reference") == ConvImpl()
    assert conv_fast.resolve(IMPLS["chunked"]) == IMPLS["chunked"]
    # DeepConvNet's conv2 at batch 100 (a 45 MB matrix) in chunks of 5 images; SimpleConvNet's conv
    # (5.8 MB) whole; on the GPU every layer whole.
    conv2, simple = 100 * 144 * 28 * 28 * 4, 100 * 25 * 24 * 24 * 4
    assert conv_fast.chunk_size(cpu, 100, conv2) == 5 and conv_fast.chunk_size(cpu, 100, simple) == 0
    assert conv_fast.chunk_size(gpu, 100, conv2) == 0
    params = {"W": jnp.asarray(_rand((3, 2, 3, 3), 2)), "b": jnp.asarray(_rand((3,), 3))}
    x = jnp.asarray(_rand((4, 2, 7, 7), 4))
    tiny = dataclasses.replace(cpu, chunk_bytes=1, unchunked_bytes=0)
    assert convolution.forward(params, x, impl=tiny)[1].chunk == 1
    assert convolution.forward(params, x, impl=gpu)[1].chunk == 0


@pytest.mark.parametrize("impl", IMPL_PARAMS)
def test_convolution_matches_lax_conv(impl):
    x = jnp.asarray(_rand((2, 3, 9, 7)))
    W = jnp.asarray(_rand((5, 3, 3, 3), 1))
    y, _ = convolution.forward({"W": W, "b": jnp.zeros(5)}, x, stride=2, pad=1, impl=impl)
    dn = ("NCHW", "OIHW", "NCHW")
    ref = jax.lax.conv_general_dilated(x, W, (2, 2), [(1, 1), (1, 1)], dimension_numbers=dn)
    np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-5, atol=1e-5)


POOLS = [
    ((2, 3, 4, 6), (2, 2), 2, 0),
    ((1, 2, 4, 5), (2, 3), 1, 1),
    ((1, 3, 5, 6), (3, 2), 2, 1),
    ((1, 2, 7, 9), (3, 3), 2, 0),
    ((1, 1, 6, 7), (2, 2), 1, 2),
]
POOL_CASES = [(*g, m) for g in POOLS[:2] for m in ("max", "avg")]
POOL_CASES += [pytest.param(*g, m, marks=SLOW) for g in POOLS[2:] for m in ("max", "avg")]


def _book_pool(x, ph, pw, stride, pad, mode):
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad - ph) // stride + 1, (w + 2 * pad - pw) // stride + 1
    col = book_im2col(x, ph, pw, stride, pad).reshape(-1, ph * pw)
    out = np.max(col, axis=1) if mode == "max" else np.mean(col, axis=1)
    return out.reshape(n, oh, ow, c).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("shape,p,stride,pad,mode", POOL_CASES)
def test_pooling_three_way(shape, p, stride, pad, mode):
    # distinct values, so that the max is unique and numerical differentiation is well defined
    x = np.random.default_rng(5).permutation(np.prod(shape)).reshape(shape).astype(np.float32) / 7.0
    x = jnp.asarray(x)
    y, _ = pooling.forward({}, x, *p, stride=stride, pad=pad, mode=mode)
    np.testing.assert_allclose(np.asarray(y), _book_pool(np.asarray(x), *p, stride, pad, mode), rtol=1e-6)
    kw = dict(pool_h=p[0], pool_w=p[1], stride=stride, pad=pad, mode=mode)
    err_vjp, err_num = check_layer(pooling, {}, x, **kw)
    assert err_num < 1e-7


def test_max_pool_backward_routes_to_first_argmax_like_the_book():
    x = jnp.ones((1, 1, 2, 2))  # a tie: the book's np.argmax picks the first element
    y, cache = pooling.forward({}, x, 2, 2, stride=2)
    dx, grads = pooling.backward(cache, jnp.full((1, 1, 1, 1), 3.0))
    assert grads == {}
    np.testing.assert_array_equal(np.asarray(dx), [[[[3.0, 0.0], [0.0, 0.0]]]])


def test_caches_cross_jit_and_hold_only_arrays():
    params = {"W": jnp.asarray(_rand((2, 1, 4, 4))), "b": jnp.zeros(2)}
    x = jnp.asarray(_rand((1, 1, 6, 6), 1))
    convs = [(convolution, dict(stride=2, pad=1, impl=impl)) for impl in IMPLS.values()]
    for layer, kw in convs + [(pooling, dict(pool_h=2, pool_w=2, stride=2))]:
        p = params if layer is convolution else {}
        y, cache = jax.jit(lambda p, x, layer=layer, kw=kw: layer.forward(p, x, **kw))(p, x)
        assert all(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(cache))
        dx, _ = jax.jit(layer.backward)(cache, jnp.ones_like(y))
        dx_eager, _ = layer.backward(layer.forward(p, x, **kw)[1], jnp.ones_like(y))
        chex.assert_trees_all_close(dx, dx_eager, rtol=1e-6)


@pytest.mark.parametrize("impl", IMPL_PARAMS)
def test_batch_one_and_float64(impl):
    with jax.enable_x64(True):
        x = jnp.asarray(_rand((1, 2, 5, 4)), jnp.float64)
        W = jnp.asarray(_rand((3, 2, 2, 3), 1), jnp.float64)
        params = {"W": W, "b": jnp.zeros(3, jnp.float64)}
        y, cache = convolution.forward(params, x, stride=1, pad=1, impl=impl)
        assert y.shape == (1, 3, 6, 4) and y.dtype == jnp.float64
        dx, g = convolution.backward(cache, jnp.ones_like(y))
        assert dx.dtype == jnp.float64 and g["W"].shape == W.shape


def test_output_size_not_whole_is_a_clear_error():
    x = jnp.zeros((1, 1, 7, 8))
    params = {"W": jnp.zeros((2, 1, 3, 3)), "b": jnp.zeros(2)}
    with pytest.raises(ValueError, match=r"convolution.forward: output width \(8 \+ 2\*0 - 3\) / 2 \+ 1"):
        convolution.forward(params, x, stride=2)
    with pytest.raises(ValueError, match=r"pooling.forward: output height .* not a whole number"):
        pooling.forward({}, x, 2, 2, stride=2)
    with pytest.raises(ValueError, match=r"im2col: filter height 9 is larger"):
        im2col(x, 9, 3)


def test_bad_arguments_are_clear_errors():
    x = jnp.zeros((1, 2, 6, 6))
    params = {"W": jnp.zeros((4, 3, 3, 3)), "b": jnp.zeros(4)}
    with pytest.raises(ValueError, match=r"x has 2 channels .* params\['W'\] expects 3"):
        convolution.forward(params, x)
    with pytest.raises(ValueError, match=r"x must be 4-D"):
        convolution.forward(params, jnp.zeros((2, 6, 6)))
    with pytest.raises(KeyError, match="missing 'b'"):
        convolution.forward({"W": params["W"]}, x)
    with pytest.raises(TypeError, match="stride must be a Python int"):
        convolution.forward({"W": jnp.zeros((4, 2, 3, 3)), "b": jnp.zeros(4)}, x, stride=jnp.asarray(1.5))
    with pytest.raises(ValueError, match="mode must be 'max' or 'avg'"):
        pooling.forward({}, x, 2, 2, stride=2, mode="min")
    with pytest.raises(ValueError, match="col must have shape"):
        col2im(jnp.zeros((3, 3)), (1, 2, 6, 6), 3, 3)
    with pytest.raises(TypeError, match="convolution.forward: impl must be a ConvImpl"):
        convolution.forward({"W": jnp.zeros((4, 2, 3, 3)), "b": jnp.zeros(4)}, x, impl="fast")
    with pytest.raises(ValueError, match="ConvImpl: layout must be one of"):
        ConvImpl("nhwc")
    with pytest.raises(ValueError, match="ConvImpl: chunk_bytes=1 needs layout='fast'"):
        ConvImpl(chunk_bytes=1)
    with pytest.raises(ValueError, match="ConvImpl: chunk_bytes must be >= 0"):
        ConvImpl("fast", chunk_bytes=-1)
    with pytest.raises(ValueError, match="resolve: conv_impl must be None, 'fast', 'reference'"):
        conv_fast.resolve("nhwc")
