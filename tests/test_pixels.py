"""Pixels that cannot be a picture: NaN, infinite or out-of-range values, and data that does not fill
the size its header declares. Each is a one-line refusal for that image (prepare_digit), and `fnnet
predict` still answers for every other image of the batch."""

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile
from test_predict import LINE, draw_seven, make_run
from test_prepare_digit import draw_two

from fnnet.cli import main
from fnnet.datasets import prepare_digit


def float_tiff(path, value, where=(0, 0), mode="F"):
    """A 28x28 32-bit TIFF (mode F floats or I integers) of a 7 in [0, 1] (F) or 0..255 (I), one pixel
    set to `value`."""
    top = 1.0 if mode == "F" else 255
    img = Image.new("F", (28, 28), 0.0)
    ImageDraw.Draw(img).line([(6, 5), (21, 5), (12, 24)], fill=top, width=3)
    a = np.array(img)
    a[where] = value
    Image.fromarray(a if mode == "F" else a.astype(np.int32), mode).save(path, format="TIFF")
    return str(path)


def jpeg(img=None, **options) -> bytes:
    buf = io.BytesIO()
    (img or draw_two(dx=60, dy=70)).save(buf, format="JPEG", **options)
    return buf.getvalue()


def with_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG `data` with its frame header (SOF0 or SOF2) claiming width x height."""
    at = next(data.index(m) for m in (b"\xff\xc0", b"\xff\xc2") if m in data)
    return data[:at + 5] + struct.pack(">HH", height, width) + data[at + 9:]


@pytest.mark.parametrize("value, message", [
    (np.nan, "has 1 NaN or infinite pixel (of 784)"),
    (np.inf, "has 1 NaN or infinite pixel (of 784)"),
    (-np.inf, "has 1 NaN or infinite pixel (of 784)"),
    (-0.5, "has 1 pixel (of 784) outside [0, 65535]"),
    (1e6, "has 1 pixel (of 784) outside [0, 65535]"),
])
def test_a_float_tiff_with_a_bad_pixel_is_refused_naming_the_file_and_the_count(tmp_path, value, message):
    """Before: a NaN was an IndexError from deep inside, +inf scaled the 7 away to a confident wrong
    label, and values outside the range were clipped without a word."""
    path = float_tiff(tmp_path / "seven.tif", value)
    with pytest.raises(ValueError) as e:
        prepare_digit(path)
    text = str(e.value)
    assert text.startswith(f"prepare_digit: image {path} ") and message in text and "\n" not in text, text
    with Image.open(path) as img:  # a PIL image handed over directly is checked the same way
        with pytest.raises(ValueError) as e:
            prepare_digit(img)
        assert message in str(e.value)
    assert prepare_digit(float_tiff(tmp_path / "good.tif", 1.0)).shape == (1, 28, 28)


def test_bad_pixels_are_counted_and_integer_tiffs_are_checked_too(tmp_path):
    path = tmp_path / "many.tif"
    a = np.zeros((28, 28), np.float32)
    a[10:20, 10:14] = 1.0
    a[0, :5] = np.nan
    a[1, :3] = np.inf
    Image.fromarray(a, "F").save(path, format="TIFF")
    with pytest.raises(ValueError, match="has 8 NaN or infinite pixels"):
        prepare_digit(path)
    with pytest.raises(ValueError, match=r"has 1 pixel \(of 784\) outside \[0, 65535\], from -3 to 255"):
        prepare_digit(float_tiff(tmp_path / "negative.tif", -3, mode="I"))
    a = np.zeros((28, 28))
    a[5:20, 10:14] = 1.0
    a[0, :2] = np.nan
    with pytest.raises(ValueError, match=r"holds 2 NaN or infinite values \(of 784\)"):
        prepare_digit(a)


def test_a_jpeg_whose_header_declares_more_than_its_data_is_refused():
    """libjpeg pads a scan that ends at a marker with grey: before, a 280x280 JPEG whose header said
    6000x6000 was classified, as was one cut short with its end marker put back."""
    good = jpeg()
    assert prepare_digit(good).shape == (1, 28, 28)
    cases = {
        "6000x6000": (with_size(good, 6000, 6000), "declares 6000x6000 pixels but holds"),
        "6000x6000 progressive": (with_size(jpeg(progressive=True), 6000, 6000), "declares 6000x6000"),
        "300x300": (with_size(good, 300, 300), "truncated, its data ends before the 300x300 pixels"),
        "cut, end marker put back": (good[:len(good) * 2 // 3] + b"\xff\xd9", "truncated"),
        "colour, cut": (jpeg(draw_two(dx=60, dy=70).convert("RGB"))[:-900] + b"\xff\xd9", "truncated"),
    }
    for case, (data, message) in cases.items():
        with pytest.raises(ValueError) as e:
            prepare_digit(data)
        text = str(e.value)
        assert text.startswith("prepare_digit: ") and f"<{len(data):,} bytes>" in text, (case, text)
        assert message in text and "\n" not in text, (case, text)


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"optimize": True}, {"quality": 100},
                                     {"subsampling": 0}, {"restart_marker_blocks": 2}])
def test_complete_jpegs_of_every_kind_are_still_read(options):
    img = draw_two(dx=60, dy=70).convert("RGB")
    want = prepare_digit(img)
    for kind in (img, img.convert("L"), img.convert("CMYK")):
        got = prepare_digit(jpeg(kind, **options))
        assert np.abs(got - want).mean() < 0.02, (options, kind.mode)
    exif = img.getexif()
    exif[0x0112] = 3  # to be turned 180 degrees: read from the APP1 segment before the scan
    got = prepare_digit(jpeg(img, exif=exif, **options))
    assert np.abs(got - prepare_digit(img.rotate(180))).mean() < 0.02 < np.abs(got - want).mean()


def test_truncated_pngs_are_refused_and_pillow_must_not_pad_them(monkeypatch):
    buf = io.BytesIO()
    draw_two(dx=60, dy=70).save(buf, format="PNG")
    data = buf.getvalue()
    with pytest.raises(ValueError, match="cannot decode image <.*bytes>: it is truncated"):
        prepare_digit(data[:len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False, "importing fnnet must not turn it on"
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ValueError, match="LOAD_TRUNCATED_IMAGES is on, so a truncated image"):
        prepare_digit(data)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "two_layer_net-mnist"
    return make_run(folder, "two_layer_net", (784,), config={"hidden_size": 5})[0]


def test_predict_answers_every_good_image_and_one_line_for_each_bad_one(run, tmp_path, capsys):
    """Before: the NaN TIFF ended the batch with an IndexError and no image was answered."""
    seven, two = draw_seven(tmp_path / "seven.png"), str(tmp_path / "two.png")
    draw_two(dx=150, dy=100).save(two)
    nan, inf = float_tiff(tmp_path / "nan.tif", np.nan), float_tiff(tmp_path / "inf.tif", np.inf)
    big = tmp_path / "big.jpg"
    big.write_bytes(with_size(jpeg(), 6000, 6000))
    argv = [seven, nan, two, inf, str(big), seven]
    assert main(["predict", "--params", run, *argv]) == 1
    out, err = capsys.readouterr()
    assert [LINE.match(line).group(1) for line in out.splitlines()] == [seven, two, seven]
    errors = err.splitlines()
    assert len(errors) == 3, err
    for line, bad in zip(errors, (nan, inf, str(big)), strict=True):
        assert line.startswith(f"fnnet predict: error: prepare_digit: image {bad} "), line


def test_predict_goes_on_after_an_unexpected_fault_in_one_image(run, tmp_path, capsys, monkeypatch):
    import fnnet.datasets.digit_image as digit_image

    seven, two = draw_seven(tmp_path / "seven.png"), str(tmp_path / "two.png")
    draw_two(dx=150, dy=100).save(two)
    real = digit_image.read_grey

    def faulty(image, **kw):
        if str(image) == two:
            raise IndexError("a fault deep inside")
        return real(image, **kw)

    monkeypatch.setattr(digit_image, "read_grey", faulty)
    assert main(["predict", "--params", run, two, seven]) == 1
    out, err = capsys.readouterr()
    assert [LINE.match(line).group(1) for line in out.splitlines()] == [seven]
    assert err == f"fnnet predict: error: {two}: IndexError: a fault deep inside " \
        "(--debug shows the traceback)\n"
    with pytest.raises(IndexError):
        main(["predict", "--params", run, "--debug", two, seven])
