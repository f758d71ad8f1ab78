"""fnnet.distributed: the mesh, its errors, and parity with one device (subprocesses, forced CPU devices).

The pytest process has already started JAX with one CPU device, so every multi-device check runs
tests/_distributed_worker.py in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from fnnet import distributed

WORKER = os.path.join(os.path.dirname(__file__), "_distributed_worker.py")
TOL = 1e-5
# MultiLayerNet with Batch Norm: the biases of the affine layers in front of Batch Norm have a zero
# gradient in exact arithmetic (Batch Norm removes any shift), so theirs is rounding noise, which Adam
# divides by its own square root into steps of about lr; the running means add these biases up. These
# leaves follow the order of summation, not the device count (the same run on one device with each
# batch's samples reversed differs by more); every other leaf must match.
ADAM_BN_NOISE = {f"['params']['b{i}']" for i in (1, 2, 3)} | {
    f"['state']['running_mean{i}']" for i in (1, 2, 3)
}


def _env(devices, **extra):
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    for var in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        env.pop(var, None)
    env.update(extra)
    return env


def _run_worker(tmp_path, devices, *args, timeout=600):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, WORKER, args[0], str(out), *args[1:]],
        env=_env(devices), capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def _check(case, res, exclude=frozenset()):
    bad = {k: v for k, v in res["leaf_diff"].items() if v > TOL and k not in exclude}
    assert not bad, f"{case}: leaves beyond {TOL}: {bad}"
    assert res["loss_diff"] <= TOL, f"{case}: losses differ by {res['loss_diff']}"
    assert res["test_acc"] == res["test_acc_ref"], f"{case}: {res['test_acc']} vs {res['test_acc_ref']}"


# The tests that read the parity run's figures share one run of it: pytest-xdist keeps them on one worker.
ON_PARITY_WORKER = pytest.mark.xdist_group("distributed-parity")


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    cases = "two_layer_net=1+2+4,multi_layer_net,multi_layer_net_momentum,simple_convnet"
    return _run_worker(tmp_path_factory.mktemp("parity"), 4, "parity", cases)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["two_layer_net", "multi_layer_net_momentum", "simple_convnet"])
@ON_PARITY_WORKER
def test_fit_on_devices_matches_one_device(parity, case):
    for devices, res in parity["models"][case].items():
        _check(f"{case} on {devices} devices", res)


@pytest.mark.slow
@ON_PARITY_WORKER
def test_fit_on_a_one_device_mesh_is_bit_identical(parity):
    assert parity["models"]["two_layer_net"]["1"]["max_abs_diff"] == 0.0


@pytest.mark.slow
@ON_PARITY_WORKER
def test_parity_batch_norm_dropout_adam(parity):
    res = parity["models"]["multi_layer_net"]["4"]
    _check("multi_layer_net (adam) on 4 devices", res, exclude=ADAM_BN_NOISE)
    assert set(res["leaf_diff"]) >= ADAM_BN_NOISE


@pytest.mark.slow
@ON_PARITY_WORKER
def test_compiler_splits_the_batch_and_all_reduces(parity):
    assert parity["hlo"] == {"all_reduce": True, "local_rows": True}


@pytest.mark.slow
@ON_PARITY_WORKER
def test_random_draws_do_not_depend_on_the_device_count(parity):
    assert parity["random_draws_equal"] is True


@pytest.mark.slow
def test_a_checkpoint_from_4_devices_resumes_on_1_or_2(tmp_path):
    report = _run_worker(tmp_path, 4, "resume", str(tmp_path / "runs"))
    for devices, res in report["models"].items():
        _check(f"4-device checkpoint resumed on {devices} device(s)", res)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_device(tmp_path):
    out = tmp_path / "report.json"
    port = _free_port()
    cmd = [sys.executable, WORKER, "processes", str(out), "multi_layer_net_momentum,simple_convnet"]
    coordinator = {distributed.ENV_COORDINATOR: f"127.0.0.1:{port}", distributed.ENV_NUM_PROCESSES: "2"}
    procs = [
        subprocess.Popen(
            cmd, env=_env(2, **coordinator, **{distributed.ENV_PROCESS_ID: str(i)}),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=600)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, (p, log) in enumerate(zip(procs, logs, strict=True)):
        assert p.returncode == 0, f"process {i}:\n{log[-3000:]}"
    report = json.loads(out.read_text())
    assert report["processes"] == 2 and report["devices"] == 4
    assert report["local_rows"] == [0, 50]
    assert sorted(pi for _, pi in report["mesh"]) == [0, 0, 1, 1]
    assert "needs the same number of devices from each, got {0: 1, 1: 0}" in report["mesh_error"]
    assert set(report["models"]) == {"multi_layer_net_momentum", "simple_convnet"}
    for case, runs in report["models"].items():
        _check(f"{case} on 2 processes x 2 devices", runs["all"])


# ----------------------------------------------------------------------------- in this process (1 device)


def test_make_mesh_none_and_one_device():
    assert distributed.make_mesh(None) is None
    assert distributed.device_count(None) == 1
    mesh = distributed.make_mesh(1)
    assert mesh.axis_names == ("data",) and mesh.devices.tolist() == jax.devices()[:1]
    assert distributed.make_mesh(mesh) is mesh
    assert distributed.make_mesh("all").size == len(jax.devices())
    assert distributed.make_mesh(list(jax.devices())).size == len(jax.devices())


def test_make_mesh_errors():
    n = len(jax.devices())
    with pytest.raises(ValueError, match=rf"devices={n + 3} but only {n} device\(s\) are available"):
        distributed.make_mesh(n + 3)
    with pytest.raises(ValueError, match="devices must be >= 1, got 0"):
        distributed.make_mesh(0)
    with pytest.raises(ValueError, match=r"one axis named 'data', got axes \('batch',\)"):
        distributed.make_mesh(Mesh(np.array(jax.devices()[:1]), ("batch",)))
    with pytest.raises(TypeError, match="got bool"):
        distributed.make_mesh(True)
    with pytest.raises(ValueError, match="empty list"):
        distributed.make_mesh([])
    with pytest.raises(TypeError, match="jax.Device objects, got 3"):
        distributed.make_mesh([3])
    with pytest.raises(ValueError, match="got 'some'"):
        distributed.make_mesh("some")


def test_indivisible_batch_size():
    distributed.check_batch(7, distributed.make_mesh(1), fn="fit")
    distributed.check_batch(7, None)

    class Four:  # check_batch reads only the device count
        shape = {"data": 4}

    with pytest.raises(ValueError, match=r"fit: batch_size 30 is not divisible by the 4 devices.*28 or 32"):
        distributed.check_batch(30, Four(), fn="fit")
    with pytest.raises(ValueError, match=r"^check_batch: batch_size 3 is not divisible .* \(e\.g\. 4\)"):
        distributed.check_batch(3, Four())
    distributed.check_batch(32, Four())


def test_indivisible_batch_size_in_a_subprocess(tmp_path):
    code = (
        "import numpy as np\n"
        "from fnnet import distributed\n"
        "mesh = distributed.make_mesh(4)\n"
        "for f in (lambda: distributed.check_batch(30, mesh, fn='fit'),\n"
        "          lambda: distributed.put_sharded(np.zeros((2, 30), 'int32'), mesh, axis=1)):\n"
        "    try:\n"
        "        f()\n"
        "    except ValueError as e:\n"
        "        print(e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_env(4), capture_output=True, text=True,
                          timeout=120)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout + proc.stderr
    assert lines[0].startswith("fit: batch_size 30 is not divisible by the 4 devices it is split over")
    assert lines[1].startswith("put_sharded: axis 1 of shape (2, 30): length 30 is not divisible by the 4")


def test_shardings():
    mesh = distributed.make_mesh(1)
    assert distributed.replicated(mesh).spec == P()
    assert distributed.batch_sharding(mesh, 2, 1).spec == P(None, "data")
    assert distributed.batch_sharding(mesh, 3).spec == P("data")
    with pytest.raises(ValueError, match=r"axis must be in \[0, 2\) for ndim 2, got 2"):
        distributed.batch_sharding(mesh, 2, 2)


def test_eval_batches_pad_to_the_device_count():
    x, t = np.arange(7 * 3, dtype=np.float32).reshape(7, 3), np.arange(7, dtype=np.int32)
    xb, tb, n = distributed.eval_batches(x, t, 5, None)
    assert (xb.shape, tb.shape, n) == ((2, 5, 3), (2, 5), 7)
    assert tb.tolist() == [[0, 1, 2, 3, 4], [5, 6, -1, -1, -1]]
    with pytest.raises(ValueError, match=r"got batch_size 0, x \(7, 3\), labels \(7,\)"):
        distributed.eval_batches(x, t, 0, None)


def test_process_slice_and_put_local_on_one_process():
    mesh = distributed.make_mesh(1)
    assert distributed.process_slice(mesh, 8) == slice(0, 8)
    a = distributed.put_local(np.arange(8).reshape(2, 4), mesh, axis=1)
    assert a.shape == (2, 4) and a.sharding.spec == P(None, "data")
    with pytest.raises(ValueError, match=r"holds rows 0:8 of axis 0 \(8 rows\) but local has 4"):
        distributed.put_local(np.arange(4), mesh, axis=0, size=8)


def test_put_replicated_copies():
    mesh = distributed.make_mesh(1)
    a = jax.device_put(np.ones(3, np.float32), distributed.replicated(mesh))
    b = distributed.put_replicated({"a": a}, mesh)["a"]
    assert b is not a and b.sharding == distributed.replicated(mesh)
    b.delete()
    assert np.asarray(a).tolist() == [1, 1, 1]


def test_initialize_single_process_and_errors(monkeypatch):
    for var in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(var, raising=False)
    assert distributed.initialize() is False
    assert distributed.is_main_process()
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "2")
    with pytest.raises(ValueError, match="missing coordinator, process_id"):
        distributed.initialize()
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "two")
    with pytest.raises(ValueError, match="FNNET_NUM_PROCESSES must be an integer, got 'two'"):
        distributed.initialize()
    with pytest.raises(ValueError, match="coordinator must be 'host:port', got 'localhost'"):
        distributed.initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match="got num_processes=2, process_id=2"):
        distributed.initialize("127.0.0.1:1234", 2, 2)


@pytest.mark.slow
def test_cli_over_two_processes_matches_one_device(tmp_path):
    """`fnnet train --coordinator ... --num-processes 2 --process-id I` on 2 CPU devices each: only
    process 0 prints and writes, and the parameters equal those of a 1-device run within 1e-5."""
    port = _free_port()
    argv = ["-m", "fnnet.cli", "train", "--dataset", "digits", "--epochs", "2", "--no-progress"]
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    one = subprocess.run([sys.executable, *argv, "--out", str(tmp_path / "one")], env=_env(1, **env),
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    many = ["--out", str(tmp_path / "two"), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    procs = [subprocess.Popen([sys.executable, *argv, *many, "--process-id", str(i)], env=_env(2, **env),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = []
    try:
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert "devices all" in outs[0][0] and "test accuracy" in outs[0][0]
    assert "epoch" not in outs[1][0] and "fnnet train" not in outs[1][0]  # (gloo's own lines may be there)
    with np.load(tmp_path / "one" / "params.npz") as a, np.load(tmp_path / "two" / "params.npz") as b:
        for k in ("W1", "b1", "W2", "b2"):
            np.testing.assert_allclose(a[k], b[k], atol=1e-5, rtol=0)
