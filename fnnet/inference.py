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

A run folder is data, never code: a metrics.json that names your own network (path/to/file.py:attr
or package.module:attr) is not imported unless you name that model (`model=`, `--model`) or pass
`trust=True` (`--trust-run`); built-in models (`MODELS`) load by themselves. metrics.json is
checked against bounds (`METRICS_MAX_BYTES` from `stat`, nesting, strings, the configuration's
sizes, the input shape) before it sizes anything, and a model built from it may not have more
parameters than its params file has bytes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from fnnet._docs import document_fields

__all__ = ["Classifier", "load_classifier", "read_run_info", "UntrustedCodeError", "check_param_count",
           "MODELS", "IMAGE_SHAPE", "METRICS_MAX_BYTES"]

IMAGE_SHAPE = (1, 28, 28)
CLASSES = 10
# metrics.json: settings and about 24 bytes per training step (some 700,000 steps), refused from
# `stat` above this; then at most these many lists and objects, strings and levels of nesting, so
# that parsing stays within a few times the file's size and never recurses without end.
METRICS_MAX_BYTES = 16 * 2**20
METRICS_MAX_CONTAINERS = 10_000
METRICS_MAX_STRINGS = 100_000
METRICS_MAX_DEPTH = 32
METRICS_MAX_CHARS = 4096  # characters of one string (a model spec holds a file's absolute path)
# Bounds of the configuration a metrics.json gives (run.config) and of its input_shape.
MAX_UNITS = 2**20  # hidden_size and each of hidden_size_list
MAX_LAYERS = 100  # entries of hidden_size_list
MAX_FILTERS = 2**16  # conv_param filter_num
MAX_FILTER_SIZE = 1024  # conv_param filter_size, pad and stride
MAX_INPUT_DIMS = 4  # input_shape: at most 4 dimensions
MAX_INPUT_SIZE = 2**24  # values per sample (the product of input_shape)
MAX_NAME_CHARS = 64  # run.dataset and the string settings of run.config
CONV_MODELS = ("simple_convnet", "deep_convnet")
MODELS = ("two_layer_net", "multi_layer_net", "simple_convnet", "deep_convnet", "three_layer_net")
BATCH = 500  # images per forward pass: at most two compiled shapes for any number of images
FN = "load_classifier"
MAX_SHAPES_READ = 1000  # arrays of an .npz whose headers a wrong-model hint reads
MAX_SHAPES_SHOWN = 10  # weights a wrong-model hint names


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
                 "activation, for any network whose layer stack begins with a convolution (built-in, "
                 "LeNet or your own serial net); None for one that does not (an MLP).",
)


class UntrustedCodeError(ValueError):
    """A run folder's metrics.json names code (path/to/file.py:attr or package.module:attr) that the
    caller did not allow: fnnet does not import code because a run folder says so. `metrics_path`
    and `spec` say which file names which code."""

    def __init__(self, metrics_path: str, spec: str, fn: str = FN):
        self.metrics_path, self.spec = metrics_path, spec
        super().__init__(f"{fn}: {metrics_path} names the code {spec}; fnnet does not run code from a run "
                         f"folder: pass model={spec!r} or trust=True if you trust it")


def metrics_path(params_path) -> str:
    """The metrics.json beside a params file, as `fnnet train` writes it."""
    return os.path.join(os.path.dirname(os.fspath(params_path)), "metrics.json")


def _shown(value) -> str:
    """A value of a metrics.json, cut short for a one-line message."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _int_in(value, low: int, high: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{where} must be an integer in {low}..{high:,}, got {_shown(value)}")
    return value


def _check_name(value, where: str, limit: int = MAX_NAME_CHARS) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise ValueError(f"{where} must be a printable string of 1..{limit} characters, got {_shown(value)}")
    return value


def _check_config(cfg) -> None:
    """run.config: the model's keyword arguments; every size within its bound."""
    if not isinstance(cfg, dict):
        raise ValueError(f"run.config must be an object, got {_shown(cfg)}")
    for key, v in cfg.items():
        where = f"run.config.{key}"
        if key == "hidden_size":
            _int_in(v, 1, MAX_UNITS, where)
        elif key == "hidden_size_list":
            if not isinstance(v, list) or not 1 <= len(v) <= MAX_LAYERS:
                raise ValueError(f"{where} must be a list of 1..{MAX_LAYERS} sizes, got {_shown(v)}")
            for i, n in enumerate(v):
                _int_in(n, 1, MAX_UNITS, f"{where}[{i}]")
        elif key == "conv_param":
            if not isinstance(v, dict):
                raise ValueError(f"{where} must be an object, got {_shown(v)}")
            for k, n in v.items():
                low = 0 if k == "pad" else 1
                _int_in(n, low, MAX_FILTERS if k == "filter_num" else MAX_FILTER_SIZE, f"{where}.{k}")
        elif isinstance(v, str):
            _check_name(v, where)
        elif v is not None and not isinstance(v, (bool, int, float)):
            raise ValueError(f"{where} must be a number, a string or a boolean, got {_shown(v)}")


def _check_shape(shape) -> tuple:
    where = "input_shape"
    if not isinstance(shape, list) or not 1 <= len(shape) <= MAX_INPUT_DIMS:
        raise ValueError(f"{where} must be a list of 1..{MAX_INPUT_DIMS} sizes, got {_shown(shape)}")
    for i, d in enumerate(shape):
        _int_in(d, 1, MAX_INPUT_SIZE, f"{where}[{i}]")
    if math.prod(shape) > MAX_INPUT_SIZE:
        raise ValueError(f"{where} {shape} holds {math.prod(shape):,} values per sample, more than "
                         f"{MAX_INPUT_SIZE:,}")
    return tuple(shape)


def _check_nesting(tree) -> None:
    """Nesting depth and string lengths of a parsed JSON value, without recursion."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > METRICS_MAX_DEPTH:
            raise ValueError(f"it nests lists and objects deeper than {METRICS_MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((k, depth) for k in node)
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list, str)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list, str)))
        elif isinstance(node, str) and len(node) > METRICS_MAX_CHARS:
            raise ValueError(f"it holds a string of {len(node):,} characters, more than "
                             f"{METRICS_MAX_CHARS:,}")


def parse_metrics(data: bytes) -> tuple[dict, tuple | None]:
    """(run description, input shape or None) of metrics.json's bytes, checked against the bounds
    above; raises ValueError saying what is out of bounds. Lists, objects and strings are counted
    in the bytes before they are parsed, so a hostile file cannot fill the memory or the stack."""
    containers = data.count(b"[") + data.count(b"{")
    if containers > METRICS_MAX_CONTAINERS:
        raise ValueError(f"it holds {containers:,} lists and objects, more than {METRICS_MAX_CONTAINERS:,}")
    if data.count(b'"') > 2 * METRICS_MAX_STRINGS:
        raise ValueError(f"it holds more than {METRICS_MAX_STRINGS:,} strings")
    try:
        metrics = json.loads(data)
    except RecursionError:
        raise ValueError(f"it nests lists and objects deeper than {METRICS_MAX_DEPTH} levels") from None
    except ValueError as e:
        raise ValueError(f"it is not valid JSON ({' '.join(str(e).split())})") from None
    _check_nesting(metrics)
    if not isinstance(metrics, dict):
        raise ValueError(f"it holds {_shown(metrics)}, not an object")
    run, shape = metrics.get("run"), metrics.get("input_shape")
    if run is None:
        run = {}
    if not isinstance(run, dict):
        raise ValueError(f"run must be an object, got {_shown(run)}")
    if run.get("model") is not None:
        _check_name(run["model"], "run.model", METRICS_MAX_CHARS)
    if run.get("dataset") is not None:
        _check_name(run["dataset"], "run.dataset")
    if run.get("config") is not None:
        _check_config(run["config"])
    return run, (None if shape is None else _check_shape(shape))


def read_run_info(params_path, *, fn: str = "read_run_info", warn: Callable | None = None):
    """(the run description, the recorded input shape or None) from the metrics.json beside a
    params file, as `fnnet train` writes it; ({}, None) when there is none. Only a regular file of
    at most `METRICS_MAX_BYTES` is read, and its contents must keep the bounds of `parse_metrics`.
    A damaged or out-of-bounds one raises ValueError (OSError when it cannot be read) naming `fn`;
    with `warn`, it is ignored instead, saying so through `warn("ignoring PATH: reason")`."""
    from fnnet.io import read_regular

    path = metrics_path(params_path)
    try:
        data = read_regular(os.path.abspath(path), fn=fn, what="run description", max_bytes=METRICS_MAX_BYTES)
        return parse_metrics(data)
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as e:
        text = " ".join(str(e).split()) or type(e).__name__
        if warn is None:
            line = text if text.startswith(f"{fn}: ") else f"{fn}: cannot use {path}: {text}"
            raise (OSError if isinstance(e, OSError) else ValueError)(line) from None
        warn(f"ignoring {path}: {text.removeprefix(f'{fn}: ')}")
        return {}, None


def check_param_count(shapes, path, *, fn: str, what: str) -> None:
    """Refuse, before anything is allocated, a model whose parameters (`shapes`: a pytree of arrays
    or `jax.ShapeDtypeStruct`s, e.g. from `jax.eval_shape(model.init, key)`) outnumber the bytes of
    the file `path` that should hold them: each parameter takes at least one byte there, so a
    metrics.json (or an option) describing a larger network is wrong, and building it would only
    fill the memory. Raises ValueError naming `fn`, the file and `what` (the model)."""
    import jax

    count = sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes))
    size = os.stat(path).st_size
    if count > size:
        raise ValueError(f"{fn}: {path} holds {size:,} bytes, too few for the {count:,} parameters of "
                         f"{what}; the run's metrics.json (or the options) describes another network")


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


def guess_model(params: dict, path: str, fn: str = FN) -> str:
    """The book's network that a pickled dict of arrays belongs to, from its names and shapes (a
    pickle is never read with a metrics.json that happens to lie beside it)."""
    w1 = params.get("W1")
    ndim = getattr(w1, "ndim", 0)
    if ndim == 2 and "W3" in params and "W4" not in params:
        return "three_layer_net"  # sample_weight.pkl: chapter 3's network
    if ndim == 4 and "W8" in params:
        return "deep_convnet"
    if ndim == 4 and "W3" in params and "W4" not in params:
        return "simple_convnet"
    raise ValueError(f"{fn}: cannot tell which network {path} holds (arrays {', '.join(sorted(params))}); "
                     f"pass model= one of {', '.join(MODELS)} (--model)")


def _file_shapes(path: str, loaded: dict | None = None) -> dict | None:
    """{name: shape} of the top-level arrays of a params file: `loaded` (a pickle already read), or an
    .npz's array headers, read without their values; None for a checkpoint or a file that cannot
    be read so (the error being reported says why)."""
    import zipfile

    from fnnet.io import MAX_PARAMS_BYTES, TREE_KEY, ZIP_MAGIC, open_regular

    if loaded is not None:
        return {k: tuple(np.shape(v)) for k, v in loaded.items() if isinstance(v, np.ndarray)}
    shapes = {}
    try:
        f, _ = open_regular(path, fn=FN, what="parameter file", max_bytes=MAX_PARAMS_BYTES)
        with f:
            if f.read(2) != ZIP_MAGIC:
                return None
            f.seek(0)
            with zipfile.ZipFile(f) as z:
                for info in z.infolist()[:MAX_SHAPES_READ]:
                    key = info.filename.removesuffix(".npy")
                    if key == info.filename or key == TREE_KEY or "/" in key:
                        continue
                    with z.open(info) as member:
                        version = np.lib.format.read_magic(member)
                        read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                            else np.lib.format.read_array_header_2_0
                        shapes[key] = tuple(read(member)[0])
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    return shapes


def _fits_chain(shapes: dict) -> bool:
    """Whether the arrays are chapter 3's network on 28x28 digits: W1 (784, a), b1 (a,), ..., Wk (z, 10)."""
    n = sum(1 for k in shapes if k.startswith("W"))
    if n == 0 or set(shapes) != {f"{p}{i}" for p in "Wb" for i in range(1, n + 1)}:
        return False
    w = [shapes[f"W{i}"] for i in range(1, n + 1)]
    if any(len(s) != 2 for s in w):
        return False
    sizes = [math.prod(IMAGE_SHAPE)] + [s[1] for s in w]
    return sizes[-1] == CLASSES and all(w[i] == (sizes[i], sizes[i + 1]) and shapes[f"b{i + 1}"] ==
                                        (sizes[i + 1],) for i in range(n))


def _fitting_models(shapes: dict, run: dict, pickled: bool) -> list:
    """The models of `MODELS` whose parameters on 28x28 digits have exactly these names and shapes:
    the run's recorded model with its recorded configuration, the others with the configuration
    their shapes give (`config_from_shapes`). Chapter 3's network is considered for a pickle only
    (training never writes one); the recorded model, or for a pickle the book's, comes first."""
    import jax

    from fnnet.models import get_model

    stand_ins = {k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items()}
    recorded = run.get("model")
    fits = []
    for name in MODELS:
        if name == "three_layer_net":
            if pickled and _fits_chain(shapes):
                fits.append(name)
            continue
        cfg = run.get("config") if name == recorded else None
        cfg = dict(cfg) if isinstance(cfg, dict) else config_from_shapes(name, stand_ins)
        if name == "multi_layer_net" and "gamma1" in shapes:
            cfg["use_batchnorm"] = True
        shape = IMAGE_SHAPE if name in CONV_MODELS else (math.prod(IMAGE_SHAPE),)
        try:
            built = jax.eval_shape(get_model(name, shape, CLASSES, **cfg).init, jax.random.PRNGKey(0))[0]
        except (TypeError, ValueError):
            continue
        if {k: tuple(v.shape) for k, v in built.items()} == shapes:
            fits.append(name)
    first = recorded
    if first not in fits and pickled:
        try:
            first = guess_model(stand_ins, path="", fn=FN)
        except ValueError:
            first = None
    return sorted(fits, key=lambda m: m != first)


def _held(shapes: dict) -> str:
    """'W1 (30, 1, 5, 5), W2 (4320, 100), W3 (100, 10)': the weights of a params file, for a message."""
    def order(k):
        base = k.rstrip("0123456789")
        return base, int(k[len(base):] or 0)

    names = sorted((k for k in shapes if k.startswith("W")), key=order) or sorted(shapes, key=order)
    text = ", ".join(f"{k} {shapes[k]}" for k in names[:MAX_SHAPES_SHOWN])
    return text + (", ..." if len(names) > MAX_SHAPES_SHOWN else "")


def wrong_model_hint(path: str, name: str, run: dict, loaded: dict | None = None) -> str | None:
    """What to try when the parameters in `path` do not fit the model `name`: the built-in models
    whose names and shapes they hold ('these parameters (W1 (30, 1, 5, 5), ...) look like
    simple_convnet: try model='simple_convnet' (--model simple_convnet)'), or the code the run's
    metrics.json names. None when they fit `name` (the error is another) or nothing can be said.
    `run`: the run description beside the file ({} for a pickle); `loaded`: a pickle already read."""
    from fnnet.models.user import is_spec, normalize_spec

    shapes = _file_shapes(path, loaded)
    if not shapes:
        return None
    fits = _fitting_models(shapes, run, loaded is not None)
    if name in fits:
        return None
    if fits:
        return (f"these parameters ({_held(shapes)}) look like {' or '.join(fits)}: try model={fits[0]!r} "
                f"(--model {fits[0]})")
    recorded = run.get("model")
    if isinstance(recorded, str) and is_spec(recorded) and not (is_spec(name) and normalize_spec(name) ==
                                                                normalize_spec(recorded)):
        return (f"its metrics.json names the network {recorded}: to load it, pass trust=True (--trust-run) "
                "instead of model= (--model) if you trust that code")
    if is_spec(name):
        return None
    return (f"these parameters ({_held(shapes)}) fit none of {', '.join(MODELS)}: if they are your own "
            "network, pass model= path/to/file.py:attr or package.module:attr (--model)")


@contextlib.contextmanager
def _suggesting_model(path: str, name: str, run: dict, loaded: dict | None):
    """Re-raise a ValueError about parameters that do not fit `name` with `wrong_model_hint` added."""
    try:
        yield
    except UntrustedCodeError:
        raise
    except ValueError as e:
        hint = wrong_model_hint(path, name, run, loaded)
        if hint is None:
            raise
        raise ValueError(f"{' '.join(str(e).split())}; {hint}") from None


def config_from_shapes(name: str, params: dict) -> dict:
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
    """The layers of `net` (a Block, or None) up to its first Convolution, as a serial with params
    named as in `net`; None when a layer with weights comes first (an MLP starts with Affine; a
    residual or concat is not looked into) or there is no net."""
    from fnnet.layers import serial

    if net is None:
        return None
    for i, layer in enumerate(net.layers or (net,)):
        if layer.name.startswith("Convolution"):
            return serial(*(net.layers or (net,))[: i + 1])
        if layer.kind in ("weights", "residual", "concat"):
            return None
    return None


def _feature_maps(model_obj, params, state) -> Callable:
    """feature_maps(images) for `Classifier`: the output of the first convolution of the model's layer
    stack (`Model.net`), (N, FN, OH, OW) before its activation; None for every call when the stack
    does not begin with a convolution or the model has none (a `Model` written by hand)."""
    import jax

    prefix = _conv_prefix(model_obj.net)
    if prefix is None:
        return lambda images: None
    in_shape = tuple(model_obj.input_shape)

    @jax.jit
    def maps(p, s, x):
        x = x.reshape((x.shape[0],) + in_shape)
        return prefix.forward({k: p[k] for k in prefix.param_names}, x,
                              {k: s[k] for k in prefix.state_names}, train=False)[0]

    return _batched(lambda x: maps(params, state, x))


def load_classifier(path, model: str | None = None, *, trust: bool = False) -> Classifier:
    """The trained network in `path` as a `Classifier` of 28x28 digits.

    path: a run's params.npz or .ckpt (the model, configuration and input shape come from the
    metrics.json beside it), or one of the book's pickles (sample_weight.pkl, params.pkl,
    deep_convnet_params.pkl). model: one of `MODELS` or your own network as package.module:attr or
    path/to/file.py:attr; by default the run's recorded model, or for a pickle the book's network
    its arrays fit. trust: import the code that the run's metrics.json names (your own network);
    without it, or the same spec as `model`, such a run raises `UntrustedCodeError`. Raises
    ValueError (one line) for parameters that do not fit the model (saying which model they fit,
    `wrong_model_hint`) or do not take 28x28 images, or a metrics.json out of bounds;
    FileNotFoundError (`no such file`) or OSError for a file that cannot be read. The classifier's
    feature_maps come from the model's layer stack (`Model.net`) when it begins with a convolution.
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
    if not os.path.exists(path):
        raise FileNotFoundError(f"{FN}: no such file: {path}")
    pickled = path.endswith(".pkl")
    cfg, run, recorded_shape, loaded = {}, {}, None, None
    if pickled:
        loaded = load_params(path)
        if not isinstance(loaded, dict):
            raise ValueError(f"{FN}: {path} holds a {type(loaded).__name__}, not a dict of named arrays")
        name = model or guess_model(loaded, path)
        cfg = config_from_shapes(name, loaded)
    else:
        ignore = lambda line: warnings.warn(f"{FN}: {line}", stacklevel=3)  # noqa: E731
        run, recorded_shape = read_run_info(path, fn=FN, warn=None if model is None else ignore)
        recorded = run.get("model")
        name = model or recorded
        if not isinstance(name, str):
            raise ValueError(f"{FN}: no metrics.json beside {path} says which network it holds; pass "
                             f"model= one of {', '.join(MODELS)} (--model)")
        if model is None and is_spec(name) and not trust:
            raise UntrustedCodeError(metrics_path(path), name)
        if name == recorded and isinstance(run.get("config"), dict):
            cfg = run["config"]
    suggesting = lambda: _suggesting_model(path, name, run, loaded)  # noqa: E731
    if name == "three_layer_net":
        with suggesting():
            return _three_layer_net(path)
    recorded = run.get("model")
    same_run = isinstance(recorded, str) and (name == recorded or is_spec(name) and is_spec(recorded)
                                              and normalize_spec(name) == normalize_spec(recorded))
    if is_spec(name):
        model_obj = load_model(normalize_spec(name), recorded_shape if same_run and recorded_shape
                               else IMAGE_SHAPE, CLASSES)
    elif name in MODEL_NAMES:
        shape = recorded_shape if same_run and recorded_shape else \
            (IMAGE_SHAPE if name in CONV_MODELS else (math.prod(IMAGE_SHAPE),))
        try:
            model_obj = get_model(name, shape, CLASSES, **cfg)
        except (TypeError, ValueError) as e:
            with suggesting():
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
    shapes = jax.eval_shape(model_obj.init, jax.random.PRNGKey(0))
    with suggesting():
        check_param_count(shapes[0], path, fn=FN, what=f"{name}{' ' + str(cfg) if cfg else ''}")
    params, state = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), shapes)
    out = jax.eval_shape(lambda p, s, x: model_obj.apply(p, s, x)[0], params, state,
                         jax.ShapeDtypeStruct((1,) + in_shape, np.float32))
    if out.shape != (1, CLASSES):
        raise ValueError(f"{FN}: {path}: {name} gives {out.shape[1:]} scores per image, not {CLASSES} digits")
    with suggesting():
        params, state = load_run_params(path, params, state, fn=FN)

    @jax.jit
    def probs(p, s, x):
        return softmax(model_obj.apply(p, s, x.reshape((x.shape[0],) + in_shape), train=False)[0])

    return Classifier(f"{name} ({path})", _batched(lambda x: probs(params, state, x)),
                      _feature_maps(model_obj, params, state))
