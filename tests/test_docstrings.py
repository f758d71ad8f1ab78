"""help() answers: every public name of the library has a docstring of its own.

The public API is walked module by module (public = `__all__` where a module defines it, else
the names defined there that do not start with `_`). Functions, classes and NamedTuple instances
(the layers) must carry a real docstring: not empty, not one Python writes by itself
('Layer(forward, backward)', 'Alias for field number 0') and not one inherited from a base class
or from the class every instance shares. Data constants are skipped: a number or a tuple cannot
carry a docstring at run time.
"""

import importlib
import inspect
import pkgutil
import pydoc
import re
import types
from typing import NamedTuple

import pytest

import fnnet
import fnnet.layers
from fnnet.layers import Layer

TOP = ["functions", "gradient", "layers", "models", "optimizers", "schedules", "regularization", "init",
       "datasets", "training", "gradcheck", "io", "distributed", "augment", "gates", "plots", "inference",
       "web"]
PACKAGES = ["layers", "models", "datasets", "training"]


def module_names():
    names = [f"fnnet.{m}" for m in TOP]
    for pkg in PACKAGES:
        package = importlib.import_module(f"fnnet.{pkg}")
        names += [f"fnnet.{pkg}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
                  if not info.name.startswith("_")]
    return names


MODULES = module_names()


def public_names(module):
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, obj in vars(module).items()
            if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__
            and not inspect.ismodule(obj)]


def is_documentable(obj):
    """Functions, classes, NamedTuple instances and other callables; not data constants."""
    return (inspect.isroutine(obj) or inspect.isclass(obj) or callable(obj)
            or (isinstance(obj, tuple) and hasattr(obj, "_fields")))


AUTO_FIELD = re.compile(r"Alias for field number \d+")


def own_doc(obj, name=None):
    """The docstring `obj` itself carries, or None: a class's own `__doc__` (not a base class's); for
    an instance, a `__doc__` set on it, or its class's when that class is its own (named like it, as
    each layer's is), never that of a class every instance shares, such as Layer's."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
    elif inspect.isroutine(obj) or inspect.ismodule(obj):
        doc = obj.__doc__
    else:
        doc = getattr(obj, "__dict__", {}).get("__doc__")
        if doc is None and type(obj).__name__ == name:
            doc = type(obj).__dict__.get("__doc__")
    return inspect.cleandoc(doc) if isinstance(doc, str) else None


def is_generated(doc, obj):
    """True for the docstrings Python writes by itself: 'Name(field, ...)' of namedtuple and
    dataclass, 'Alias for field number N' of a NamedTuple field."""
    names = {getattr(obj, "__name__", None), type(obj).__name__}
    return bool(AUTO_FIELD.fullmatch(doc)) or any(
        name and re.fullmatch(rf"{re.escape(name)}\(.*\)", doc, re.S) for name in names)


def problems(module):
    """What lacks a docstring of its own among the public names of `module`, one line each."""
    where = module.__name__
    found = [] if own_doc(module) else [f"{where}: module without docstring"]
    for name in public_names(module):
        obj = getattr(module, name)
        if not is_documentable(obj):
            continue
        doc = own_doc(obj, name)
        if not doc:
            found.append(f"{where}.{name}: no docstring of its own")
        elif is_generated(doc, obj):
            found.append(f"{where}.{name}: generated docstring {doc!r}")
        if inspect.isclass(obj):
            for field in getattr(obj, "_fields", ()):
                fdoc = inspect.cleandoc(getattr(obj, field).__doc__ or "")
                if not fdoc or AUTO_FIELD.fullmatch(fdoc):
                    found.append(f"{where}.{name}.{field}: field without docstring ({fdoc!r})")
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and inspect.isfunction(member) and not member.__doc__:
                    found.append(f"{where}.{name}.{attr}: method without docstring")
        if isinstance(obj, Layer):
            for part in ("forward", "backward"):
                if not inspect.getdoc(getattr(obj, part)):
                    found.append(f"{where}.{name}.{part}: function without docstring")
    return found


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_has_a_docstring_of_its_own(module_name):
    assert problems(importlib.import_module(module_name)) == []


def test_the_walk_sees_the_layers_the_models_and_the_optimizers():
    """The walk itself: a typo in TOP or an empty __all__ would let everything pass."""
    assert {"fnnet.layers.core", "fnnet.layers.conv", "fnnet.layers.normalization", "fnnet.layers.compose",
            "fnnet.models.two_layer_net", "fnnet.models.simple_net", "fnnet.optimizers",
            "fnnet.schedules"} <= set(MODULES)
    layers = [n for n in public_names(fnnet.layers) if isinstance(getattr(fnnet.layers, n), Layer)]
    assert set(layers) == {"mul", "add", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "affine",
                           "softmax_with_loss", "batch_norm", "dropout", "convolution", "pooling",
                           "global_average_pooling"}
    assert sum(len(public_names(importlib.import_module(m))) for m in MODULES) > 150


def test_the_check_catches_what_python_does_not_attach():
    """Each kind of missing docstring, in a module made for the purpose, is reported."""
    from fnnet.layers.core import _layer

    class Pair(NamedTuple):
        a: int
        b: int

    class Undocumented(ValueError):
        def method(self):
            pass

    def undocumented(x):
        return x

    @_layer(lambda params, x: (x, None), lambda cache, dy: (dy, {}))
    class documented_layer(Layer):
        """A layer whose own text is fine, with forward and backward that have none."""

    fake = types.ModuleType("fake", "A module made for this test.")
    fake.bare = Layer(lambda params, x: (x, None), lambda cache, dy: (dy, {}))
    fake.Pair, fake.Undocumented, fake.undocumented, fake.documented_layer, fake.SIZE = (
        Pair, Undocumented, undocumented, documented_layer, 3)
    fake.__all__ = ["bare", "Pair", "Undocumented", "undocumented", "documented_layer", "SIZE"]
    assert problems(fake) == [
        "fake.bare: no docstring of its own",
        "fake.bare.forward: function without docstring",
        "fake.bare.backward: function without docstring",
        "fake.Pair: generated docstring 'Pair(a, b)'",
        "fake.Pair.a: field without docstring ('Alias for field number 0')",
        "fake.Pair.b: field without docstring ('Alias for field number 1')",
        "fake.Undocumented: no docstring of its own",
        "fake.Undocumented.method: method without docstring",
        "fake.undocumented: no docstring of its own",
        "fake.documented_layer.forward: function without docstring",
        "fake.documented_layer.backward: function without docstring",
    ]
    assert own_doc(fnnet.layers.affine, "affine") == inspect.getdoc(fnnet.layers.affine)
    assert not is_generated(inspect.getdoc(fnnet.layers.affine), fnnet.layers.affine)


LAYERS = ["mul", "add", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "affine", "softmax_with_loss",
          "batch_norm", "dropout", "convolution", "pooling"]
SHAPE = re.compile(r"\((?:N|D|FN|C)[,)]")


@pytest.mark.parametrize("name", LAYERS)
def test_a_layers_help_says_what_it_computes_its_shapes_and_its_cache(name):
    layer = getattr(fnnet.layers, name)
    doc = inspect.getdoc(layer)
    assert doc and doc != inspect.getdoc(Layer)
    assert "cache" in doc.lower(), doc
    assert SHAPE.search(doc), f"{name}: no shape such as (N, D) in {doc!r}"
    first_line = doc.splitlines()[0]
    assert first_line in pydoc.render_doc(layer, renderer=pydoc.plaintext)
    for part in ("forward", "backward"):
        part_doc = inspect.getdoc(getattr(layer, part))
        assert part_doc and SHAPE.search(part_doc), f"{name}.{part}: {part_doc!r}"


def test_affine_states_its_shapes_and_its_cache():
    doc = inspect.getdoc(fnnet.layers.affine)
    for text in ("x (N, D)", "W (D, M)", "b (M,)", "y (N, M)", "cache"):
        assert text in doc, f"{text!r} missing from {doc!r}"
    assert "(x, W)" in doc  # what forward stores for backward


def test_jupyter_question_mark_shows_the_layer_text():
    """`affine?` in Jupyter shows the docstring that IPython's Inspector finds."""
    oinspect = pytest.importorskip("IPython.core.oinspect")
    try:
        inspector = oinspect.Inspector(theme_name="nocolor")
    except TypeError:  # IPython before 9 has no themes
        inspector = oinspect.Inspector()
    info = inspector.info(fnnet.layers.affine, oname="affine")
    assert info["docstring"] == inspect.getdoc(fnnet.layers.affine)
    assert "x (N, D)" in info["docstring"]
