"""The `>>>` examples in the docstrings of `serial`, the block constructors and `fit` run and print
what they show; `fit` stays short; `fnnet.layers` and `fnnet.models` are reachable after a bare
`import fnnet`, which stays light."""

import ast
import doctest
import inspect
import subprocess
import sys
import textwrap

import pytest

import fnnet.layers.compose as compose
import fnnet.training.loop as loop

CONSTRUCTORS = ["serial", "Affine", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax", "Convolution",
                "Pooling", "BatchNormalization", "Dropout", "Flatten", "GlobalAveragePooling"]


def run_examples(obj, module, name):
    """(failed, attempted) of obj's docstring examples, run in the module's namespace."""
    finder, runner = doctest.DocTestFinder(recurse=False), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(obj, name, globs=dict(vars(module))):
        runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", CONSTRUCTORS)
def test_the_constructors_examples_print_what_they_show(name):
    failed, attempted = run_examples(getattr(compose, name), compose, name)
    assert attempted >= 1 and failed == 0


def test_fits_example_trains_and_prints_what_it_shows():
    failed, attempted = run_examples(loop.fit, loop, "fit")
    assert attempted >= 6 and failed == 0


def test_a_wrong_example_fails():
    """The runner itself: an example that shows the wrong output is counted as failed."""
    def shows_wrong():
        """>>> 1 + 1
        3
        """

    assert run_examples(shows_wrong, compose, "shows_wrong") == (1, 1)


def test_fit_is_at_most_80_lines_of_code():
    """Code lines of fit's body: its docstring, blank lines and comment lines not counted."""
    source = textwrap.dedent(inspect.getsource(loop.fit))
    node = ast.parse(source).body[0]
    body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body
    lines = source.splitlines()[body[0].lineno - 1: node.end_lineno]
    code = [line for line in lines if line.strip() and not line.strip().startswith("#")]
    assert len(code) <= 80, len(code)


def test_import_fnnet_is_light_and_reaches_layers_and_models():
    code = "\n".join([
        "import sys, fnnet",
        "light = 'jax' not in sys.modules and 'fnnet.layers' not in sys.modules",
        "print(light, fnnet.layers.serial.__name__, fnnet.models.Model.__name__, 'layers' in dir(fnnet))",
        "try:",
        "    fnnet.nothing",
        "except AttributeError as e:",
        "    print(e)",
    ])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["True serial Model True", "module 'fnnet' has no attribute 'nothing'"]
