"""Trained networks as digit classifiers: `load_classifier(path)` for `fnnet predict`, `fnnet draw`
and your own scripts.

    clf = load_classifier("runs/simple_convnet-mnist/params.npz")    # model from its metrics.json
    clf = load_classifier("params.pkl", model="simple_convnet")      # the book's trained weights
    probs = clf.probabilities(prepare_digit("seven.png")[None])      # (1, 10)

A run's params.npz (or a .ckpt checkpoint) is rebuilt from the metrics.json that `fnnet train`
wrote beside it: the model, its configuration and input shape. The book's pickles are read
through fnnet's restricted unpickler: sample_weight.pkl is chapter 3's sigmoid 784-50-100-10
network, params.pkl SimpleConvNet and deep_convnet_params.pkl DeepConvNet (recognised from
their arrays when `model` is not given). Inputs are 28x28 images (N, 1, 28, 28) float32 in
[0, 1], flattened for networks that take (784,); a network trained on other inputs (the 8x8
digits) is refused when it loads.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from fnnet._docs import document_fields

__all__ = ["Classifier", "load_classifier", "read_run_info", "MODELS", "IMAGE_SHAPE", "METRICS_MAX_BYTES"]

IMAGE_SHAPE = (1, 28, 28)
CLASSES = 10
METRICS_MAX_BYTES = 256 * 2**20  # metrics.json: settings and about 20 bytes per training step
CONV_MODELS = ("simple_convnet", "deep_convnet")
MODELS = ("two_layer_net", "multi_layer_net", "simple_convnet", "deep_convnet", "three_layer_net")
BATCH = 500  # images per forward pass: at most two compiled shapes for any number of images
FN = "load_classifier"


class Classifier(NamedTuple):
    """A trained network that classifies 28x28 digits (see `load_classifier`)."""

    name: str
    probabilities: Callable
    feature_maps: Callable


document_fields(
    Classifier,
    name="What model, from which file: 'simple_convnet (runs/sc/params.npz)'.",
    probabilities="probabilities(images (N, 1, 28, 28) float32 in [0, 1]) -> np.ndarray (N, 10), "
                  "each row summing to 1.",
    feature_maps="feature_maps(images) -> the first convolution's output (N, FN, OH, OW) before its "
                 "activation, or None for a network without convolutions.",
)


def read_run_info(params_path, *, fn: str = "read_run_info", warn: Callable | None = None):
    """(the run description, the recorded input shape or None) from the metrics.json beside a
    params file, as `fnnet train` writes it; ({}, None) when there is none. A damaged one is
    ignored, saying so through `warn("ignoring PATH: reason")` (default: `warnings.warn`)."""
    from fnnet.io import read_regular

    path = os.path.join(os.path.dirname(os.path.abspath(params_path)), "metrics.json")
    try:
        metrics = json.loads(read_regular(path, fn=fn, what="run description", max_bytes=METRICS_MAX_BYTES))
        run, shape = metrics.get("run"), metrics.get("input_shape")
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError, AttributeError) as e:
        text = " ".join(str(e).split()) or type(e).__name__
        if not isinstance(e, (OSError, ValueError)):
            text = f"{type(e).__name__}: {text}"
        line = f"ignoring {path}: {text}"
        (warn or (lambda text: warnings.warn(f"{fn}: {text}", stacklevel=3)))(line)
        return {}, None
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
        shape = None
    return (run if isinstance(run, dict) else {}), shape


def _check_images(images) -> np.ndarray:
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"Classifier: images must have shape (N, 1, 28, 28) as prepare_digit gives "
                         f"(with x[None] for one), got {x.shape}")
    return x


def _batched(f):
    """images -> np.ndarray float32 through the jitted f, BATCH images at a time."""

    def run(images):
        x = _check_images(images)
        if len(x) == 0:
            return np.asarray(f(x), np.float32)
        return np.concatenate([np.asarray(f(x[i:i + BATCH]), np.float32) for i in range(0, len(x), BATCH)])

    return run


def _guess_model(params: dict, path: str) -> str:
    """The book's network that a pickled dict of arrays belongs to, from its names and shapes."""
    w1 = params.get("W1")
    ndim = getattr(w1, "ndim", 0)
    if ndim == 2 and "W3" in params and "W4" not in params:
        return "three_layer_net"  # sample_weight.pkl: chapter 3's network
    if ndim == 4 and "W8" in params:
        return "deep_convnet"
    if ndim == 4 and "W3" in params and "W4" not in params:
        return "simple_convnet"
    raise ValueError(f"{FN}: cannot tell which network {path} holds (arrays {', '.join(sorted(params))}); "
                     f"pass model= one of {', '.join(MODELS)} (--model)")


def _config_from_shapes(name: str, params: dict) -> dict:
    """The configuration of the book's pickled weights, read from their shapes."""
    shape = {k: tuple(np.shape(v)) for k, v in params.items()}
    try:
        if name == "simple_convnet":
            fnum, _, fs, _ = shape["W1"]
            return {"conv_param": {"filter_num": fnum, "filter_size": fs}, "hidden_size": shape["W2"][1]}
        if name == "deep_convnet":
            return {"hidden_size": shape["W7"][1]}
        if name == "two_layer_net":
            return {"hidden_size": shape["W1"][1]}
        if name == "multi_layer_net":
            n = sum(1 for k in params if k.startswith("W"))
            return {"hidden_size_list": [shape[f"W{i}"][1] for i in range(1, n)]}
    except (KeyError, ValueError, IndexError):
        pass  # the parameter check names what does not fit
    return {}


def load_finite_params(path, *, fn: str = "load_finite_params") -> dict:
    """The book's sample_weight.pkl (or any dict of arrays with W1) as loaded, refused with a
    ValueError naming `fn` when it is not such a dict or holds NaN or infinite values."""
    from fnnet.io import load_params

    params = load_params(path)
    if not isinstance(params, dict) or "W1" not in params:
        raise ValueError(f"{fn}: {path} does not hold the chapter 3 network's W1, b1, ... arrays")
    bad = sorted(k for k, v in params.items() if not np.isfinite(np.asarray(v, np.float64)).all())
    if bad:
        raise ValueError(f"{fn}: {path}: {', '.join(bad)} hold NaN or infinite values; refusing them")
    return params


def _three_layer_net(path: str) -> Classifier:
    import jax
    import jax.numpy as jnp

    from fnnet.models import three_layer_net

    params = {k: jnp.asarray(v, jnp.float32) for k, v in load_finite_params(path, fn=FN).items()}
    if params["W1"].ndim != 2 or params["W1"].shape[0] != math.prod(IMAGE_SHAPE):
        raise ValueError(f"{FN}: {path}: W1 has shape {tuple(params['W1'].shape)}; the chapter 3 network on "
                         "28x28 images needs (784, hidden)")
    forward = jax.jit(lambda p, x: three_layer_net.predict(p, x.reshape(x.shape[0], -1)))
    return Classifier(f"three_layer_net ({path})", _batched(lambda x: forward(params, x)),
                      lambda images: None)


def _conv_prefix(net):
    """The layers of `net` up to its first Convolution, as a serial (params named as in `net`), or None."""
    from fnnet.layers import serial

    layers = net.layers or (net,)
    for i, layer in enumerate(layers):
        if layer.name.startswith("Convolution"):
            return serial(*layers[: i + 1])
    return None


def _net(name: str, cfg: dict):
    """The layer stack of a built-in convolutional model with configuration `cfg`, or None."""
    from fnnet.layers import conv_fast
    from fnnet.models import deep_convnet, simple_convnet

    impl = conv_fast.resolve()
    if name == "simple_convnet":
        return simple_convnet.net(cfg.get("conv_param"), cfg.get("hidden_size", 100), CLASSES, conv_impl=impl)
    if name == "deep_convnet":
        return deep_convnet.net(cfg.get("hidden_size", 50), CLASSES, conv_impl=impl)
    return None


def load_classifier(path, model: str | None = None) -> Classifier:
    """The trained network in `path` as a `Classifier` of 28x28 digits.

    path: a run's params.npz or .ckpt (the model, configuration and input shape come from the
    metrics.json beside it), or one of the book's pickles (sample_weight.pkl, params.pkl,
    deep_convnet_params.pkl). model: one of `MODELS` or your own network as package.module:attr or
    path/to/file.py:attr; by default the run's recorded model, or for a pickle the book's network
    its arrays fit. Raises ValueError (one line) for parameters that do not fit the model or do
    not take 28x28 images, OSError for a file that cannot be read.
    """
    import jax

    from fnnet.functions import softmax
    from fnnet.io import load_params
    from fnnet.models import MODEL_NAMES, get_model
    from fnnet.models.user import is_spec, load_model, normalize_spec
    from fnnet.training import load_run_params

    path = os.fspath(path)
    if model is not None and model not in MODELS and not is_spec(model):
        raise ValueError(f"{FN}: unknown model {model!r}; choose one of {', '.join(MODELS)}, or name your "
                         "own network as package.module:attr or path/to/file.py:attr")
    pickled = path.endswith(".pkl")
    run, recorded_shape = ({}, None) if pickled else read_run_info(path, fn=FN)
    cfg = {}
    if pickled:
        loaded = load_params(path)
        if not isinstance(loaded, dict):
            raise ValueError(f"{FN}: {path} holds a {type(loaded).__name__}, not a dict of named arrays")
        name = model or _guess_model(loaded, path)
        cfg = _config_from_shapes(name, loaded)
    else:
        recorded = run.get("model")
        name = model or recorded
        if not isinstance(name, str):
            raise ValueError(f"{FN}: no metrics.json beside {path} says which network it holds; pass "
                             f"model= one of {', '.join(MODELS)} (--model)")
        if name == recorded and isinstance(run.get("config"), dict):
            cfg = run["config"]
    if name == "three_layer_net":
        return _three_layer_net(path)
    same_run = name == run.get("model")
    if is_spec(name):
        model_obj = load_model(normalize_spec(name), recorded_shape if same_run and recorded_shape
                               else IMAGE_SHAPE, CLASSES)
    elif name in MODEL_NAMES:
        shape = recorded_shape if same_run and recorded_shape else \
            (IMAGE_SHAPE if name in CONV_MODELS else (math.prod(IMAGE_SHAPE),))
        try:
            model_obj = get_model(name, shape, CLASSES, **cfg)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{FN}: {path}: {name} cannot be built with {cfg} for input {tuple(shape)}: "
                             f"{' '.join(str(e).split())}") from None
    else:
        raise ValueError(f"{FN}: {path} was trained on the model {name!r}, which fnnet cannot rebuild by "
                         "name; pass model= package.module:attr or path/to/file.py:attr naming that network")
    in_shape = tuple(model_obj.input_shape)
    if math.prod(in_shape) != math.prod(IMAGE_SHAPE):
        where = f" (trained on {run['dataset']})" if same_run and run.get("dataset") else ""
        raise ValueError(f"{FN}: {path}: {name} takes inputs of shape {in_shape}{where}, but digits are "
                         "prepared as 28x28 images; use a network trained on MNIST")
    # zeros of the shapes init would give: a template for the loaded arrays, without compiling init
    params, state = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype),
                                           jax.eval_shape(model_obj.init, jax.random.PRNGKey(0)))
    out = jax.eval_shape(lambda p, s, x: model_obj.apply(p, s, x)[0], params, state,
                         jax.ShapeDtypeStruct((1,) + in_shape, np.float32))
    if out.shape != (1, CLASSES):
        raise ValueError(f"{FN}: {path}: {name} gives {out.shape[1:]} scores per image, not {CLASSES} digits")
    params, state = load_run_params(path, params, state, fn=FN)

    @jax.jit
    def probs(p, s, x):
        return softmax(model_obj.apply(p, s, x.reshape((x.shape[0],) + in_shape), train=False)[0])

    feature_maps = lambda images: None  # noqa: E731
    prefix = _conv_prefix(_net(name, cfg)) if name in CONV_MODELS else None
    if prefix is not None:
        @jax.jit
        def maps(p, s, x):
            return prefix.forward({k: p[k] for k in prefix.param_names}, x,
                                  {k: s[k] for k in prefix.state_names}, train=False)[0]

        feature_maps = _batched(lambda x: maps(params, state, x))
    return Classifier(f"{name} ({path})", _batched(lambda x: probs(params, state, x)), feature_maps)
