"""The draw page's server (fnnet.web): the page, POST /predict, its errors and size limit, load.

A small deterministic classifier stands in for a network, so these tests are fast and need no
weights. The last tests run a real uvicorn server on a loopback port.
"""

import asyncio
import io
import json
import socket
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the draw extra is not installed: pip install 'fnnet[draw]'")
uvicorn = pytest.importorskip("uvicorn", reason="the draw extra is not installed: pip install 'fnnet[draw]'")
httpx = pytest.importorskip("httpx", reason="httpx (dev extra) is needed to call the server")
from PIL import Image, ImageDraw  # noqa: E402

with warnings.catch_warnings():  # recent Starlette prefers httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from fnnet.datasets import prepare_digit  # noqa: E402
from fnnet.web import MAX_BODY_BYTES, create_app  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:.*httpx.*:UserWarning")

CAP = 64_000  # the real server's body limit in these tests; a drawn PNG is a few kB


class FakeClassifier:
    """Softmax of a fixed linear map; four fixed 5x5 filters as the first convolution layer.

    It records how many calls overlap, to show the app serialises them.
    """

    def __init__(self, conv=True):
        rng = np.random.default_rng(0)
        self.W = rng.standard_normal((784, 10)).astype(np.float32)
        self.filters = rng.standard_normal((4, 5, 5)).astype(np.float32)
        self.name = "fake linear classifier" + (" with 4 filters" if conv else "")
        self.conv = conv
        self.active = self.max_active = self.calls = 0

    def probabilities(self, images):
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        time.sleep(0.002)  # widens the window in which unserialised calls would overlap
        self.calls += 1
        self.active -= 1
        z = images.reshape(len(images), 784) @ self.W
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def feature_maps(self, images):
        if not self.conv:
            return None
        win = np.lib.stride_tricks.sliding_window_view(images[:, 0], (5, 5), axis=(1, 2))  # (N, 24, 24, 5, 5)
        return np.einsum("nhwij,fij->nfhw", win, self.filters).astype(np.float32)


def drawn_png(strokes, size=280, width=18) -> bytes:
    """A PNG of black strokes (lists of points) on a white canvas, as the page sends."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for points in strokes:
        draw.line(points, fill="black", width=width, joint="curve")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


SEVEN = drawn_png([[(70, 60), (200, 60), (120, 230)]])
WHITE = drawn_png([])
PNG = {"Content-Type": "image/png"}


@pytest.fixture
def fake():
    return FakeClassifier()


@pytest.fixture
def client(fake):
    with TestClient(create_app(fake)) as c:
        yield c


def test_page_and_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == "default-src 'self'"
    html = page.text
    assert '<canvas id="pad" width="280" height="280"' in html and 'id="clear"' in html
    for asset, kind in (("static/draw.js", "javascript"), ("static/draw.css", "text/css")):
        assert asset in html
        r = client.get("/" + asset)
        assert r.status_code == 200 and kind in r.headers["content-type"] and len(r.text) > 500
        assert "http://" not in r.text and "https://" not in r.text, f"{asset} must need no external resource"
    assert "http://" not in html and "https://" not in html
    assert "touch-action: none" in client.get("/static/draw.css").text
    js = client.get("/static/draw.js").text
    assert "pointerup" in js and "toBlob" in js and '"predict"' in js


def test_predict_answers_the_documented_json(client, fake):
    r = client.post("/predict", content=SEVEN, headers=PNG)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    data = r.json()
    assert set(data) == {"label", "probabilities", "prepared", "feature_maps", "model"}
    x = prepare_digit(SEVEN)[None]
    expected = fake.probabilities(x)[0]
    p = np.array(data["probabilities"])
    assert p.shape == (10,) and all(isinstance(v, float) for v in data["probabilities"])
    np.testing.assert_allclose(p, expected, rtol=1e-6)
    assert isinstance(data["label"], int) and data["label"] == int(expected.argmax())
    prepared = np.array(data["prepared"])
    assert prepared.shape == (28, 28) and prepared.min() >= 0 and prepared.max() <= 1
    np.testing.assert_allclose(prepared, x[0, 0], atol=5e-5)  # rounded to 4 decimals
    maps = np.array(data["feature_maps"])
    assert maps.shape == (4, 24, 24)
    np.testing.assert_allclose(maps, fake.feature_maps(x)[0], atol=5e-5)
    assert data["model"] == fake.name


def test_predict_without_feature_maps_gives_null():
    with TestClient(create_app(FakeClassifier(conv=False))) as c:
        data = c.post("/predict", content=SEVEN, headers=PNG).json()
    assert data["feature_maps"] is None and len(data["probabilities"]) == 10


BAD = {
    "wrong content type": (SEVEN, {"Content-Type": "text/plain"}),
    "no content type": (SEVEN, {}),
    "empty body": (b"", PNG),
    "garbage bytes": (bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)), PNG),
    "a text file": (b"a text file, not an image\n" * 20, PNG),
    "truncated png": (SEVEN[: len(SEVEN) // 2], PNG),
    "uniform image": (WHITE, PNG),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_requests_are_400_and_the_server_goes_on(client, case):
    body, headers = BAD[case]
    r = client.post("/predict", content=body, headers=headers)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert isinstance(error, str) and error and "\n" not in error and "Traceback" not in error
    assert client.post("/predict", content=SEVEN, headers=PNG).status_code == 200


def test_other_routes_and_methods_answer_json(client):
    r = client.get("/predict")
    assert r.status_code == 405 and "error" in r.json() and "POST" in r.headers["allow"]
    r = client.get("/nowhere")
    assert r.status_code == 404 and "error" in r.json()


def test_a_failing_classifier_is_a_500_json_error_and_the_server_goes_on(fake):
    broken = FakeClassifier()
    broken.probabilities = lambda images: np.full((len(images), 10), np.nan, np.float32)
    with TestClient(create_app(broken), raise_server_exceptions=False) as c:
        r = c.post("/predict", content=SEVEN, headers=PNG)
        assert r.status_code == 500 and "NaN" in r.json()["error"] and broken.name in r.json()["error"]
        assert c.get("/").status_code == 200


def test_oversized_bodies_are_413(fake):
    with TestClient(create_app(fake, max_body_bytes=10_000)) as c:
        r = c.post("/predict", content=b"\x89PNG" + bytes(20_000), headers=PNG)
        assert r.status_code == 413 and "10000 bytes" in r.json()["error"]

        def chunks():  # no Content-Length: the limit applies while reading
            for _ in range(40):
                yield bytes(1000)

        r = c.post("/predict", content=chunks(), headers=PNG)
        assert r.status_code == 413 and "error" in r.json()
        assert c.post("/predict", content=SEVEN, headers=PNG).status_code == 200
    assert MAX_BODY_BYTES == 2_000_000


async def _call(app, headers, receive):
    """One raw ASGI request to POST /predict; returns (status, JSON body)."""
    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8000)}
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def test_413_is_decided_while_reading_not_after(fake):
    """An endless body is cut off after the limit; a large Content-Length is refused before any read."""
    app, chunk, received = create_app(fake, max_body_bytes=100_000), 16_384, []

    async def endless():  # ends after 100 chunks, so an app that reads it all fails instead of hanging
        received.append(chunk)
        return {"type": "http.request", "body": bytes(chunk), "more_body": len(received) < 100}

    status, body = asyncio.run(_call(app, [(b"content-type", b"image/png")], endless))
    assert status == 413 and "100000 bytes" in body["error"]
    assert sum(received) <= 100_000 + chunk

    async def must_not_read():
        raise AssertionError("the body was read although Content-Length is over the limit")

    headers = [(b"content-type", b"image/png"), (b"content-length", b"5000000000")]
    status, body = asyncio.run(_call(app, headers, must_not_read))
    assert status == 413 and "not 5000000000" in body["error"]


# A real uvicorn server on a free loopback port


@pytest.fixture(scope="module")
def server():
    """A uvicorn server in a thread; yields (base URL, its classifier)."""
    fake = FakeClassifier()
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(fake, max_body_bytes=CAP), log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", fake
    srv.should_exit = True
    thread.join(10)
    sock.close()


def _raw_post(url, head: bytes, body_parts) -> int:
    """Send a hand-made request over a socket (body sent in parts); returns the response's status."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as s:
        s.sendall(head)
        try:
            for part in body_parts:
                s.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        while b"\r\n\r\n" not in data:
            more = s.recv(65536)
            if not more:
                break
            data += more
    return int(data.split(b" ", 2)[1])


@pytest.mark.xdist_group("draw-server")
def test_50_concurrent_predictions(server):
    url, fake = server
    calls_before = fake.calls
    barrier = threading.Barrier(50)

    def post(_):
        with httpx.Client(timeout=60) as c:
            barrier.wait()
            return c.post(url + "/predict", content=SEVEN, headers=PNG)

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(post, range(50)))
    assert [r.status_code for r in answers] == [200] * 50
    labels = {r.json()["label"] for r in answers}
    assert len(labels) == 1 and all(len(r.json()["probabilities"]) == 10 for r in answers)
    assert fake.calls - calls_before == 50 and fake.max_active == 1  # serialised classifier calls


@pytest.mark.xdist_group("draw-server")
def test_bad_requests_in_parallel_leave_the_server_answering(server):
    url, _ = server
    port_head = f"POST /predict HTTP/1.1\r\nHost: {url[7:]}\r\nContent-Type: image/png\r\n"
    too_long = (port_head + f"Content-Length: {10 * CAP}\r\n\r\n").encode()
    chunked = (port_head + "Transfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"4000\r\n" + bytes(0x4000) + b"\r\n"

    def post(case):
        body, headers = BAD[case]
        with httpx.Client(timeout=60) as c:
            return c.post(url + "/predict", content=body, headers=headers).status_code

    jobs = [(lambda case=case: post(case), 400) for case in BAD]
    jobs += [(lambda: _raw_post(url, too_long, [bytes(1000)]), 413)] * 5
    jobs += [(lambda: _raw_post(url, chunked, [chunk] * (CAP // 0x4000 + 2)), 413)] * 5
    jobs += [(lambda: httpx.get(url + "/predict", timeout=60).status_code, 405)] * 3
    jobs += [(lambda: httpx.post(url + "/predict", content=SEVEN, headers=PNG, timeout=60).status_code,
              200)] * 10
    jobs *= 2
    with ThreadPoolExecutor(len(jobs)) as pool:
        statuses = list(pool.map(lambda job: job[0](), jobs))
    assert statuses == [want for _, want in jobs]
    r = httpx.post(url + "/predict", content=SEVEN, headers=PNG, timeout=60)
    assert r.status_code == 200 and len(r.json()["prepared"]) == 28
    assert httpx.get(url + "/", timeout=60).status_code == 200
