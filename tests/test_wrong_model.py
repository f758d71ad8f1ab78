"""Parameters loaded with the wrong model: the message says which model their names and shapes fit."""

import pickle

import jax
import numpy as np
import pytest
from test_feature_maps import LENET5, make_spec_run
from test_predict import make_run

from fnnet.cli import main
from fnnet.inference import load_classifier, wrong_model_hint
from fnnet.models import get_model


def book_pickle(path, model, input_shape=(1, 28, 28), **config):
    """A pickle of random weights of a built-in model, named as the book names them (its .pkl files)."""
    shapes, _ = jax.eval_shape(get_model(model, input_shape, 10, **config).init, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        pickle.dump({k: rng.normal(0, 0.05, v.shape).astype(np.float32) for k, v in shapes.items()}, f)
    return str(path)


def test_a_deep_convnet_pickle_loaded_as_simple_convnet_suggests_deep_convnet(tmp_path, capsys):
    pkl = book_pickle(tmp_path / "deep_convnet_params.pkl", "deep_convnet")
    with pytest.raises(ValueError) as e:
        load_classifier(pkl, "simple_convnet")
    line = str(e.value)
    assert "\n" not in line and line.startswith(f"load_classifier: {pkl} does not fit the model")
    assert "these parameters (W1 (16, 1, 3, 3), W2 (16, 16, 3, 3), W3 (32, 16, 3, 3)" in line
    assert line.endswith("W7 (1024, 50), W8 (50, 10)) look like deep_convnet: try model='deep_convnet' "
                         "(--model deep_convnet)")
    assert main(["predict", "--params", pkl, "--model", "simple_convnet", "x.png"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fnnet predict: error: load_classifier: ")
    assert "look like deep_convnet: try model='deep_convnet' (--model deep_convnet)" in err


def test_a_run_or_pickle_refused_at_any_check_gets_the_hint(tmp_path):
    run, _ = make_run(tmp_path / "sc", "simple_convnet", (1, 28, 28), config={"hidden_size": 20})
    for wrong in ("deep_convnet", "two_layer_net", "three_layer_net"):
        with pytest.raises(ValueError, match=r"; these parameters \(W1 \(30, 1, 5, 5\), W2 \(4320, 20\), "
                           r"W3 \(20, 10\)\) look like simple_convnet: try model='simple_convnet'"):
            load_classifier(run, wrong)
    pkl = book_pickle(tmp_path / "sample_weight.pkl", "multi_layer_net", (784,), hidden_size_list=[50, 100])
    with pytest.raises(ValueError, match=r"too few for the .* parameters of simple_convnet.*; these "
                       r"parameters \(W1 \(784, 50\), W2 \(50, 100\), W3 \(100, 10\)\) look like "
                       r"three_layer_net or multi_layer_net: try model='three_layer_net'"):
        load_classifier(pkl, "simple_convnet")


def test_a_lenet_run_loaded_as_a_built_in_model_names_its_code(tmp_path):
    run, _ = make_spec_run(tmp_path / "lenet", LENET5)
    with pytest.raises(ValueError, match=f"does not fit the model: .*; its metrics.json names the network "
                       f"{LENET5}: to load it, pass trust=True \\(--trust-run\\) instead of model="):
        load_classifier(run, "deep_convnet")


def test_no_hint_when_the_parameters_fit_the_model_or_no_model(tmp_path):
    run, _ = make_run(tmp_path / "sc", "simple_convnet", (1, 28, 28))
    assert wrong_model_hint(run, "simple_convnet", {}) is None
    odd = tmp_path / "odd.pkl"
    with open(odd, "wb") as f:
        pickle.dump({"W1": np.zeros((5, 5), np.float32)}, f)
    with pytest.raises(ValueError, match=r"; these parameters \(W1 \(5, 5\)\) fit none of two_layer_net, "
                       r".*: if they are your own network, pass model= path/to/file.py:attr"):
        load_classifier(odd, "two_layer_net")
