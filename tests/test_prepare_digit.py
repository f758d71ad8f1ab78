"""prepare_digit: a picture of a digit becomes MNIST's format (white on black, cropped, fit to 20x20,
centred by centre of mass in 28x28), and inputs that are no picture of a digit are refused in one line."""

import io
import os
import struct
import time
import zlib

import numpy as np
import pytest
from bombs import peak_rss_run, sparse_file
from PIL import Image, ImageDraw

from fnnet.datasets import prepare_digit
from fnnet.datasets.digit_image import MAX_FILE_BYTES, MAX_PIXELS

TESTS = os.path.dirname(os.path.abspath(__file__))
# A 2 drawn as a pen would: an arc, a diagonal, a base line (points on a 100x140 box).
TWO = [(10, 40), (25, 10), (55, 2), (85, 15), (90, 45), (70, 80), (40, 110), (5, 138), (95, 138)]


def draw_two(dx=0, dy=0, scale=1.0, width=18, size=280, ink=0, paper=255, mode="L"):
    """A 2 in thick pen strokes on a size x size canvas, its box's top-left corner at (dx, dy)."""
    img = Image.new(mode, (size, size), paper)
    pts = [(dx + x * scale, dy + y * scale) for x, y in TWO]
    ImageDraw.Draw(img).line(pts, fill=ink, width=width, joint="curve")
    return img


def centre_of_mass(x):
    img = x[0]
    ys, xs = np.mgrid[0:28, 0:28]
    return (img * ys).sum() / img.sum(), (img * xs).sum() / img.sum()


def bbox(x, threshold=0.25):
    rows, cols = np.nonzero((x[0] > threshold).any(1))[0], np.nonzero((x[0] > threshold).any(0))[0]
    return rows[0], rows[-1], cols[0], cols[-1]


def test_an_off_centre_digit_on_a_white_canvas_is_centred_and_fit_to_20x20():
    x = prepare_digit(draw_two(dx=8, dy=12, scale=0.9))  # in the top-left corner of 280x280
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == pytest.approx(1.0)
    cy, cx = centre_of_mass(x)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1, (cy, cx)
    top, bottom, left, right = bbox(x)
    assert bottom - top + 1 in (19, 20, 21), "the taller side fills 20 pixels"
    assert right - left + 1 <= 20
    assert top >= 2 and bottom <= 25 and left >= 2 and right <= 25, "inside the field, with MNIST's margin"
    assert x[0, :2].max() == 0 and x[0, -2:].max() == 0 and x[0, :, :2].max() == 0 and x[0, :, -2:].max() == 0
    assert x[0, 0, 0] == 0.0, "the white paper became black background"


def test_position_and_size_on_the_canvas_do_not_matter():
    a = prepare_digit(draw_two(dx=8, dy=12, scale=0.9))
    for dx, dy, scale in ((150, 120, 0.9), (60, 40, 1.5), (170, 10, 0.7)):
        b = prepare_digit(draw_two(dx=dx, dy=dy, scale=scale, width=round(18 * scale)))
        assert np.abs(a - b).mean() < 0.03, (dx, dy, scale, np.abs(a - b).mean())


def test_white_on_black_input_is_left_as_it_is():
    x = prepare_digit(draw_two(dx=40, dy=60))
    again = prepare_digit(x)  # already MNIST's format: white ink on black
    assert np.abs(again - x).max() < 0.05
    assert prepare_digit((x[0] * 255).astype(np.uint8)) == pytest.approx(again, abs=0.01)
    dark = prepare_digit(draw_two(dx=40, dy=60, ink=255, paper=0))  # chalk on a blackboard
    assert np.abs(dark - x).mean() < 0.01, "not inverted: the same digit as black on white"


def test_colour_and_alpha_input():
    grey = prepare_digit(draw_two(dx=30, dy=50))
    blue_on_yellow = draw_two(dx=30, dy=50, ink=(20, 30, 160), paper=(250, 240, 170), mode="RGB")
    assert np.abs(prepare_digit(blue_on_yellow) - grey).mean() < 0.02
    dark_on_clear = draw_two(dx=30, dy=50, ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA")
    white_on_clear = draw_two(dx=30, dy=50, ink=(255, 255, 255, 255), paper=(255, 255, 255, 0), mode="RGBA")
    opaque = draw_two(dx=30, dy=50, ink=(0, 0, 0, 255), paper=(255, 255, 255, 255), mode="RGBA")
    for img in (dark_on_clear, white_on_clear, opaque, blue_on_yellow.convert("P"), grey_la(dark_on_clear)):
        got = prepare_digit(img)
        assert np.abs(got - grey).mean() < 0.02, img.mode
    assert np.abs(prepare_digit(np.asarray(white_on_clear)) - grey).mean() < 0.02, "as an (H, W, 4) array"


def grey_la(img):
    return img.convert("LA")


def test_paths_bytes_pil_images_and_arrays_give_the_same_image(tmp_path):
    img = draw_two(dx=100, dy=30)
    img.save(tmp_path / "two.png")
    want = prepare_digit(img)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    arr = np.asarray(img)
    for source in (str(tmp_path / "two.png"), tmp_path / "two.png", buf.getvalue(), arr,
                   arr.astype(np.float32) / 255, arr[:, :, None]):
        np.testing.assert_allclose(prepare_digit(source), want, atol=1e-5)
    img.convert("RGB").save(tmp_path / "two.jpg", quality=90)
    assert np.abs(prepare_digit(tmp_path / "two.jpg") - want).mean() < 0.02


def png(width, height, idat=b""):
    """PNG bytes declaring a width x height greyscale image, with `idat` as its image data."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("make, message", [
    (lambda p: Image.new("L", (280, 280), 255).save(p), "shows no digit: it is uniform"),  # a blank page
    (lambda p: Image.new("RGB", (50, 40), (90, 90, 90)).save(p), "shows no digit"),
    (lambda p: p.write_bytes(_png_bytes()[:300]), "cannot decode image"),  # truncated
    (lambda p: p.write_text("seven\n"), "is not an image Pillow can read"),
    (lambda p: p.write_bytes(b""), "is not an image Pillow can read"),
    (lambda p: os.mkfifo(p), "is a FIFO (named pipe), not a regular file"),
    (lambda p: None, "cannot read image"),  # no such file
    (lambda p: sparse_file(p, MAX_FILE_BYTES + 1, _png_bytes()), f"more than the {MAX_FILE_BYTES:,}"),
])
def test_files_that_are_no_digit_are_refused_in_one_line(tmp_path, make, message):
    path = tmp_path / "input.png"
    make(path)
    start = time.monotonic()
    with pytest.raises(ValueError) as e:
        prepare_digit(str(path))
    text = str(e.value)
    assert text.startswith("prepare_digit:") and message in text and str(path) in text, text
    assert "\n" not in text
    assert time.monotonic() - start < 10


def _png_bytes():
    buf = io.BytesIO()
    draw_two(dx=40, dy=40).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("source, message", [
    (np.zeros((0, 28)), "is empty"),
    (np.full((28, 28), 0.5), "shows no digit"),
    (np.zeros((28, 28, 5)), "expected an image of shape"),
    (np.full((28, 28), np.nan), "NaN or infinite"),
    (np.full((28, 28), 300.0), "expected [0, 1] or [0, 255]"),
    (np.array([["a"]]), "not numbers"),
    (b"not an image at all", "is not an image Pillow can read"),
])
def test_arrays_and_bytes_that_are_no_digit_are_refused(source, message):
    with pytest.raises(ValueError, match="^prepare_digit: ") as e:
        prepare_digit(source)
    assert message in str(e.value), str(e.value)


def test_an_image_above_the_pixel_cap_is_refused_before_decoding(tmp_path):
    """A PNG header can declare any size; the pixels are counted before one is decoded: a few kB
    that would decode to 2.5 GB (50000x50000), or to 42 MB just above the cap, use no memory."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("measures the peak memory of a process from /proc/self/status (Linux)")
    huge = tmp_path / "huge.png"
    huge.write_bytes(png(50_000, 50_000))
    above = tmp_path / "above.png"  # a real zlib stream of 42 MB of zeros, in 41 kB
    above.write_bytes(png(7000, 6000, zlib.compress(bytes(6000 * 7001), 9)))
    assert 7000 * 6000 > MAX_PIXELS
    r = peak_rss_run(f"""
import time
from fnnet.datasets.digit_image import prepare_digit
result = {{}}
for name in ('huge', 'above'):
    start = time.monotonic()
    try:
        prepare_digit({str(tmp_path)!r} + '/' + name + '.png')
        result[name] = None
    except ValueError as e:
        result[name] = str(e)
    result[name + '_s'] = time.monotonic() - start
result['hwm_mb'] = [int(line.split()[1]) / 1024 for line in open('/proc/self/status')
                    if line.startswith('VmHWM:')][0]
""", env=dict(os.environ, PYTHONPATH=TESTS, JAX_PLATFORMS="cpu"))
    for name in ("huge", "above"):
        assert r[name] is not None and r[name].startswith("prepare_digit: image "), r
        assert f"more than the {MAX_PIXELS:,} pixels allowed" in r[name], r
        assert "refusing to decode" in r[name], r
        assert r[name + "_s"] < 5, r
    assert "7000x6000 = 42,000,000 pixels" in r["above"], r
    # this process's own peak (VmHWM); ru_maxrss also counts the parent's, inherited through fork and exec
    assert r["hwm_mb"] < 400, r
    with pytest.raises(ValueError, match="more than the 40,000,000"):
        prepare_digit(np.zeros((7000, 6000), np.uint8))
