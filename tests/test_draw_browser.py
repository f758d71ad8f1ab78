"""`fnnet draw` in a real browser: headless Chromium draws a 7 and a 1 with the mouse and reads the
page's prediction, using the book's trained SimpleConvNet; and the feature maps a LeNet run shows.

Needs the system's Chromium (Debian: apt-get install chromium), the playwright package (the dev
extra; its own browser downloads are not used), the draw extra and, but for the LeNet,
FNNET_BOOK_WEIGHTS_DIR with params.pkl; skips, saying which is missing, otherwise. With
FNNET_DRAW_SCREENSHOT=docs/draw.png the screenshot of the 7 is also written there.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("starlette", reason="the draw extra is not installed: pip install 'fnnet[draw]'")
pytest.importorskip("uvicorn", reason="the draw extra is not installed: pip install 'fnnet[draw]'")
httpx = pytest.importorskip("httpx", reason="httpx (dev extra) is needed to wait for the server")

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    expect = sync_playwright = None

CHROMIUM = next((path for path in (shutil.which("chromium"), "/usr/bin/chromium")
                 if path and os.path.isfile(path) and os.access(path, os.X_OK)), None)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("draw-browser"),  # one server and one browser for the module, on one worker
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (no chromium on PATH, no "
                       "/usr/bin/chromium): apt-get install chromium"),
    pytest.mark.skipif(sync_playwright is None, reason="the playwright package is not importable: "
                       "pip install playwright (the dev extra)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(args, cwd, log):
    """`python -m fnnet.cli draw ARGS` run in `cwd` on a free loopback port, its output in `log`;
    yields its URL once the page answers, and stops it afterwards."""
    port = _free_port()
    cmd = [sys.executable, "-m", "fnnet.cli", "draw", *args, "--host", "127.0.0.1", "--port", str(port)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"fnnet draw exited with status {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"fnnet draw did not answer at {url} within 180 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def draw_url(tmp_path_factory):
    """fnnet draw with the book's SimpleConvNet; yields its URL."""
    folder = os.environ.get("FNNET_BOOK_WEIGHTS_DIR")
    params = os.path.join(folder or "", "params.pkl")
    if not folder or not os.path.isfile(params):
        pytest.skip("FNNET_BOOK_WEIGHTS_DIR is not set or has no params.pkl: the test needs the book's "
                    "trained SimpleConvNet to recognise drawn digits")
    log = tmp_path_factory.mktemp("draw-server") / "server.log"
    # run in the weights folder, so the page names the model "(params.pkl)"
    with serving(["--params", "params.pkl", "--model", "simple_convnet"], folder, log) as url:
        yield url


@pytest.fixture(scope="module")
def lenet_url(tmp_path_factory):
    """fnnet draw --trust-run with a run of scripts/ch08_lenet5.py's LeNet (random weights); yields its
    URL."""
    from test_feature_maps import LENET5, make_spec_run

    folder = tmp_path_factory.mktemp("lenet-run")
    make_spec_run(folder / "lenet5-mnist", LENET5)
    args = ["--params", "lenet5-mnist/params.npz", "--trust-run"]
    with serving(args, folder, folder / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(browser, draw_url):
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    page.goto(draw_url)
    yield page
    page.close()


# Strokes in canvas pixels (the canvas is 280x280), each a list of points joined by straight moves.
SEVEN = [[(75, 70), (205, 70), (185, 110), (150, 170), (125, 235)]]
ONE = [[(150, 55), (150, 235)]]


def _inside(page, x, y):
    """Page coordinates of canvas pixel (x, y); the canvas is drawn at its own size, inside its border."""
    box = page.locator("#pad").bounding_box()
    inset = page.locator("#pad").evaluate("canvas => canvas.clientLeft")
    return box["x"] + inset + x, box["y"] + inset + y


def draw(page, strokes):
    """Draw `strokes` on the canvas with the mouse and wait for the page to show the prediction."""
    before = int(page.locator("#result").get_attribute("data-predictions"))
    for stroke in strokes:
        page.mouse.move(*_inside(page, *stroke[0]))
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(*_inside(page, x, y), steps=12)
        page.mouse.up()
    result = page.locator("#result")
    expect(result).to_have_attribute("data-predictions", str(before + len(strokes)), timeout=60_000)
    expect(result).to_have_attribute("aria-busy", "false")
    return page.locator("#label").inner_text().strip()


def test_draw_a_7_then_a_1(page, tmp_path):
    assert page.locator("#label").inner_text().strip() == "\u2013"  # nothing drawn yet

    assert draw(page, SEVEN) == "7"
    bars = page.locator("#bars li")
    assert bars.count() == 10 and "top" in bars.nth(7).get_attribute("class")
    assert page.locator("#maps canvas").count() == 30  # SimpleConvNet's 30 first-layer filters
    assert page.locator("#maps-section").is_visible()
    assert page.locator("#model").inner_text() == "simple_convnet (params.pkl)"
    assert page.locator("#message").inner_text().strip() == ""
    ink = page.locator("#prepared").evaluate(  # bright pixels of the shown 28x28 input
        "c => c.getContext('2d').getImageData(0, 0, 28, 28).data.filter((v, i) => i % 4 == 0 && v > 127)"
        ".length")
    assert 40 < ink < 400, "the 28x28 input shown should be a white-on-black stroke"
    shot = tmp_path / "draw-7.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("FNNET_DRAW_SCREENSHOT"):
        page.screenshot(path=os.environ["FNNET_DRAW_SCREENSHOT"], full_page=True)

    page.get_by_role("button", name="Clear").click()
    assert page.locator("#label").inner_text().strip() == "\u2013"
    assert draw(page, ONE) == "1"
    page.screenshot(path=str(tmp_path / "draw-1.png"), full_page=True)


def test_a_lenet_runs_first_convolution_maps_are_shown(browser, lenet_url):
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    try:
        page.goto(lenet_url)
        expect(page.locator("#maps-section")).to_be_hidden()  # nothing drawn yet
        draw(page, SEVEN)
        maps = page.locator("#maps canvas")
        assert maps.count() == 6  # LeNet's Convolution(6, 5, pad=2)
        assert page.locator("#maps-section").is_visible()
        assert [maps.nth(k).get_attribute("width") for k in (0, 5)] == ["28", "28"]  # 28x28 each (pad 2)
        assert maps.nth(5).get_attribute("aria-label") == "Feature map 6 of 6"
        assert page.locator("#model").inner_text().endswith("ch08_lenet5.py:lenet5 (lenet5-mnist/params.npz)")
    finally:
        page.close()


def test_server_errors_are_shown(page):
    """An error answer appears in the message line; the last prediction stays as it was."""
    shown = page.locator("#label").inner_text()
    page.route("**/predict", lambda route: route.fulfill(
        status=413, content_type="application/json", json={"error": "POST /predict: the body is too large"}))
    try:
        page.mouse.click(*_inside(page, 40, 40))
        expect(page.locator("#message")).to_have_text("POST /predict: the body is too large")
        expect(page.locator("#result")).to_have_attribute("aria-busy", "false")
        assert page.locator("#label").inner_text() == shown
    finally:
        page.unroute("**/predict")
