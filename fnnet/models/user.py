"""Networks from a user's code, named as `package.module:attr` or `path/to/file.py:attr`.

    model = load_model("mynet.py:lenet5", (1, 28, 28), 10)

`attr` is a layer stack (a `serial` net or any `fnnet.layers.Block`), a `Model`, or a function
`attr(input_shape, output_size)` returning one of these. Every failure is a ValueError of one line
that names the spec: a module that cannot be imported (with the import error), a missing
attribute, an object that is not a network, a network that does not fit the input shape.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys

__all__ = ["load_model", "is_spec", "normalize_spec"]


def is_spec(name: str) -> bool:
    """Whether `name` names user code (`module:attr`, `file.py:attr`) rather than a built-in model."""
    return ":" in name


def normalize_spec(spec: str) -> str:
    """The spec with a file path made absolute, so that a run's record works from any folder."""
    where, _, attr = spec.rpartition(":")
    if where.endswith(".py") or os.sep in where or "/" in where:
        where = os.path.abspath(where)
    return f"{where}:{attr}"


def _import(spec: str, where: str):
    try:
        if where.endswith(".py") or os.sep in where or "/" in where:
            if not os.path.isfile(where):
                raise ValueError(f"--model {spec}: no file {where}")
            name = "fnnet_user_" + os.path.splitext(os.path.basename(where))[0]
            loader = importlib.util.spec_from_file_location(name, where)
            module = importlib.util.module_from_spec(loader)
            sys.modules[name] = module
            loader.loader.exec_module(module)
            return module
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(where)
    except ValueError:
        raise
    except (Exception, SystemExit) as e:  # the user's module may raise anything while it runs
        text = " ".join(str(e).split())
        raise ValueError(f"--model {spec}: cannot import {where}: {type(e).__name__}: {text}") from None


def load_model(spec: str, input_shape, output_size: int):
    """The `Model` that `spec` names, built for `input_shape` per sample and `output_size` classes."""
    from fnnet.layers.compose import Block
    from fnnet.models import Model, sequential

    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise ValueError(f"--model {spec}: expected package.module:attr or path/to/file.py:attr")
    module = _import(spec, where)
    if not hasattr(module, attr):
        public = sorted(k for k in vars(module) if not k.startswith("_"))
        raise ValueError(f"--model {spec}: {where} has no attribute {attr!r} (it has: {', '.join(public)})")
    obj = getattr(module, attr)
    input_shape = tuple(int(d) for d in input_shape)
    if not isinstance(obj, (Block, Model)) and callable(obj):
        try:
            obj = obj(input_shape, output_size)
        except ValueError as e:
            raise ValueError(f"--model {spec} does not fit input {input_shape}: {e}") from None
    if isinstance(obj, Block):
        try:
            model = sequential(obj, input_shape)
        except ValueError as e:
            raise ValueError(f"--model {spec} does not fit input {input_shape}: {e}") from None
    elif isinstance(obj, Model):
        model = obj
    else:
        raise ValueError(f"--model {spec} is of type {type(obj).__name__}, not a network: give a serial(...) "
                         "net, a Model, or a function (input_shape, output_size) returning one")
    if math.prod(model.input_shape) != math.prod(input_shape):
        raise ValueError(f"--model {spec} takes input {tuple(model.input_shape)} per sample, but the data "
                         f"has {input_shape}")
    return model
