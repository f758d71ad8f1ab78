"""Every wait has a deadline: an MNIST download as a whole (connection, status line, headers, body),
and a file:// mirror that is not a regular file; the download bars follow `fnnet train --no-progress`.

The mirrors are HTTP servers on 127.0.0.1 in threads of the test that send one byte every 0.2 s,
and stop by themselves after TRICKLE_S, so a download without a deadline fails the test instead of
hanging it.
"""

from __future__ import annotations

import http.server
import os
import re
import threading
import time

import pytest
from test_data_limits import tried_lines
from test_datasets import synthetic_mnist, write_set

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
    """`fnnet train --no-progress` passes progress=False to the download too; without the flag the
    same download shows its bars (so the first case can fail). The mirror's files are not MNIST,
    so the run stops after trying them, with the usual one-line error."""
    (env / "mirror").mkdir()
    for stem in MNIST_FILES:
        (env / "mirror" / (stem + ".gz")).write_bytes(os.urandom(4096))
    monkeypatch.setenv("FNNET_MNIST_MIRRORS", (env / "mirror").as_uri())
    monkeypatch.setenv("FNNET_COMPILE_CACHE", "0")
    argv = ["train", "--dataset", "mnist", "--out", str(env / "run")] + (["--no-progress"] if quiet else [])
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "fnnet train: error: cannot load mnist: no verified copy" in err
    bars = [stem for stem in MNIST_FILES if re.search(rf"{stem}\.gz: +\d+%\|", err)]  # tqdm's "name: 0%|"
    assert bars == ([] if quiet else list(MNIST_FILES)), err[-2000:]
