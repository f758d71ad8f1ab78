"""A run folder is data, never code; its metrics.json is checked and bounded before it sizes anything.

A run folder can come from anywhere (shared, downloaded), so what it says must not run code or fill
the memory: `evil.py` below marks that it ran by creating a file beside it, and the tests assert
that the mark does not appear unless the user names the code (--model) or trusts the run
(--trust-run, trust=True). Each test here failed before these checks (see the comments).
"""

import json
import math
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from bombs import peak_rss_run, sparse_file
from test_predict import draw_seven, make_run

import fnnet
from fnnet import inference
from fnnet.cli import main
from fnnet.cli.draw import choose_params
from fnnet.inference import load_classifier
from fnnet.io import save_params
from fnnet.training import RunFolderError
from fnnet.training.outputs import LOCK_FILE, lock_run_dir

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fnnet.__file__)))
MARK = "RAN"
EVIL = f"""
import pathlib

pathlib.Path(__file__).with_name({MARK!r}).touch()

from fnnet.layers import Affine, serial

net = serial(Affine(10))
"""
PEAK_MB = 400


def write_metrics(folder, run, input_shape) -> str:
    path = os.path.join(folder, "metrics.json")
    with open(path, "w") as f:
        json.dump({"run": run, "input_shape": input_shape, "history": {"loss": [2.3]}}, f)
    return path


def evil_run(folder, shape=(1, 28, 28), dataset="mnist"):
    """A run folder whose metrics.json names the code in its own evil.py (as given: relative to the
    working folder); returns (params path, spec, the file that appears when evil.py runs)."""
    os.makedirs(folder)
    with open(os.path.join(folder, "evil.py"), "w") as f:
        f.write(EVIL)
    rng = np.random.default_rng(0)
    save_params({"W1": rng.normal(0, 0.05, (math.prod(shape), 10)).astype(np.float32),
                 "b1": np.zeros(10, np.float32)}, os.path.join(folder, "params.npz"))
    spec = f"{folder}/evil.py:net"
    write_metrics(folder, {"model": spec, "config": {}, "dataset": dataset}, list(shape))
    return os.path.join(folder, "params.npz"), spec, os.path.join(folder, MARK)


def error_line(capsys, command):
    """The one line on stderr of a refused command."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"fnnet {command}: error: "), err
    return err


# --- 1. a run folder is data, never code ------------------------------------------------------

def test_predict_and_load_classifier_run_no_code_that_a_run_folder_names(tmp_path, monkeypatch, capsys):
    # before: `fnnet predict --params runs/x/params.npz` imported and ran runs/x/evil.py
    monkeypatch.chdir(tmp_path)
    params, spec, mark = evil_run("runs/x")
    draw_seven("seven.png")
    assert main(["predict", "--params", params, "seven.png"]) == 1
    err = error_line(capsys, "predict")
    assert ("runs/x/metrics.json names the code runs/x/evil.py:net; fnnet does not run code from a run "
            "folder: pass --model runs/x/evil.py:net or --trust-run if you trust it") in err, err
    assert not os.path.exists(mark)
    with pytest.raises(ValueError, match="names the code runs/x/evil.py:net") as e:
        load_classifier(params)
    assert type(e.value) is inference.UntrustedCodeError and e.value.spec == spec
    assert not os.path.exists(mark)
    for allow in (["--model", spec], ["--trust-run"]):  # the user names the code, or trusts the run
        assert main(["predict", "--params", params, *allow, "seven.png"]) == 0, capsys.readouterr().err
        assert capsys.readouterr().out.startswith("seven.png: ") and os.path.exists(mark)
        os.unlink(mark)
    assert load_classifier(params, trust=True).name == f"{spec} ({params})" and os.path.exists(mark)


def test_eval_runs_no_code_that_a_run_folder_names(tmp_path, monkeypatch, capsys):
    # before: `fnnet eval --params runs/d/params.npz` imported and ran runs/d/evil.py
    monkeypatch.chdir(tmp_path)
    params, spec, mark = evil_run("runs/d", (1, 8, 8), "digits")
    assert main(["eval", "--params", params]) == 1
    assert f"names the code {spec}; fnnet does not run code from a run folder: pass --model {spec} or " \
           "--trust-run" in error_line(capsys, "eval")
    assert not os.path.exists(mark)
    assert main(["eval", "--params", params, "--trust-run"]) == 0  # (--model: test_cli_your_network)
    assert f"({os.path.abspath(spec)} on digits, 359 test images" in capsys.readouterr().out
    assert os.path.exists(mark)


def test_draws_default_pick_passes_over_runs_that_name_code_or_are_damaged(tmp_path, monkeypatch):
    # before: `fnnet draw` picked the newest run and ran its evil.py; a deeply nested metrics.json
    # beside a valid run stopped it with RecursionError
    monkeypatch.chdir(tmp_path)
    good, _ = make_run("runs/good", "two_layer_net", (784,), config={"hidden_size": 5})
    evil, _, mark = evil_run("runs/x")
    os.makedirs("runs/deep")
    save_params({"W1": np.zeros((784, 5), np.float32)}, "runs/deep/params.npz")
    with open("runs/deep/metrics.json", "w") as f:
        f.write("[" * 100_000)
    for i, path in enumerate((good, evil, "runs/deep/params.npz")):
        os.utime(path, (1e9 + i, 1e9 + i))  # the valid run is the oldest
    assert choose_params(None, None) == (good, None, "the newest run in runs/")
    lines = []
    assert choose_params(None, None, warn=lines.append) == (good, None, "the newest run in runs/")
    assert len(lines) == 1, lines
    assert lines[0].startswith("fnnet draw: passing over 2 newer run(s) in runs/: "), lines
    assert "runs/deep/params.npz (cannot use runs/deep/metrics.json: it holds 100,000 lists" in lines[0]
    assert f"{evil} (its metrics.json names the code runs/x/evil.py:net; fnnet draw --params {evil} " \
           "--trust-run runs it)" in lines[0]
    assert not os.path.exists(mark)


def test_fnnet_draw_loads_code_from_a_run_only_when_trusted(tmp_path, monkeypatch, capsys):
    web = pytest.importorskip("fnnet.web", reason="the draw extra (starlette, uvicorn) is not installed")
    served = []
    monkeypatch.setattr(web, "serve", lambda clf, host, port: served.append(clf.name))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FNNET_BOOK_WEIGHTS_DIR", raising=False)
    evil, spec, mark = evil_run("runs/x")
    assert main(["draw"]) == 1  # the only run names code: nothing to draw for, and nothing ran
    err = capsys.readouterr().err
    assert "passing over 1 newer run(s)" in err and "no model to draw for" in err and not os.path.exists(mark)
    assert main(["draw", "--params", evil]) == 1
    assert "names the code runs/x/evil.py:net" in error_line(capsys, "draw") and not os.path.exists(mark)
    with pytest.raises(SystemExit) as e:
        main(["draw", "--trust-run"])
    assert e.value.code == 2 and "--trust-run: trusts the run that --params names" in capsys.readouterr().err
    assert main(["draw", "--params", evil, "--trust-run"]) == 0
    assert served == [f"{spec} ({evil})"] and os.path.exists(mark)


# --- 5. metrics.json is validated and bounded ---------------------------------------------------

def _case(run=None, shape=(784,), **top):
    run = {"model": "two_layer_net", "config": {"hidden_size": 5}, "dataset": "mnist", **(run or {})}
    return json.dumps({"run": run, "input_shape": list(shape), **top})


DEEP = "it nests lists and objects deeper than 32 levels"
BAD_METRICS = {
    "hidden_size": (_case({"config": {"hidden_size": 5_000_000}}),
                    "run.config.hidden_size must be an integer in 1..1,048,576, got 5000000"),
    "bool size": (_case({"config": {"hidden_size": True}}), "run.config.hidden_size must be an integer"),
    "list length": (_case({"model": "multi_layer_net", "config": {"hidden_size_list": [5] * 1000}}),
                    "run.config.hidden_size_list must be a list of 1..100 sizes"),
    "list value": (_case({"model": "multi_layer_net", "config": {"hidden_size_list": [5, 0]}}),
                   "run.config.hidden_size_list[1] must be an integer in 1..1,048,576, got 0"),
    "filters": (_case({"model": "simple_convnet", "config": {"conv_param": {"filter_num": 10**9}}},
                      (1, 28, 28)), "run.config.conv_param.filter_num must be an integer in 1..65,536"),
    "dims": (_case(shape=[1] * 9), "input_shape must be a list of 1..4 sizes"),
    "product": (_case(shape=(4096, 4096, 4096)),
                "input_shape [4096, 4096, 4096] holds 68,719,476,736 values"),
    "model name": (_case({"model": "two_layer_net\nfnnet: all is well"}),
                   "run.model must be a printable string"),
    "dataset": (_case({"dataset": "x" * 100}), "run.dataset must be a printable string of 1..64 characters"),
    "run": (json.dumps({"run": ["two_layer_net"]}), "run must be an object, got ['two_layer_net']"),
    "top": (json.dumps([1, 2]), "it holds [1, 2], not an object"),
    "depth": ("[" * 40 + "]" * 40, DEEP),
    "recursion": ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", DEEP),
    "containers": ("[" + ",".join(["[]"] * 20_000) + "]",
                   "it holds 20,001 lists and objects, more than 10,000"),
    "string": (_case(note="x" * 5000), "it holds a string of 5,000 characters, more than 4,096"),
    "json": ("{", "it is not valid JSON (Expecting property name"),
}


@pytest.fixture(scope="module")
def small_params(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "r"
    return make_run(folder, "two_layer_net", (784,), config={"hidden_size": 5})[0]


@pytest.mark.parametrize("case", sorted(BAD_METRICS))
def test_a_metrics_json_out_of_bounds_is_a_one_line_refusal(case, small_params, tmp_path):
    # before: sizes were used as given (hidden_size=5000000 allocated GBs), a deep nesting raised
    # RecursionError, other damage was ignored and blamed on a missing metrics.json
    text, reason = BAD_METRICS[case]
    params = tmp_path / "params.npz"
    params.write_bytes(open(small_params, "rb").read())
    (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(ValueError) as e:
        load_classifier(params)
    assert str(e.value).startswith(f"load_classifier: cannot use {tmp_path / 'metrics.json'}: "), str(e.value)
    assert reason in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("text,reason", [
    ("[" * 100_000, "it holds 100,000 lists and objects, more than 10,000"),
    ('{"run": ' + "[" * 5000, DEEP),
])
def test_eval_and_predict_refuse_a_deeply_nested_metrics_json_in_one_line(tmp_path, capsys, text, reason):
    # before: RecursionError in both commands
    params = tmp_path / "params.npz"
    save_params({"W1": np.zeros((64, 5), np.float32)}, params)
    (tmp_path / "metrics.json").write_text(text)
    draw_seven(tmp_path / "seven.png")
    for command, argv in (("eval", ["--dataset", "digits"]), ("predict", [str(tmp_path / "seven.png")])):
        assert main([command, "--params", str(params), *argv]) == 1
        assert f"metrics.json: {reason}" in error_line(capsys, command)


def test_sizes_from_metrics_json_are_refused_before_anything_is_allocated(tmp_path):
    # before: hidden_size=5000000 in a 10 KB metrics.json made `fnnet eval` reach 5.2 GB, then
    # MemoryError; a 262 MB metrics.json (under the old 256 MiB cap) cost 2.9 GB. The child may use
    # at most 1 GiB of data, so the old code fails here with an allocation error, not a swap storm.
    cases = {}
    for name, hidden, dataset, shape in (("huge", 5_000_000, "digits", [64]), ("many", 10**6, "digits", [64]),
                                         ("mnist", 10**6, "mnist", [784]), ("file", 50, "digits", [64])):
        folder = tmp_path / name
        params, _ = make_run(folder, "two_layer_net", tuple(shape), dataset, config={"hidden_size": 50})
        run = {"model": "two_layer_net", "config": {"hidden_size": hidden}, "dataset": dataset}
        write_metrics(folder, run, shape)
        cases[name] = params
    sparse_file(tmp_path / "file" / "metrics.json", 262_000_000, b'{"run": {"model": "two_layer_net"}, ')
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([TESTS, ROOT]))
    env.pop("FNNET_DATA_DIR", None)
    r = peak_rss_run(f"""
import resource
resource.setrlimit(resource.RLIMIT_DATA, (2**30, 2**30))
import contextlib, io
from fnnet.cli import main
from fnnet.inference import load_classifier
result = {{}}
for name in ('huge', 'many', 'file'):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        result[name + '_rc'] = main(['eval', '--params', {cases!r}[name]])
    result[name] = err.getvalue()
try:
    load_classifier({cases['mnist']!r})
except ValueError as e:
    result['load_classifier'] = str(e)
""", env=env)
    for name in ("huge", "many", "file"):
        assert r[name + "_rc"] == 1 and r[name].count("\n") == 1, r
    assert "run.config.hidden_size must be an integer in 1..1,048,576, got 5000000" in r["huge"], r
    many = 64 * 10**6 + 10**6 + 10**7 + 10  # W1, b1, W2, b2
    assert f"too few for the {many:,} parameters of two_layer_net {{'hidden_size': 1000000}} for input " \
           "(64,)" in r["many"], r
    assert "is 262,000,000 bytes, more than the 16,777,216 a file of this kind may hold" in r["file"], r
    assert f"too few for the {many + 720 * 10**6:,} parameters" in r["load_classifier"], r
    assert r["peak_mb"] < PEAK_MB, r


@pytest.mark.parametrize("metrics", ["code", "another model"])
def test_a_book_pickle_in_a_run_folder_is_read_from_its_own_arrays(tmp_path, capsys, metrics):
    # before: `fnnet eval --params run/params.pkl` read the folder's metrics.json: it ran the code
    # it named, or built its model for the pickle and refused it
    params, _, mark = evil_run(str(tmp_path / "run"), (1, 8, 8), "digits")
    if metrics == "another model":
        write_metrics(tmp_path / "run", {"model": "two_layer_net", "config": {"hidden_size": 7},
                                         "dataset": "mnist"}, [784])
    rng = np.random.default_rng(0)
    shapes = {"W1": (3, 1, 5, 5), "b1": (3,), "W2": (12, 20), "b2": (20,), "W3": (20, 10), "b3": (10,)}
    with open(tmp_path / "run" / "params.pkl", "wb") as f:  # a SimpleConvNet for 8x8 inputs, pickled
        pickle.dump({k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in shapes.items()}, f)
    assert main(["eval", "--params", str(tmp_path / "run" / "params.pkl"), "--dataset", "digits"]) == 0
    assert "(simple_convnet on digits, 359 test images" in capsys.readouterr().out
    assert not os.path.exists(mark)


# --- 6. smaller items ---------------------------------------------------------------------------

# What lock_run_dir does when a run starts: the lock is held, the file still says what it said.
HOLD = ("import fcntl, sys; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('held', flush=True); sys.stdin.read()")


def test_the_lock_refusal_does_not_name_the_previous_runs_dead_pid(tmp_path):
    # before: a run holds the lock from its start but writes its pid only once training starts;
    # until then the file names the previous run, and the refusal named that ended process
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / LOCK_FILE).write_text(f"pid {dead}, started 2020-01-01T00:00:00+00:00")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / LOCK_FILE)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError) as e:
            lock_run_dir(tmp_path, fn="fit")
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    message = str(e.value)
    assert f"pid {dead}" not in message, message
    assert (f"in use by another fnnet run (pid {holder.pid}, which has not recorded its start yet)" in message
            or "in use by another fnnet run (a run that has not recorded its pid yet)" in message), message


def test_predict_show_refuses_to_overwrite_an_input_image(small_params, tmp_path, capsys):
    # before: `fnnet predict --show seven.png seven.png` replaced the image with the figure
    seven = draw_seven(tmp_path / "seven.png")
    before = open(seven, "rb").read()
    os.symlink(seven, tmp_path / "link.png")
    for show in (str(tmp_path / "." / "seven.png"), str(tmp_path / "link.png")):
        assert main(["predict", "--params", small_params, "--show", show, seven]) == 1
        assert f"--show {show} is the input image {seven}: the figure would overwrite it" in \
            error_line(capsys, "predict")
        assert open(seven, "rb").read() == before


def test_a_missing_params_file_is_said_first(tmp_path, monkeypatch, capsys):
    # before: "no metrics.json beside missing.npz says which network it holds"
    monkeypatch.chdir(tmp_path)
    for command, argv in (("predict", ["seven.png"]), ("eval", []), ("draw", [])):
        if command == "draw":
            pytest.importorskip("fnnet.web", reason="the draw extra (starlette, uvicorn) is not installed")
        assert main([command, "--params", "missing.npz", *argv]) == 1
        assert error_line(capsys, command).startswith(f"fnnet {command}: error: no such file: missing.npz")
    with pytest.raises(FileNotFoundError, match="load_classifier: no such file: missing.npz"):
        load_classifier("missing.npz")

