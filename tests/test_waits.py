"""Every wait has a deadline: an MNIST download as a whole (connection, status line, headers, body),
a file:// mirror that is not a regular file (the download bars follow `fnnet train --no-progress`),
and the processes of a multi-process run, which listen on the coordinator's address only, refuse
forged handshake lines without stopping, and stop in one line (exit status 75) when one of them
dies, freezes or ends early, instead of JAX's abort with a C++ stack trace.

The mirrors are HTTP servers on 127.0.0.1 in threads of the test that send one byte every 0.2 s,
and stop by themselves after TRICKLE_S, so a download without a deadline fails the test instead of
hanging it. The processes are real (`python -c RUN`), each under a limit; those that start two or
three JAX processes are marked slow.
"""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import pytest
from test_data_limits import tried_lines
from test_datasets import synthetic_mnist, write_set

from fnnet import distributed
from fnnet.cli import main
from fnnet.datasets import MNIST_FILES, MNISTNotFoundError, load_mnist
from fnnet.datasets import mnist as mnist_module

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = MNIST_FILES
DEADLINE_S = 2  # FNNET_MNIST_DEADLINE in these tests
MARGIN_S = 2.5  # a download abandoned at the deadline has ended this much later at most
TRICKLE_S = 15  # a trickling mirror gives up after this: a client without a deadline waits this long
ABANDONED = "abandoned (the deadline is $FNNET_MNIST_DEADLINE or DOWNLOAD_DEADLINE_S)"


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No data dir, mirrors or proxies from the outside; a private user cache; a 2 s deadline, and
    each wait of a download as long as the deadline (the trickles send a byte well within it)."""
    for var in ("FNNET_DATA_DIR", "FNNET_MNIST_MIRRORS", "http_proxy", "HTTP_PROXY", "https_proxy",
                "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("FNNET_MNIST_DEADLINE", str(DEADLINE_S))
    monkeypatch.setattr(mnist_module, "DOWNLOAD_TIMEOUT_S", float(DEADLINE_S))
    return tmp_path


def three_of_four(folder):
    """A data folder holding every file of a synthetic set but the test labels (the one to
    download); the set's digests."""
    _, contents, digests = synthetic_mnist()
    folder.mkdir()
    for stem in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES):
        (folder / stem).write_bytes(contents[stem])
    return digests


def download_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("fnnet-download")]


# ---------------------------------------------------------------- mirrors that trickle


class Trickle(http.server.BaseHTTPRequestHandler):
    """Sends `self.server.head` at once, then `self.server.drip` one byte every 0.2 s, then the
    rest of a response of 1,000 bytes; stops early when the client goes or `stop` is set."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        try:
            self.wfile.write(self.server.head)
            self.wfile.flush()
            for byte in self.server.drip:
                if self.server.stop.wait(0.2):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            self.wfile.write(b"\r\n\r\n" + bytes(1000))
        except OSError:
            pass  # the client went away
        finally:
            self.close_connection = True
            self.server.done.set()


def trickling_mirror(head: bytes, drip: bytes):
    """(server, base URL) of a Trickle server on 127.0.0.1, serving in a daemon thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.head, server.drip = head, drip
    server.stop, server.done = threading.Event(), threading.Event()
    server.thread = threading.Thread(target=server.serve_forever, daemon=True)
    server.thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def download_from(server, url, env):
    """(seconds, the tried line of the download, the MNISTNotFoundError) of load_mnist fetching
    the test labels from `url`; the server is stopped afterwards."""
    digests = three_of_four(env / "data")
    try:
        start = time.monotonic()
        with pytest.raises(MNISTNotFoundError) as e:
            load_mnist(data_dir=env / "data", cache_dir=env / "cache", mirrors=[url], sha256=digests,
                       progress=False)
        seconds = time.monotonic() - start
        client_gone = server.done.wait(MARGIN_S)  # the abandoned fetch closed its connection
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        server.thread.join(5)
    (line,) = [t for t in tried_lines(str(e.value)) if t.startswith(f"download {url}")]
    assert client_gone, "the abandoned download kept its connection open"
    assert not download_threads(), download_threads()
    assert not list((env / "cache").iterdir())  # nothing partial is left
    return seconds, line


@pytest.mark.parametrize("head, drip, phase", [
    (b"", b"HTTP/1.0 200 OK" + b"K" * 5 * TRICKLE_S, "status line"),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n", b"X-Slow: " + b"a" * 5 * TRICKLE_S, "headers"),
], ids=["status-line", "headers"])
def test_a_mirror_that_trickles_its_status_line_or_headers_fails_at_the_deadline(env, head, drip, phase):
    """A byte every 0.2 s resets every socket timeout, so only a deadline over the whole download
    stops it: the download fails at 2 s, not when the mirror gives up (15 s)."""
    server, url = trickling_mirror(head, drip)
    seconds, line = download_from(server, url, env)
    assert DEADLINE_S - 0.1 < seconds < DEADLINE_S + MARGIN_S, f"{phase}: {seconds:.1f} s"
    file_url = f"{url}{TEST_LABELS}.gz"
    assert line == (f"download {file_url}: TimeoutError: {file_url}: not complete after {DEADLINE_S} s "
                    f"(connected, waiting for the status line and headers; 0 bytes received); {ABANDONED}")


def test_a_mirror_that_trickles_its_body_fails_at_the_same_deadline(env):
    server, url = trickling_mirror(b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n", b"\0" * 5 * TRICKLE_S)
    seconds, line = download_from(server, url, env)
    file_url = f"{url}{TEST_LABELS}.gz"
    prefix = (f"download {file_url}: TimeoutError: {file_url}: not complete after {DEADLINE_S} s "
              "(receiving the body; ")
    assert line.startswith(prefix) and line.endswith(f" bytes received); {ABANDONED}"), line
    received = int(line[len(prefix):].split(" bytes")[0].replace(",", ""))
    assert 1 <= received < 5 * DEADLINE_S + 1, line  # what the trickle sent before the deadline
    assert DEADLINE_S - 0.1 < seconds < DEADLINE_S + MARGIN_S, f"{seconds:.1f} s"


# ---------------------------------------------------------------- file:// mirrors


def test_a_fifo_as_a_file_mirror_is_refused_not_waited_on(env):
    """Opening a FIFO for reading blocks until a writer comes: the mirror's file is opened only if
    it is a regular file, so the download fails at once, naming the FIFO."""
    digests = three_of_four(env / "data")
    (env / "mirror").mkdir()
    fifo = env / "mirror" / (TEST_LABELS + ".gz")
    os.mkfifo(fifo)
    box: dict = {}

    def load():
        try:
            load_mnist(data_dir=env / "data", cache_dir=env / "cache", mirrors=[(env / "mirror").as_uri()],
                       sha256=digests, progress=False)
        except BaseException as e:  # handed to the test
            box["error"] = e

    thread = threading.Thread(target=load, daemon=True)
    start = time.monotonic()
    thread.start()
    try:
        thread.join(DEADLINE_S + MARGIN_S)
        seconds = time.monotonic() - start
        assert not thread.is_alive(), f"still waiting on the FIFO after {seconds:.1f} s"
    finally:
        if thread.is_alive():  # release the reader that an open without a check leaves blocked
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            thread.join(5)
    assert isinstance(box.get("error"), MNISTNotFoundError), box
    (line,) = [t for t in tried_lines(str(box["error"])) if t.startswith("download file:")]
    assert line == (f"download {fifo.as_uri()}: NotARegularFileError: load_mnist: mirror file {fifo} is a "
                    "FIFO (named pipe), not a regular file; refusing to read it")
    assert seconds < 1.5


def test_a_file_mirror_that_is_a_regular_file_still_works(env):
    arrays, contents, digests = synthetic_mnist()
    write_set(env / "mirror", contents)
    _, (xt, _) = load_mnist(normalize=False, cache_dir=env / "cache", mirrors=[(env / "mirror").as_uri()],
                            sha256=digests, progress=False)
    assert (xt.reshape(arrays[TEST_IMAGES].shape) == arrays[TEST_IMAGES]).all()


# ---------------------------------------------------------------- fnnet train --no-progress


@pytest.mark.parametrize("quiet", [True, False], ids=["no-progress", "progress"])
def test_no_progress_silences_the_download_bars(env, monkeypatch, capsys, quiet):
    """`fnnet train --no-progress` passes progress=False to the download too; with --progress the
    same download shows its bars (so the first case can fail). The mirror's files are not MNIST,
    so the run stops after trying them, with the usual one-line error."""
    (env / "mirror").mkdir()
    for stem in MNIST_FILES:
        (env / "mirror" / (stem + ".gz")).write_bytes(os.urandom(4096))
    monkeypatch.setenv("FNNET_MNIST_MIRRORS", (env / "mirror").as_uri())
    monkeypatch.setenv("FNNET_COMPILE_CACHE", "0")
    bars = ["--no-progress"] if quiet else ["--progress"]
    argv = ["train", "--dataset", "mnist", "--out", str(env / "run")] + bars
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "fnnet train: error: cannot load mnist: no verified copy" in err
    bars = [stem for stem in MNIST_FILES if re.search(rf"{stem}\.gz: +\d+%\|", err)]  # tqdm's "name: 0%|"
    assert bars == ([] if quiet else list(MNIST_FILES)), err[-2000:]


# ---------------------------------------------------------------- the processes of a run
# Real processes (`python -c RUN`), each under a subprocess limit so that a hang fails the test.

LIMIT_S = 60  # a process still running after this has hung (JAX notices a dead one after 100 s)
PEER_LOST = 75  # the exit status of a process stopped because another one is gone (EXIT_PEER_LOST)
INIT_TIMEOUT_S = 4  # initialize's timeout in these runs
RUN = (
    "import os, sys, time\n"
    "from fnnet import distributed\n"
    "coordinator, n, i, timeout, mode = sys.argv[1:6]\n"
    "n, i = int(n), int(i)\n"
    "if i == 1 and mode in ('die-before-jax', 'hang-before-jax'):  # joins the handshake, not JAX's service\n"
    "    import jax\n"
    "    jax.distributed.initialize = ((lambda *a, **k: os._exit(9)) if mode == 'die-before-jax'\n"
    "                                  else (lambda *a, **k: time.sleep(600)))\n"
    "try:\n"
    "    distributed.initialize(coordinator, n, i, timeout=int(timeout))\n"
    "except Exception as e:\n"
    "    print(f'{type(e).__name__}: {e}')\n"
    "    sys.exit(3)\n"
    "import jax, numpy as np, socket\n"
    "print(f'joined as process {jax.process_index()} of {jax.process_count()}', flush=True)\n"
    "if mode == 'die-in-run' and i == n - 1:\n"
    "    os._exit(9)\n"
    "if mode == 'exit-early' and i == 1:\n"
    "    sys.exit(2)  # ends on its own (an error of its own, say) while the others still compute\n"
    "if mode in ('die-in-run', 'exit-early', 'frozen'):\n"
    "    mesh = distributed.make_mesh('all')\n"
    "    total = jax.jit(lambda a: a.sum(), out_shardings=distributed.replicated(mesh))\n"
    "    while True:  # a collective that waits for every process\n"
    "        total(distributed.put_sharded(np.ones(n, np.float32), mesh)).block_until_ready()\n"
    "if mode == 'lag' and i == 0:\n"
    "    port = int(coordinator.rpartition(':')[2])\n"
    "    try:\n"
    "        socket.create_connection(('127.0.0.2', port), timeout=2).close()\n"
    "        print('JAX service reachable on 127.0.0.2')\n"
    "    except OSError:\n"
    "        print('JAX service not reachable on 127.0.0.2')\n"
    "    time.sleep(3)  # process 0 writes its files while the others have finished\n"
    "print('finished', flush=True)\n"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(coordinator, n, i, mode="plain", timeout=INIT_TIMEOUT_S):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("FNNET_")}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.Popen([sys.executable, "-c", RUN, coordinator, str(n), str(i), str(timeout), mode],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, time.monotonic()


def finish(started):
    """(exit status, stdout lines, stderr lines, seconds) of a process from `start`."""
    proc, t0 = started
    try:
        out, err = proc.communicate(timeout=max(1.0, LIMIT_S - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running after {LIMIT_S} s; stdout {out[-500:]!r}, stderr {err[-1500:]!r}")
    return proc.returncode, out.strip().splitlines(), err.strip().splitlines(), time.monotonic() - t0


def stopped_in_one_line(result, what, i, n, coordinator):
    """The process ended with exit status 75 and one line on stderr (no C++ trace) saying `what`."""
    rc, out, err, _ = result
    assert (rc, len(err)) == (PEER_LOST, 1), f"exit status {rc}, stdout {out}, stderr {err[-30:]}"
    assert err[0] == (f"fnnet.distributed: {what} (this is process {i} of {n} at the coordinator "
                      f"{coordinator}; exit status {PEER_LOST})"), err


def lost(who, why="stopped before the run was over (it died, was killed or gave up)"):
    return f"{who} {why}, so this process stops too"


def wait_listening(port, proc):
    """Wait until process 0 listens on 127.0.0.1:port (its first connection is closed unused)."""
    end = time.monotonic() + LIMIT_S
    while time.monotonic() < end and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"process 0 never listened on port {port}")


def test_the_handshake_listens_on_the_coordinators_address_only():
    """127.0.0.2 is this machine too (all of 127/8 is the loopback), but not the coordinator's
    address: a connection there is refused, where listening on every interface accepted it."""
    port = free_port()
    coordinator = f"127.0.0.1:{port}"
    zero = start(coordinator, 2, 0, timeout=3)
    try:
        wait_listening(port, zero[0])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=2).close()
    finally:
        rc, out, err, _ = finish(zero)
    assert rc == 3, (rc, out, err[-30:])
    assert out == ["DistributedInitError: initialize: the processes did not all join the coordinator "
                   f"{coordinator} within 3 s (this is process 0 of 2; missing: process 1)"]


def test_a_coordinator_address_of_another_machine_is_refused_at_once():
    """192.0.2.1 (TEST-NET-1) is no address of this machine: process 0 cannot listen there and says
    so at once (listening on every interface, it waited for the timeout instead)."""
    port = free_port()
    coordinator = f"192.0.2.1:{port}"
    rc, out, err, _ = finish(start(coordinator, 2, 0, timeout=30))
    assert rc == 3, (rc, out, err[-30:])
    assert out == [f"DistributedInitError: initialize: process 0 cannot listen on port {port} for the "
                   f"coordinator {coordinator}: Cannot assign requested address; the coordinator's host must "
                   "be an address of process 0's machine (or set JAX_COORDINATOR_BIND_ADDRESS)"]


def test_a_bad_bind_address_variable_is_refused(monkeypatch):
    monkeypatch.setenv("JAX_COORDINATOR_BIND_ADDRESS", "everywhere")
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: pytest.fail("JAX was reached"))
    with pytest.raises(ValueError, match=r"^initialize: JAX_COORDINATOR_BIND_ADDRESS must be 'host:port' .*"
                                         r"got 'everywhere'$"):
        distributed.initialize("127.0.0.1:1234", 2, 0, timeout=3)


@pytest.mark.slow
def test_forged_lines_are_refused_and_process_0_waits_on():
    """Connections that do not speak the handshake, or say what cannot be, are refused one line each
    on process 0's stderr (the sender gets an error line); the real process 1 then joins."""
    port = free_port()
    coordinator = f"127.0.0.1:{port}"
    zero = start(coordinator, 2, 0, "lag", timeout=40)
    wait_listening(port, zero[0])
    hello = distributed._HELLO
    forged = [b"GET / HTTP/1.0\r\n\r\n", f"{hello} 5 2\n".encode(), f"{hello} 1 3\n".encode(), b"x" * 300]
    answers = []
    for line in forged:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(line)
            answers.append(s.makefile("rb").readline().decode())
    one = start(coordinator, 2, 1, "lag", timeout=40)
    results = [finish(zero), finish(one)]
    for i, (rc, out, err, _) in enumerate(results):
        assert (rc, out[0], out[-1]) == (0, f"joined as process {i} of 2", "finished"), (rc, out, err[-20:])
    refused = results[0][2]
    assert len(refused) == len(forged), refused
    assert all(r.startswith("initialize: process 0 refused a connection from 127.0.0.1:") for r in refused)
    reasons = ["not an fnnet process of this version (it said 'GET / HTTP/1.0\\r')",
               f"a process says it is process 5 at the coordinator {coordinator}, but the ids of the others "
               "run from 1 to 1",
               "process 1 was started with num_processes=3 but process 0 with 2, at the coordinator "
               f"{coordinator}",
               "not an fnnet process (no line within 256 bytes)"]
    assert [r.split(": ", 2)[2] for r in refused] == reasons
    assert answers == [f"error {r}\n" for r in reasons]
    assert results[1][2] == []


@pytest.mark.slow
def test_a_process_that_dies_after_joining_stops_the_other_in_one_line():
    """Process 1 joins the handshake and dies before it registers with JAX's service (where JAX would
    abort process 0 with a C++ trace once its timeout is over): process 0 stops at once."""
    port = free_port()
    coordinator = f"127.0.0.1:{port}"
    zero = start(coordinator, 2, 0, timeout=30)
    one = start(coordinator, 2, 1, "die-before-jax", timeout=30)
    rc1, *_ = finish(one)
    died = time.monotonic()
    result = finish(zero)
    assert rc1 == 9
    stopped_in_one_line(result, lost("process 1"), 0, 2, coordinator)
    assert time.monotonic() - died < 5  # at once, not at the 30 s timeout


@pytest.mark.slow
def test_a_process_that_joined_but_never_starts_jax_is_a_deadline():
    """Process 1 joins, then hangs before jax.distributed.initialize: JAX would abort process 0 with a
    C++ trace when its timeout is over; fnnet keeps the timeout itself. Each process stops in one line,
    at its own deadline or because the other stopped first."""
    port = free_port()
    coordinator = f"127.0.0.1:{port}"
    runs = [start(coordinator, 2, 0), start(coordinator, 2, 1, "hang-before-jax")]
    late = (f"jax.distributed.initialize did not return within {INIT_TIMEOUT_S} s, although every process "
            "had joined")
    said = []
    for i, result in enumerate([finish(r) for r in runs]):
        rc, out, err, seconds = result
        assert (rc, len(err)) == (PEER_LOST, 1), (rc, out, err[-30:])
        said.append(err[0].split(" (this is process")[0].removeprefix("fnnet.distributed: "))
        assert said[-1] in (late, lost("process 1" if i == 0 else "process 0 (the coordinator)")), err
        assert seconds < LIMIT_S / 2, seconds
    assert late in said


@pytest.mark.slow
def test_a_process_that_dies_during_the_run_stops_every_other_one_in_one_line():
    """3 processes; process 2 dies while processes 0 and 1 wait for it in a collective (JAX would
    notice after 100 s, then abort both with a C++ trace). Both stop at once, each naming process 2."""
    port = free_port()
    coordinator = f"127.0.0.1:{port}"
    runs = [start(coordinator, 3, i, "die-in-run", timeout=30) for i in range(3)]
    rc2, *_ = finish(runs[2])
    died = time.monotonic()
    zero, one = finish(runs[0]), finish(runs[1])
    assert rc2 == 9
    stopped_in_one_line(zero, lost("process 2"), 0, 3, coordinator)
    stopped_in_one_line(one, "process 2 is gone (it died, was killed, gave up or froze), process 0 says, so "
                             "this process stops too", 1, 3, coordinator)
    assert time.monotonic() - died < 10


@pytest.mark.slow
def test_a_frozen_process_stops_the_others_after_the_timeout():
    """Process 1 is stopped (SIGSTOP: frozen, like a machine cut off from the network) while process 0
    waits for it in a collective: its connection stays open but silent, and after the timeout of
    silence process 0 stops in one line (JAX would abort it after 100 s). (Process 1 is then killed:
    let go, it would race JAX's own abort, which its C++ threads start as soon as they run again.)"""
    port = free_port()
    coordinator = f"127.0.0.1:{port}"
    runs = [start(coordinator, 2, i, "frozen") for i in range(2)]
    one = runs[1][0]
    assert one.stdout.readline().strip() == "joined as process 1 of 2"
    os.kill(one.pid, signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        zero = finish(runs[0])
        seconds = time.monotonic() - frozen
    finally:
        one.kill()
        finish(runs[1])
    silent = f"has sent nothing for {INIT_TIMEOUT_S} s (it is frozen, or its machine cannot be reached)"
    stopped_in_one_line(zero, lost("process 1", silent), 0, 2, coordinator)
    assert INIT_TIMEOUT_S - 1.5 < seconds < INIT_TIMEOUT_S + 5, seconds  # its last beat came up to 1 s before


@pytest.mark.slow
def test_a_process_that_ends_early_is_waited_for_at_most_the_timeout():
    """Process 1 exits on its own while process 0 waits for it in a collective: process 1 waits for
    process 0 at its exit for the timeout, then both stop in one line each (not JAX's shutdown
    barrier, 5 minutes, then an abort)."""
    port = free_port()
    coordinator = f"127.0.0.1:{port}"
    runs = [start(coordinator, 2, i, "exit-early") for i in range(2)]
    one = finish(runs[1])
    zero = finish(runs[0])
    stopped_in_one_line(one, f"process 0 did not reach the end of the run within {INIT_TIMEOUT_S} s of this "
                             "process", 1, 2, coordinator)
    stopped_in_one_line(zero, lost("process 1"), 0, 2, coordinator)


@pytest.mark.slow
def test_a_run_that_ends_well_ends_quietly_even_when_process_0_ends_last():
    """Process 0 ends 3 s after process 1 (its files): no line, exit status 0 in both; and JAX's
    service, like the handshake, listens on the coordinator's address only."""
    port = free_port()
    coordinator = f"127.0.0.1:{port}"
    runs = [start(coordinator, 2, i, "lag") for i in range(2)]
    zero, one = finish(runs[0]), finish(runs[1])
    assert zero[:3] == (0, ["joined as process 0 of 2", "JAX service not reachable on 127.0.0.2", "finished"],
                        [])
    assert one[:3] == (0, ["joined as process 1 of 2", "finished"], [])
