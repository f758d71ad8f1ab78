"""The draw server's limits: its memory is bounded by pixels (a cap read from the image header, a
few images prepared at once), every wait has a deadline (headers, body, a turn to be prepared),
connections are capped, logs stay short however many clients misbehave, and `--host` beyond
loopback is said out loud. Non-finite pixels and altered headers are a 400.

The real-server tests run `fnnet.web.serve` in a thread on a free loopback port, with deadlines of
a second or two; the memory test runs `fnnet draw` in a process of its own (slow).
"""

import asyncio
import contextlib
import io
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the draw extra is not installed: pip install 'fnnet[draw]'")
uvicorn = pytest.importorskip("uvicorn", reason="the draw extra is not installed: pip install 'fnnet[draw]'")
httpx = pytest.importorskip("httpx", reason="httpx (dev extra) is needed to call the server")
from PIL import Image, ImageDraw  # noqa: E402
from test_draw_server import PNG, SEVEN, FakeClassifier, TestClient, _call, drawn_png  # noqa: E402
from test_pixels import float_tiff, jpeg, with_size  # noqa: E402
from test_predict import make_run  # noqa: E402
from test_prepare_digit import png  # noqa: E402

import fnnet.web  # noqa: E402
import fnnet.web.app as web_app  # noqa: E402
from fnnet.cli import main  # noqa: E402
from fnnet.datasets import prepare_digit  # noqa: E402
from fnnet.io import TooLargeError  # noqa: E402
from fnnet.web import create_app  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:.*httpx.*:UserWarning")
STROKE = [[(40, 30), (110, 30), (70, 120)]]


def _post_all(app, bodies):
    """POST each body to /predict of `app` at once (one event loop); the responses in order."""

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://draw", timeout=60) as c:
            return await asyncio.gather(*(c.post("/predict", content=b, headers=PNG) for b in bodies))

    return asyncio.run(go())


def test_an_image_above_the_pixel_cap_is_413_from_its_header():
    """The cap is checked on the header: a PNG that declares 400x400 and holds no pixel data at all is
    a 413 naming its size (had it been decoded, it would be a 400 for truncated data)."""
    with TestClient(create_app(FakeClassifier())) as c:
        r = c.post("/predict", content=png(2001, 2000), headers=PNG)
        assert r.status_code == 413 and "more than the 4,000,000 pixels allowed" in r.json()["error"], r.text
        assert r.headers["connection"] == "close"
        r = c.post("/predict", content=png(2000, 2000), headers=PNG)  # within the cap: decoded, and truncated
        assert r.status_code == 400 and "truncated" in r.json()["error"]
    assert fnnet.web.MAX_PIXELS == 4_000_000
    with TestClient(create_app(FakeClassifier(), max_pixels=100_000)) as c:
        within = drawn_png(STROKE, size=316)  # 99,856 pixels
        assert c.post("/predict", content=within, headers=PNG).status_code == 200
        r = c.post("/predict", content=png(400, 400), headers=PNG)
        assert r.status_code == 413, r.text
        assert "400x400 = 160,000 pixels, more than the 100,000 pixels allowed" in r.json()["error"]
    with pytest.raises(TooLargeError, match="more than the 100,000 pixels allowed"):
        prepare_digit(png(400, 400), max_pixels=100_000)


def test_at_most_max_decodes_images_are_prepared_at_once(monkeypatch):
    active, peak, lock = [0], [0], threading.Lock()
    real = web_app.prepare_digit

    def slow_prepare(body, **kw):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.2)
        with lock:
            active[0] -= 1
        return real(body, **kw)

    monkeypatch.setattr(web_app, "prepare_digit", slow_prepare)
    answers = _post_all(create_app(FakeClassifier()), [SEVEN] * 6)
    assert [r.status_code for r in answers] == [200] * 6
    assert peak[0] == 2, f"two at once by default, never more; {peak[0]} were"
    assert fnnet.web.MAX_DECODES == 2
    peak[0] = 0
    answers = _post_all(create_app(FakeClassifier(), max_decodes=3), [SEVEN] * 6)
    assert [r.status_code for r in answers] == [200] * 6 and peak[0] == 3


def test_a_request_that_waits_too_long_for_its_turn_is_503(monkeypatch):
    real = web_app.prepare_digit
    monkeypatch.setattr(web_app, "prepare_digit", lambda body, **kw: (time.sleep(1.5), real(body, **kw))[1])
    start = time.monotonic()
    answers = _post_all(create_app(FakeClassifier(), max_decodes=1, timeout=0.3), [SEVEN] * 3)
    assert sorted(r.status_code for r in answers) == [200, 503, 503]
    busy = next(r for r in answers if r.status_code == 503).json()["error"]
    assert busy == ("POST /predict: the server is busy: 1 images are being prepared and none finished within "
                    "0.3 s; try again")
    assert time.monotonic() - start < 10


def test_a_body_that_does_not_arrive_in_time_is_408():
    app, sent = create_app(FakeClassifier(), timeout=0.3), []

    async def trickle():
        if sent:
            await asyncio.sleep(3600)  # the rest never comes
        sent.append(1)
        return {"type": "http.request", "body": SEVEN[:100], "more_body": True}

    start = time.monotonic()
    status, body = asyncio.run(asyncio.wait_for(_call(app, [(b"content-type", b"image/png")], trickle), 20))
    assert status == 408
    assert body["error"] == "POST /predict: the body did not arrive within 0.3 s (100 bytes did)"
    assert time.monotonic() - start < 5
    assert fnnet.web.TIMEOUT == 10


def test_non_finite_pixels_and_altered_headers_are_400(tmp_path):
    """Before: a NaN pixel was a 500 and a +inf pixel a 200 with a wrong label; a JPEG whose header
    claims more pixels than its data holds was classified."""
    good = jpeg()
    cases = {
        "nan.tif": (open(float_tiff(tmp_path / "nan.tif", np.nan), "rb").read(), "1 NaN or infinite pixel"),
        "inf.tif": (open(float_tiff(tmp_path / "inf.tif", np.inf), "rb").read(), "1 NaN or infinite pixel"),
        "1900x1900 over 280x280": (with_size(good, 1900, 1900), "declares 1900x1900 pixels but holds"),
        "300x300 over 280x280": (with_size(good, 300, 300), "truncated"),
    }
    with TestClient(create_app(FakeClassifier()), raise_server_exceptions=False) as c:
        for case, (body, message) in cases.items():
            r = c.post("/predict", content=body, headers={"Content-Type": "image/tiff"})
            assert r.status_code == 400 and message in r.json()["error"], (case, r.text)
            assert "\n" not in r.json()["error"]
        assert c.post("/predict", content=good, headers={"Content-Type": "image/jpeg"}).status_code == 200


def test_limits_must_be_positive():
    for bad in ({"max_pixels": 0}, {"max_decodes": -1}, {"max_decodes": 1.5}, {"timeout": float("nan")},
                {"timeout": 0}, {"timeout": float("inf")}, {"max_body_bytes": True}):
        with pytest.raises(ValueError, match=f"fnnet.web.create_app: {next(iter(bad))} must be a positive"):
            create_app(FakeClassifier(), **bad)


def test_repeated_log_records_are_one_line_per_kind_per_interval(monkeypatch):
    now = [1000.0]  # a clock of the test's own: 10,000 records may take longer than the interval
    monkeypatch.setattr(web_app.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    logger = logging.getLogger("fnnet-test-flood")
    handler = logging.StreamHandler(out)
    logger.addHandler(handler)
    logger.propagate = False
    logger.addFilter(web_app._one_line_per_kind(interval=0.3))
    try:
        for i in range(10_000):
            try:
                raise OSError(24, "Too many open files")
            except OSError as e:
                logger.error("socket.accept() out of system resource\nsocket: %d", i, exc_info=e)
        logger.warning("another kind")
        now[0] += 0.35
        logger.error("socket.accept() out of system resource\nsocket: %d", 0, exc_info=OSError(24, "again"))
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert lines == ["socket.accept() out of system resource socket: 0: OSError: [Errno 24] Too many open "
                     "files",
                     "another kind",
                     "socket.accept() out of system resource socket: 0: OSError: [Errno 24] again "
                     "(9999 more like it held back)"]


# A real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(monkeypatch, **limits):
    """`fnnet.web.serve` with a FakeClassifier in a thread on a free loopback port; yields its
    (host, port). uvicorn.Server is wrapped so the test can stop it."""
    servers = []

    class Stoppable(uvicorn.Server):
        def __init__(self, config):
            super().__init__(config)
            servers.append(self)

    monkeypatch.setattr(uvicorn, "Server", Stoppable)
    port = _free_port()
    thread = threading.Thread(target=web_app.serve, args=(FakeClassifier(),),
                              kwargs={"host": "127.0.0.1", "port": port, **limits}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (servers and servers[0].started):
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield "127.0.0.1", port
    finally:
        servers[0].should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "the server did not stop"


def _answer(sock, timeout=10) -> bytes:
    """What the server sends on `sock` until it closes it (b"" for a close without an answer)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while more := sock.recv(65536):
            data += more
    except ConnectionResetError:
        pass
    return data


@pytest.mark.slow
def test_half_sent_headers_are_dropped_after_the_timeout_and_others_are_served(monkeypatch, capfd):
    """Slowloris at small scale: five connections stall in their headers, one in its body. A normal
    request is answered meanwhile; the stalled ones are closed after the deadline (2 s), the slow
    body gets a 408. Before, nothing closed them and each held a file descriptor for ever."""
    with served(monkeypatch, timeout=2.0) as address:
        url = "http://{}:{}".format(*address)
        start = time.monotonic()
        stalled = [socket.create_connection(address, timeout=10) for _ in range(5)]
        for s in stalled:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: draw\r\nContent-Ty")
        slow_body = socket.create_connection(address, timeout=10)
        slow_body.sendall(b"POST /predict HTTP/1.1\r\nHost: draw\r\nContent-Type: image/png\r\n"
                          b"Content-Length: 5000\r\n\r\n" + SEVEN[:100])
        assert httpx.post(url + "/predict", content=SEVEN, headers=PNG, timeout=10).status_code == 200
        for s in [*stalled, slow_body]:  # answered while these still wait
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(1)
            s.setblocking(True)
        for s in stalled:
            assert _answer(s) == b""
        assert 1.9 < time.monotonic() - start < 6
        assert _answer(slow_body).startswith(b"HTTP/1.1 408 ")
        for s in [*stalled, slow_body]:
            s.close()
        assert httpx.post(url + "/predict", content=SEVEN, headers=PNG, timeout=10).status_code == 200
    err = capfd.readouterr().err
    assert len(err.splitlines()) <= 3 and "Traceback" not in err, err


@pytest.mark.slow
def test_connections_beyond_the_cap_are_refused_at_once(monkeypatch, capfd):
    """Eight idle connections fill the cap; 200 more are answered 503 (or reset) at once, long
    before the header deadline, with one log line; when the eight go, requests are served again."""
    with served(monkeypatch, timeout=5.0, max_connections=8) as address:
        held = [socket.create_connection(address, timeout=10) for _ in range(8)]
        time.sleep(0.3)
        start = time.monotonic()
        extra = [socket.create_connection(address, timeout=10) for _ in range(200)]
        answers = [_answer(s) for s in extra]
        assert time.monotonic() - start < 4, "refused at once, not after the 5 s header deadline"
        assert all(a == b"" or a.startswith(b"HTTP/1.1 503 ") for a in answers)
        assert sum(a.startswith(b"HTTP/1.1 503 ") for a in answers) > 100
        assert b'"the server has 8 connections open, the most allowed; try again"' in max(answers)
        for s in [*held, *extra]:
            s.close()
        time.sleep(0.3)
        url = "http://{}:{}".format(*address)
        assert httpx.post(url + "/predict", content=SEVEN, headers=PNG, timeout=10).status_code == 200
    err = capfd.readouterr().err
    assert err.count("8 connections open, the most allowed") == 1 and len(err.splitlines()) <= 3, err
    assert fnnet.web.MAX_CONNECTIONS == 64


# fnnet draw: options and the warning for a host beyond this machine


@pytest.fixture(scope="module")
def run_params(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "two_layer_net-mnist"
    return make_run(folder, "two_layer_net", (784,), config={"hidden_size": 5})[0]


def test_draw_warns_when_it_listens_beyond_this_machine(run_params, monkeypatch, capsys):
    served = {}
    monkeypatch.setattr(fnnet.web, "serve", lambda clf, **kw: served.update(kw))
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        served.clear()
        assert main(["draw", "--params", run_params, "--host", host]) == 0
        assert capsys.readouterr().err == "", host
        assert served == {"host": host, "port": 8000}
    for host in ("0.0.0.0", "::", "192.0.2.1"):
        assert main(["draw", "--params", run_params, "--host", host]) == 0
        err = capsys.readouterr().err
        assert err == (f"fnnet draw: warning: --host {host} is not a loopback address: anyone who can reach "
                       "this machine on the network can use the page\n")
    argv = ["--max-pixels", "250000", "--max-decodes", "3", "--max-connections", "9", "--timeout", "2.5"]
    served.clear()
    assert main(["draw", "--params", run_params, *argv]) == 0
    assert served == {"host": "127.0.0.1", "port": 8000, "max_pixels": 250_000, "max_decodes": 3,
                      "max_connections": 9, "timeout": 2.5}
    for bad in (["--timeout", "0"], ["--max-pixels", "-1"], ["--timeout", "nan"]):
        with pytest.raises(SystemExit):
            main(["draw", "--params", run_params, *bad])


def test_draw_help_states_fnnet_webs_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["draw", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    web = fnnet.web
    for default in (f"(default: {web.MAX_PIXELS:,})", f"(default: {web.MAX_DECODES})",
                    f"(default: {web.MAX_CONNECTIONS})", f"(default: {web.TIMEOUT:g})"):
        assert default in text, default


# Peak memory under 50 concurrent worst-case uploads (slow: a real `fnnet draw` process)


def _worst_case_png() -> bytes:
    """A 2000x2000 RGBA PNG (exactly the 4,000,000-pixel cap) of one thick stroke on a transparent
    canvas: 60 kB that decode to 16 MB and, as floats, to 64 MB more while it is prepared."""
    img = Image.new("RGBA", (2000, 2000), (255, 255, 255, 0))
    ImageDraw.Draw(img).line([(400, 300), (1500, 300), (900, 1700)], fill=(0, 0, 0, 255), width=150)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def _vm_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


@pytest.mark.slow
def test_peak_memory_of_fnnet_draw_under_50_concurrent_worst_case_uploads(tmp_path):
    if not os.path.exists("/proc/self/status"):
        pytest.skip("reads the server's peak memory from /proc/PID/status (Linux)")
    params, _ = make_run(tmp_path / "simple_convnet-mnist", "simple_convnet", (1, 28, 28))
    worst = _worst_case_png()
    assert len(worst) < 150_000
    port = _free_port()
    root = os.path.dirname(os.path.dirname(os.path.abspath(fnnet.__file__)))  # the fnnet under test
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fnnet.cli", "draw", "--params", params,
                                 "--port", str(port), "--timeout", "120"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.post(url + "/predict", content=SEVEN, headers=PNG, timeout=60).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        idle_mb = _vm_hwm_mb(proc.pid)
        barrier = threading.Barrier(51)

        def post(body):
            with httpx.Client(timeout=300) as c:
                barrier.wait()
                return c.post(url + "/predict", content=body, headers=PNG)

        bodies = [worst] * 50 + [png(8000, 5000)]  # 40 MP declared: the old cap, now far above it
        with ThreadPoolExecutor(51) as pool:
            answers = list(pool.map(post, bodies))
        peak_mb = _vm_hwm_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    statuses = [r.status_code for r in answers]
    assert statuses[-1] == 413 and "8000x5000 = 40,000,000 pixels" in answers[-1].json()["error"]
    assert set(statuses[:-1]) <= {200, 503} and statuses.count(200) >= 2, statuses
    print(f"\nfnnet draw peak memory (VmHWM): {idle_mb:.0f} MB after one request, {peak_mb:.0f} MB after 50 "
          f"concurrent 2000x2000 RGBA uploads ({statuses.count(200)} answered 200, "
          f"{statuses.count(503)} answered 503)")
    assert peak_mb < 1024, (idle_mb, peak_mb)
    err = log.read_text()
    assert len(err.splitlines()) <= 5 and "Traceback" not in err, err
