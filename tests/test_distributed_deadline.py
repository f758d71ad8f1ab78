"""fnnet.distributed.initialize keeps a deadline: when the processes of a run do not all join the
coordinator in time, every process fails with one line (DistributedInitError) that names the
coordinator and the missing processes, instead of hanging for JAX's 300 s and aborting (exit 134)
with a C++ stack trace. The coordinator's port and the timeout are checked before anything starts.

The joins run in real subprocesses (`python -c`), each under a subprocess timeout so that a hang fails
the test instead of blocking the suite.
"""

import os
import socket
import subprocess
import sys
import time

import jax
import pytest

from fnnet import distributed

LIMIT_S = 60  # a subprocess still running after this has hung: the test fails
PROMPT_S = 40  # "promptly": a 3-4 s deadline plus the imports of a loaded machine
ENV_INIT_TIMEOUT = "FNNET_INIT_TIMEOUT"  # the default timeout, when initialize is given none

JOIN = (
    "import sys\n"
    "from fnnet import distributed\n"
    "coordinator, n, i, timeout = sys.argv[1:5]\n"
    "kw = {'timeout': int(timeout)} if timeout else {}\n"
    "try:\n"
    "    distributed.initialize(coordinator, int(n), int(i), **kw)\n"
    "except Exception as e:\n"
    "    print(f'{type(e).__name__}: {e}')\n"
    "    sys.exit(3)\n"
    "import jax\n"
    "print(f'joined as process {jax.process_index()} of {jax.process_count()}')\n"
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(coordinator, n, i, timeout="", **env):
    full = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    for var in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID,
                ENV_INIT_TIMEOUT):
        full.pop(var, None)
    full.update(env)
    cmd = [sys.executable, "-c", JOIN, coordinator, str(n), str(i), str(timeout)]
    proc = subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, time.monotonic()


def _finish(started):
    """(exit status, stdout stripped, stderr, seconds) of a process from _start; fails the test when
    it runs past LIMIT_S."""
    proc, t0 = started
    try:
        out, err = proc.communicate(timeout=max(1.0, LIMIT_S - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"initialize hung for {LIMIT_S} s; stdout {out[-500:]!r}, stderr {err[-1500:]!r}")
    return proc.returncode, out.strip(), err, time.monotonic() - t0


def _failed_in_one_line(result, message):
    rc, out, err, seconds = result
    assert rc == 3, f"exit status {rc} (134: JAX aborted), stdout {out!r}, stderr {err[-1500:]!r}"
    assert out == f"DistributedInitError: {message}", err[-1500:]
    assert "stack trace" not in err and "Terminating process" not in err, err[-1500:]
    assert seconds < PROMPT_S, f"took {seconds:.1f} s"


# ----------------------------------------------------------------------------- real joins


def test_process_0_alone_fails_at_the_deadline():
    coordinator = f"127.0.0.1:{_free_port()}"
    _failed_in_one_line(
        _finish(_start(coordinator, 2, 0, 3)),
        f"initialize: the processes did not all join the coordinator {coordinator} within 3 s "
        "(this is process 0 of 2; missing: process 1)",
    )


def test_process_1_without_a_coordinator_fails_at_the_deadline():
    coordinator = f"127.0.0.1:{_free_port()}"  # nobody listens there
    _failed_in_one_line(
        _finish(_start(coordinator, 2, 1, 3)),
        f"initialize: could not reach the coordinator {coordinator} within 3 s (this is process 1 of 2; "
        "last error: Connection refused); is process 0 running and the address right?",
    )


def test_every_process_names_the_missing_one():
    """3 processes, process 2 never comes. Process 1 (deadline 30 s) starts first and retries until
    process 0 listens; process 0's deadline comes from FNNET_INIT_TIMEOUT=4, and when it gives up,
    process 1 fails at once too, naming the process that process 0 told it is missing."""
    coordinator = f"127.0.0.1:{_free_port()}"
    one = _start(coordinator, 3, 1, 30)
    zero = _start(coordinator, 3, 0, **{ENV_INIT_TIMEOUT: "4"})
    _failed_in_one_line(
        _finish(zero),
        f"initialize: the processes did not all join the coordinator {coordinator} within 4 s "
        "(this is process 0 of 3; missing: process 2)",
    )
    _failed_in_one_line(
        _finish(one),
        f"initialize: the coordinator {coordinator} closed the connection before all processes joined "
        "(this is process 1 of 3; missing: process 2)",
    )


def test_two_processes_join_within_the_deadline():
    """The handshake before JAX does not get in its way: process 1 starts a second after process 0,
    both join, and JAX sees 2 processes. (Process 1 retrying until process 0 listens is in the test
    above.)"""
    coordinator = f"127.0.0.1:{_free_port()}"
    zero = _start(coordinator, 2, 0, 30)
    time.sleep(1)
    one = _start(coordinator, 2, 1, 30)
    for i, result in enumerate([_finish(zero), _finish(one)]):
        rc, out, err, _ = result
        assert (rc, out) == (0, f"joined as process {i} of 2"), err[-1500:]


def test_a_port_in_use_fails_at_once():
    with socket.create_server(("", 0)) as busy:
        port = busy.getsockname()[1]
        coordinator = f"127.0.0.1:{port}"
        rc, out, err, _ = _finish(_start(coordinator, 2, 0, 30))
    assert rc == 3, (rc, out, err[-1500:])
    assert out.startswith(f"DistributedInitError: initialize: process 0 cannot listen on port {port} "
                          f"for the coordinator {coordinator}: "), out
    assert out.endswith("; choose a free port"), out


# ----------------------------------------------------------------------------- checked before anything


@pytest.fixture
def no_jax_join(monkeypatch):
    """jax.distributed.initialize must not be reached (it would hang or abort this process)."""
    for var in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID,
                ENV_INIT_TIMEOUT):
        monkeypatch.delenv(var, raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError(f"jax.distributed.initialize was called with {args} {kwargs}")

    monkeypatch.setattr(jax.distributed, "initialize", refuse)
    return monkeypatch


@pytest.mark.parametrize("coordinator, message", [
    ("127.0.0.1:0", r"the port of coordinator '127\.0\.0\.1:0' must be an integer from 1 to 65535, got '0'"),
    ("127.0.0.1:99999", r"the port of coordinator '127\.0\.0\.1:99999' must be an integer from 1 to 65535"),
    ("127.0.0.1:abc", r"the port of coordinator '127\.0\.0\.1:abc' must be an integer from 1 to 65535"),
    ("abc", r"coordinator must be 'host:port', got 'abc'"),
    ("127.0.0.1", r"coordinator must be 'host:port', got '127\.0\.0\.1'"),
    ("127.0.0.1:", r"coordinator must be 'host:port', got '127\.0\.0\.1:'"),
    (":1234", r"coordinator must be 'host:port', got ':1234'"),
    ("::1:1234", r"coordinator must be 'host:port' with an IPv6 host in brackets \('\[::1\]:1234'\), "
                 r"got '::1:1234'"),
])
def test_the_coordinator_is_checked_at_once(no_jax_join, coordinator, message):
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=rf"^initialize: {message}"):
        distributed.initialize(coordinator, 2, 1)
    no_jax_join.setenv(distributed.ENV_COORDINATOR, coordinator)
    with pytest.raises(ValueError, match=rf"^initialize: {message}"):
        distributed.initialize(None, 2, 1)
    assert time.monotonic() - t0 < 1


@pytest.mark.parametrize("value", ["0", "-5", "abc", "2.5", "1e3"])
def test_a_bad_init_timeout_variable_is_refused(no_jax_join, value):
    no_jax_join.setenv(ENV_INIT_TIMEOUT, value)
    message = rf"^initialize: FNNET_INIT_TIMEOUT must be a whole number of seconds >= 1, got '{value}'$"
    with pytest.raises(ValueError, match=message):
        distributed.initialize("127.0.0.1:1234", 2, 1)
    assert distributed.initialize() is False  # read only in a multi-process run


def test_a_bad_timeout_argument_is_refused(no_jax_join):
    for bad in (0, -3):
        with pytest.raises(ValueError, match=rf"^initialize: timeout must be a whole number of seconds >= 1, "
                                             rf"got {bad}$"):
            distributed.initialize("127.0.0.1:1234", 2, 1, timeout=bad)
    for bad in (2.5, "5", True, [5]):
        with pytest.raises(TypeError, match=r"^initialize: timeout must be a whole number of seconds >= 1"):
            distributed.initialize("127.0.0.1:1234", 2, 1, timeout=bad)
    with pytest.raises(ValueError, match="timeout must be"):  # an argument is checked even in one process
        distributed.initialize(timeout=0)
    with pytest.raises(TypeError):
        distributed.initialize("127.0.0.1:1234", 2, 1, 30)  # keyword only


def test_an_error_from_jax_becomes_one_line(monkeypatch):
    for var in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(var, raising=False)
    seen = {}

    def fail(*args, **kwargs):
        seen.update(args=args, kwargs=kwargs)
        raise jax.errors.JaxRuntimeError("UNKNOWN: Failed to start RPC server\nmore detail")

    monkeypatch.setattr(jax.distributed, "initialize", fail)
    coordinator = f"127.0.0.1:{_free_port()}"
    with pytest.raises(distributed.DistributedInitError) as info:
        distributed.initialize(coordinator, 1, 0, timeout=7)  # one process: nobody to wait for
    assert str(info.value) == (
        f"initialize: jax.distributed.initialize failed with the coordinator {coordinator} "
        "(this is process 0 of 1): UNKNOWN: Failed to start RPC server"
    )
    # JAX's own timeouts come after fnnet's; its service listens where the handshake did
    later = 7 + distributed.JAX_INIT_GRACE_S
    assert seen == {"args": (coordinator, 1, 0), "kwargs": {
        "initialization_timeout": later, "heartbeat_timeout_seconds": max(distributed.JAX_HEARTBEAT_S, later),
        "coordinator_bind_address": coordinator}}
    assert isinstance(info.value, RuntimeError)
