"""fnnet.gradcheck.check_layer: reports (never raises) the three-way comparison of a hand-written
backward pass; flags a wrong one in the argument it affects; the docs example runs as shown."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from doc_examples import DOCS, printed_and_shown

from fnnet.gradcheck import GradCheckReport, check_layer, rel_error
from fnnet.layers import Affine, Layer, Relu, affine, mul, pooling, relu, serial, sigmoid, softmax_with_loss

KEY = jax.random.PRNGKey(0)


def away_from_zero(shape, seed=1):
    x = jax.random.normal(jax.random.fold_in(KEY, seed), shape)
    return x + 0.2 * jnp.sign(x)


def affine_params(n_in=6, n_out=3):
    k1, k2 = jax.random.split(jax.random.fold_in(KEY, 2))
    return {"W": jax.random.normal(k1, (n_in, n_out)), "b": jax.random.normal(k2, (n_out,))}


def test_correct_layers_pass_with_one_error_per_argument():
    report = check_layer(affine, affine_params(), jax.random.normal(KEY, (4, 2, 3)))
    assert isinstance(report, GradCheckReport) and report.passed and report.failures == []
    assert list(report.vjp) == list(report.numerical) == ["params['W']", "params['b']", "x"]
    assert report.err_vjp < 1e-5 and report.err_num < 1e-7 and report.jit_close
    assert (report.vjp_tol, report.num_tol) == (1e-5, 1e-7)
    two = check_layer(mul, {}, jnp.arange(1.0, 4.0), jnp.ones(3))
    assert two.passed and list(two.vjp) == ["inputs[0]", "inputs[1]"]
    labels = check_layer(softmax_with_loss, {}, jax.random.normal(KEY, (4, 5)), jnp.array([0, 1, 4, 2]))
    assert labels.passed and list(labels.vjp) == ["inputs[0]"]


def test_report_text():
    text = str(check_layer(relu, {}, away_from_zero((3, 4))))
    lines = text.splitlines()
    assert re.fullmatch(r"argument\s+vs jax\.vjp\s+vs numerical", lines[0])
    assert re.fullmatch(r"x\s+\S+e[+-]\d\d\s+\S+e[+-]\d\d", lines[1])
    assert re.fullmatch(r"relative tol\s+1e-05\s+1e-07", lines[2])
    assert re.fullmatch(r"absolute tol\s+1e-05\s+1e-09", lines[3])
    assert re.fullmatch(r"jit == eager: yes \(difference \S+e[+-]\d\d; tolerance relative 1e-05, "
                        r"absolute 1e-05\)", lines[4])
    assert lines[-1] == "passed"


def test_the_jit_line_says_no_when_the_number_it_prints_fails():
    report = GradCheckReport({}, {}, jit_error=1.0)
    line = next(s for s in str(report).splitlines() if s.startswith("jit == eager"))
    assert line.startswith("jit == eager: no (difference 1.00e+00;") and not report.passed
    ok = GradCheckReport({}, {}, jit_error=0.5e-5)
    assert str(ok).splitlines()[-2].startswith("jit == eager: yes (difference 5.00e-06;") and ok.passed


def test_the_absolute_floor_passes_rounding_noise_around_zero_and_nothing_bigger():
    zero = Layer(lambda p, x: (x * 0.0, None), lambda c, dy: (dy * 3e-8, {}))  # hand "0" is float32 noise
    report = check_layer(zero, {}, away_from_zero((3, 4)))
    assert report.vjp["x"] < report.vjp_tol, "noise 3e-8 on an exact zero is under the floor 1e-5"
    assert report.numerical["x"] >= report.num_tol, "in float64 the same 3e-8 is an error"
    wrong = Layer(lambda p, x: (x * 0.0, None), lambda c, dy: (dy * 1e-3, {}))
    assert check_layer(wrong, {}, away_from_zero((3, 4))).vjp["x"] > 100 * report.vjp_tol
    assert rel_error(jnp.array([0.0]), jnp.array([3e-8]), floor=1e-5 / 1e-5) == pytest.approx(3e-8)


def test_a_wrong_input_gradient_is_flagged_without_raising():
    broken = Layer(relu.forward, lambda mask, dy: (dy, {}))  # forgets the mask
    report = check_layer(broken, {}, away_from_zero((3, 4)))
    assert not report.passed
    assert report.vjp["x"] > 0.1 and report.numerical["x"] > 0.1
    assert any(f.startswith("backward vs jax.vjp: relative error") for f in report.failures)
    assert any(f.startswith("backward vs numerical (float64)") for f in report.failures)
    assert "backward vs jax.vjp" in str(report)


def test_a_tiny_error_only_float64_numerical_differentiation_sees():
    off = Layer(sigmoid.forward, lambda out, dy: (dy * out * (1 - out) * (1 + 1e-6), {}))
    report = check_layer(off, {}, jax.random.normal(KEY, (3, 4)))
    assert report.err_vjp < report.vjp_tol
    assert report.err_num > report.num_tol
    msg = f"backward vs numerical (float64): relative error {report.err_num:.3g} >= 1e-07"
    assert report.failures == [msg]


def test_a_wrong_parameter_gradient_is_flagged_in_that_parameter():
    def backward(cache, dy):
        dx, grads = affine.backward(cache, dy)
        return dx, {"W": grads["W"], "b": 2 * grads["b"]}

    report = check_layer(Layer(affine.forward, backward), affine_params(), jax.random.normal(KEY, (5, 6)))
    assert not report.passed
    assert report.vjp["params['b']"] > 0.1 and report.numerical["params['b']"] > 0.1
    assert report.vjp["params['W']"] < 1e-6 and report.vjp["x"] < 1e-6


def test_misshaped_gradients_are_problems_not_crashes():
    def transposed(cache, dy):
        dx, grads = affine.backward(cache, dy)
        return dx, {"W": grads["W"].T, "b": grads["b"]}

    report = check_layer(Layer(affine.forward, transposed), affine_params(), jax.random.normal(KEY, (5, 6)))
    assert not report.passed
    assert report.problems == ("backward's grads {'W': (3, 6), 'b': (3,)} do not match params "
                               "{'W': (6, 3), 'b': (3,)}",)
    too_few = Layer(mul.forward, lambda cache, dy: (dy * cache[1], {}))
    report = check_layer(too_few, {}, jnp.ones(3), jnp.ones(3))
    assert report.problems == ("backward returned 1 input gradient(s) for 2 differentiable input(s)",)


def test_jit_and_eager_disagreeing_is_flagged():
    draws = iter(np.linspace(1.0, 2.0, 10))
    unstable = Layer(relu.forward, lambda mask, dy: (jnp.where(mask, dy, 0) * next(draws), {}))
    report = check_layer(unstable, {}, away_from_zero((2, 3)))
    assert not report.jit_close and not report.passed
    assert any(f.startswith("jit vs eager") for f in report.failures)


def test_rel_error():
    assert rel_error({"a": jnp.ones(3)}, {"a": jnp.ones(3)}) == 0.0
    assert rel_error(jnp.array([1.0, 3.0]), jnp.array([1.0, 1.0])) == pytest.approx(2 / 4)
    assert rel_error(jnp.zeros(2), jnp.zeros(2)) == 0.0
    assert rel_error({}, {}) == 0.0


def test_the_test_suite_wrapper_asserts_and_records():
    import gradcheck

    broken = Layer(relu.forward, lambda mask, dy: (dy, {}))
    with pytest.raises(AssertionError, match="backward vs jax.vjp"):
        gradcheck.check_layer(broken, {}, away_from_zero((3, 4)))
    err_vjp, err_num = gradcheck.check_layer(sigmoid, {}, jax.random.normal(KEY, (3, 4)))
    assert err_vjp < 1e-5 and err_num < 1e-7
    assert gradcheck.MEASURED["tests/test_gradcheck.py::test_the_test_suite_wrapper_asserts_and_records"] == [
        err_vjp, err_num]


def test_the_docs_example_runs_and_prints_what_the_docs_show():
    for printed, shown in printed_and_shown(DOCS / "check_your_layer.md", 3):
        printed, shown = printed.splitlines(), shown.splitlines()
        assert len(printed) == len(shown)
        for got, want in zip(printed, shown, strict=True):
            # Errors below 1e-4 are rounding, which differs between machines; the layout does not.
            assert _rounding_masked(got) == _rounding_masked(want)


def _rounding_masked(line):
    return re.sub(r"\d\.\d\de[+-]\d\d", lambda m: "small" if float(m[0]) < 1e-4 else m[0], line)


# ------------------------------------------------------------------------------------ kinks


def test_relu_inputs_within_a_step_of_zero_are_counted_and_judged_by_float64_vjp():
    """h = 1e-4: the steps of 3e-5 and -2e-5 cross 0, those of 0.5 and -1 do not."""
    report = check_layer(relu, {}, jnp.array([[0.5, 3e-5, -2e-5, -1.0]]))
    assert report.passed, str(report)
    assert report.kinks == {"cache": ((0, 1), (0, 2))}
    assert report.kink_entries == {"x": ((0, 1), (0, 2))}
    assert report.notes == [
        "numerical check unreliable here: 2 inputs on a kink (cache: 2 at (0, 1), (0, 2))",
        "judged by jax.vjp in float64 instead: the 2 entries whose step of h crosses one "
        "(x: 2 at (0, 1), (0, 2))"]
    assert str(report).splitlines()[-3:-1] == report.notes
    assert check_layer(relu, {}, away_from_zero((3, 4))).kinks == {}


def test_a_max_pooling_window_whose_top_two_are_within_a_step_is_one_kink():
    """Window 1 holds 1.0 and 1.00005: a step of either changes the winner; window 2 does not tie."""
    x = jnp.array([1.0, 1.00005, 0.2, 0.3, 0.1, 0.9, 0.5, 0.4]).reshape(1, 1, 2, 4)
    report = check_layer(pooling, {}, x, pool_h=2, pool_w=2, stride=2)
    assert report.passed, str(report)
    assert report.kinks == {"cache.arg": ((0, 0, 0, 0),)}
    assert report.kink_entries == {"x": ((0, 0, 0, 0), (0, 0, 0, 1))}


def test_a_wrong_gradient_on_a_kink_still_fails():
    """Judged by jax.vjp is judged, not skipped: a backward wrong only near 0 fails there."""
    def forward(params, x):
        y, mask = relu.forward(params, x)
        return y, (mask, x)

    def backward(cache, dy):
        mask, x = cache
        return jnp.where(mask & (jnp.abs(x) > 1e-3), dy, 0), {}

    report = check_layer(Layer(forward, backward), {}, jnp.array([[0.5, 3e-5, -2e-5, -1.0]]))
    assert report.kink_entries == {"x": ((0, 1), (0, 2))}
    assert report.numerical["x"] > 0.1 and not report.passed


def test_a_relu_net_on_a_blank_input_passes_with_its_kinks_named():
    """Biases start at 0, so a blank sample (all 0, as MNIST's border) puts every ReLU input of the
    first layer exactly on its kink: steps of b1 and of that sample's x cross it."""
    net = serial(Affine(6), Relu(), Affine(3))
    _, params, _ = net.init(KEY, (4,))
    x = jnp.zeros((2, 4)).at[0].set(jnp.array([1.0, -0.5, 0.25, 2.0]))
    report = check_layer(net, params, x)
    assert report.passed, str(report)
    assert report.kinks == {"layer 2 (Relu)": tuple((1, j) for j in range(6))}
    assert report.kink_entries == {"params['b1']": tuple((j,) for j in range(6)),
                                   "x": tuple((1, j) for j in range(4))}


# ------------------------------------------------------------------------------------ malformed backward


@pytest.mark.parametrize("backward, problem", [
    (lambda mask, dy: jnp.where(mask, dy, 0),
     "backward returned an array of shape (3, 4); it must return (dx, grads): the input's gradient and "
     "a dict with the keys of params ({} without params)"),
    (lambda mask, dy: (jnp.where(mask, dy, 0), {}, None), "backward returned a tuple of 3 values;"),
    (lambda mask, dy: (dy[0, 0, 0], {}), "backward raised IndexError: Too many indices"),
])
def test_a_malformed_backward_is_a_failed_line_not_an_exception(backward, problem):
    report = check_layer(Layer(relu.forward, backward), {}, away_from_zero((3, 4)))
    assert not report.passed and report.problems[0].startswith(problem), report.problems
    assert report.failures == list(report.problems) and str(report).splitlines()[-1] == report.problems[0]
    assert "jit == eager: not compared" in str(report)


def test_grads_with_other_keys_are_a_failed_line():
    def backward(cache, dy):
        dx, grads = affine.backward(cache, dy)
        return dx, {"W": grads["W"], "c": grads["b"]}

    report = check_layer(Layer(affine.forward, backward), affine_params(), jax.random.normal(KEY, (5, 6)))
    assert report.problems == ("backward's grads {'W': (6, 3), 'c': (3,)} do not match params "
                               "{'W': (6, 3), 'b': (3,)}",)
    assert not report.passed
