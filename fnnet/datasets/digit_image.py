"""Your own handwriting as MNIST input: `prepare_digit` turns any picture of one digit into the
(1, 28, 28) float32 image in [0, 1] that a network trained on MNIST expects.

A plain resize to 28x28 gives a digit that is too small, off-centre and black on white, and a
network trained on MNIST gets it wrong. MNIST's digits were made this way, and so are these:

1. greyscale; transparent pixels are composited on white, or on black when what is opaque is
   light (white strokes on a transparent canvas), so that the strokes stand out either way;
2. a light background (the median of the border pixels above 0.5) is inverted: ink is white on
   black; the background level maps to 0 and the brightest ink to 1;
3. cropped to the ink's bounding box (pixels above `INK_THRESHOLD` of that range);
4. scaled to fit 20x20 with the aspect ratio kept (antialiased: Pillow's LANCZOS), brightest pixel 1;
5. placed in a 28x28 field so that its centre of mass lies on pixel (14, 14), shifted by whole
   pixels as MNIST's were (MNIST's mean centre of mass is (14.0, 14.0), row and column indices).

Pictures more than `WORK_SIDE` pixels on a side are first reduced (box filter), which keeps the
memory of a 40-megapixel photo small. Untrusted input is bounded before it is decoded: a file
must be a regular file of at most `MAX_FILE_BYTES`, and an image of more than `MAX_PIXELS`
pixels (or the `max_pixels` given) is refused from its header (Pillow opens lazily), so a
decompression bomb never expands. Data that does not fill the size its header declares is
refused, not decoded with the rest made up: Pillow's `LOAD_TRUNCATED_IMAGES` must be off, and a
JPEG, which libjpeg would otherwise pad with grey after an early end marker, must hold at least a
bit per 8x8 block and, with a single scan, is decoded without its end marker so that missing data
is an error. Pixels that are NaN, infinite or outside the range of their format are refused.
Every refusal is a ValueError of one line naming the input (`fnnet.io.TooLargeError` for the
size caps).
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import warnings

import numpy as np

from fnnet.io import TooLargeError

__all__ = ["prepare_digit", "read_grey", "prepare_grey", "image_size", "MAX_PIXELS", "MAX_FILE_BYTES"]

MAX_PIXELS = 40_000_000  # 40 megapixels: a phone photo; larger images are refused before decoding
MAX_FILE_BYTES = 50 * 2**20  # an image file larger than 50 MiB is refused before it is read
WORK_SIDE = 2048  # larger pictures are reduced to at most this many pixels a side before the steps below
FIELD, BOX = 28, 20  # MNIST: the digit fits a 20x20 box inside the 28x28 field
CENTRE = 14.0  # where MNIST's centre of mass lies (row and column index)
INK_THRESHOLD = 0.25  # of the ink's range: pixels above it count for the bounding box
MIN_CONTRAST = 0.1  # ink less than this much brighter than the background is no digit
BORDER = 0.02  # the border whose median is the background: 2% of the shorter side, at least 1 px
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as Pillow's convert("L")
FN = "prepare_digit"
JPEG_HUFFMAN = (0xC0, 0xC1, 0xC2, 0xC3)  # frame markers: baseline, sequential, progressive, lossless
JPEG_PAD = 32  # zero bytes after a single-scan JPEG's data: libjpeg's read-ahead ends in data, not a marker
_JPEG_DATA_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")  # a marker; FF00 (stuffing) and RSTn are data


def _describe(image) -> str:
    """How messages name the input."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"<{len(image):,} bytes>"
    if hasattr(image, "getbands") and hasattr(image, "size"):
        return f"<PIL image {image.mode} {image.size[0]}x{image.size[1]}>"
    return f"<{type(image).__name__} of shape {np.shape(image)}>"


def _check_pixels(width: int, height: int, name: str, max_pixels: int = MAX_PIXELS) -> None:
    if width * height > max_pixels:
        raise TooLargeError(f"{FN}: image {name} is {width}x{height} = {width * height:,} pixels, more than "
                            f"the {max_pixels:,} pixels allowed; refusing to decode it")
    if width < 1 or height < 1:
        raise ValueError(f"{FN}: image {name} is empty ({width}x{height} pixels)")


def _header(data: bytes, name: str, max_pixels: int):
    """A lazily opened PIL image (only its header read), its size checked against `max_pixels`."""
    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ValueError(f"{FN}: PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on, so a truncated image {name} "
                         "would be decoded with made-up pixels; turn it off")
    try:
        with warnings.catch_warnings():  # Pillow's own bomb warning: the cap below refuses earlier
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise TooLargeError(f"{FN}: image {name} has more than the {max_pixels:,} pixels allowed (Pillow: "
                            f"{' '.join(str(e).split())}); refusing to decode it") from None
    except Image.UnidentifiedImageError:
        raise ValueError(f"{FN}: {name} is not an image Pillow can read (no format it knows)") from None
    except Exception as e:  # Pillow's plugins raise many kinds on bad headers
        raise ValueError(f"{FN}: {name} is not an image Pillow can read "
                         f"({type(e).__name__}: {' '.join(str(e).split())})") from None
    _check_pixels(*img.size, name, max_pixels)
    return img


def image_size(data: bytes, *, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) that encoded image bytes declare, read from the header alone, nothing
    decoded; TooLargeError (a ValueError) above `max_pixels`, ValueError for what is no image."""
    return _header(bytes(data), _describe(data), max_pixels).size


def _jpeg_layout(data: bytes):
    """(SOF marker, width, height, [(H, V) sampling per component], [(components, data start, end)
    per scan]) from a JPEG's marker segments, or None when there is no frame or scan."""
    frame, scans, pos = None, [], 2
    while True:
        pos = data.find(b"\xff", pos)
        while 0 <= pos < len(data) - 1 and data[pos + 1] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos < 0 or pos + 4 > len(data) or data[pos + 1] == 0xD9:  # the end, or the end marker
            break
        marker = data[pos + 1]
        if marker in (0x00, 0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a segment
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        segment = data[pos + 4:pos + 2 + length]
        pos += 2 + length
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and len(segment) >= 6:
            _, height, width, count = struct.unpack(">BHHB", segment[:6])
            frame = marker, width, height, [(b >> 4, b & 15) for b in segment[7:6 + 3 * count:3]]
        elif marker == 0xDA and segment:
            match = _JPEG_DATA_END.search(data, pos)
            end = match.start() if match else len(data)
            scans.append((segment[0], pos, end))
            pos = end
    return None if frame is None or not scans else (*frame, scans)


def _checked_jpeg(data: bytes, name: str) -> bytes:
    """The JPEG `data` to decode, refused when its coded data cannot fill the size it declares.

    libjpeg pads a scan that ends early at a marker with grey and says nothing, so a 280x280 JPEG
    whose header claims 6000x6000 decodes to a grey picture. Every 8x8 block of a Huffman-coded
    JPEG takes at least one bit, which bounds the data needed; and a single-scan JPEG is decoded
    without its end marker (with a few zero bytes after its data for libjpeg's read-ahead), so
    that data ending early is a truncation error instead of grey."""
    layout = _jpeg_layout(data)
    if layout is None or layout[0] not in JPEG_HUFFMAN:
        return data
    sof, width, height, sampling, scans = layout
    if not sampling or min(min(hv) for hv in sampling) < 1:
        return data
    h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
    blocks = max(math.ceil(math.ceil(width * h / h_max) / 8) * math.ceil(math.ceil(height * v / v_max) / 8)
                 for h, v in sampling)
    coded = sum(end - start for _, start, end in scans)
    if 8 * coded < blocks:
        raise ValueError(f"{FN}: image {name} declares {width}x{height} pixels but holds {coded:,} bytes of "
                         f"JPEG data, less than the {-(-blocks // 8):,} its {blocks:,} 8x8 blocks need; "
                         "truncated or its header altered")
    if sof in (0xC0, 0xC1) and len(scans) == 1 and scans[0][0] == len(sampling):
        return data[:scans[0][2]] + bytes(JPEG_PAD)
    return data


def _open(data: bytes, name: str, max_pixels: int = MAX_PIXELS):
    """A decoded PIL image from encoded bytes; its size is checked from the header first, and
    data that does not fill that size is refused."""
    from PIL import ImageOps

    img = _header(data, name, max_pixels)
    if img.format in ("JPEG", "MPO"):
        img = _header(_checked_jpeg(data, name), name, max_pixels)
    width, height = img.size
    try:
        img.draft(None, (WORK_SIDE, WORK_SIDE))  # a JPEG decodes at 1/2, 1/4 or 1/8 scale when that is enough
        img.load()
        return ImageOps.exif_transpose(img)
    except Exception as e:  # truncated or corrupt data
        if isinstance(e, OSError) and "truncated" in str(e):
            raise ValueError(f"{FN}: cannot decode image {name}: it is truncated, its data ends before the "
                             f"{width}x{height} pixels its header declares") from None
        raise ValueError(f"{FN}: cannot decode image {name} ({type(e).__name__}: "
                         f"{' '.join(str(e).split())})") from None


def _read_file(path, name: str) -> bytes:
    from fnnet.io import read_regular

    try:
        return read_regular(path, fn=FN, what="image", max_bytes=MAX_FILE_BYTES)
    except ValueError:
        raise
    except OSError as e:
        reason = e.strerror or " ".join(str(e).split())
        if str(e).startswith(f"{FN}:"):
            raise ValueError(str(e)) from None
        raise ValueError(f"{FN}: cannot read image {name}: {reason}") from None


def _check_values(a: np.ndarray, name: str, high: float) -> None:
    """Refuse pixels that are NaN, infinite or outside [0, high], counting them: one such pixel
    would otherwise decide the scaling (an inf) or leave no ink to find (a NaN)."""
    finite = np.isfinite(a)
    bad = a.size - int(np.count_nonzero(finite))
    if bad:
        raise ValueError(f"{FN}: image {name} has {bad:,} NaN or infinite pixel{'s' * (bad > 1)} "
                         f"(of {a.size:,})")
    bad = int(np.count_nonzero((a < 0) | (a > high)))
    if bad:
        raise ValueError(f"{FN}: image {name} has {bad:,} pixel{'s' * (bad > 1)} (of {a.size:,}) outside "
                         f"[0, {high:g}], from {float(a.min()):g} to {float(a.max()):g}")


def _pil_to_array(img, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A PIL image as float32 (H, W), (H, W, 3) or (H, W, 4) in [0, 1]. 32-bit and 16-bit images
    (modes I, F, I;16) must hold finite values in [0, 65535]: floats up to 1 are taken as they are,
    values up to 255 as 8-bit, larger ones as 16-bit."""
    _check_pixels(*img.size, name, max_pixels)
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        a = np.asarray(img, np.float32)
        _check_values(a, name, 65535.0)
        top = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        return np.clip(a / (1.0 if mode == "F" and a.max(initial=0) <= 1 else top), 0, 1)
    if any(b in ("A", "a") for b in img.getbands()) or "transparency" in img.info:
        img = img.convert("RGBA")
    elif mode != "L":
        img = img.convert("L" if mode == "1" else "RGB")
    factor = -(-max(img.size) // WORK_SIDE)
    if factor > 1:
        img = img.reduce(factor)  # box filter; the digit ends up 20 px tall anyway
    return np.asarray(img, np.float32) / 255.0


def _array(image, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An array as float32 (H, W) or (H, W, C) in [0, 1]: integers are 0..255 (0..65535 beyond
    that), floats [0, 1] (or 0..255 when larger)."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] == 1 and a.shape[-1] not in (1, 3, 4):
        a = a[0]  # (1, H, W), as prepare_digit returns
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise ValueError(f"{FN}: {name}: expected an image of shape (H, W), (H, W, 3) or (H, W, 4), "
                         f"got shape {a.shape}")
    _check_pixels(a.shape[1], a.shape[0], name, max_pixels)
    if a.dtype == bool:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        if a.size and a.min() < 0:
            raise ValueError(f"{FN}: {name} has negative pixel values")
        top = 255.0 if a.max(initial=0) <= 255 else float(np.iinfo(a.dtype).max)
        return a.astype(np.float32) / top
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{FN}: {name} has dtype {a.dtype}, not numbers")
    a = a.astype(np.float32)
    bad = a.size - int(np.count_nonzero(np.isfinite(a)))
    if bad:
        raise ValueError(f"{FN}: {name} holds {bad:,} NaN or infinite values (of {a.size:,})")
    lo, hi = float(a.min(initial=0)), float(a.max(initial=0))
    if lo < 0 or hi > 255:
        raise ValueError(f"{FN}: {name} has values in [{lo:g}, {hi:g}]; expected [0, 1] or [0, 255]")
    return a / 255.0 if hi > 1 else a


def _composite(a: np.ndarray) -> np.ndarray:
    """Greyscale (H, W): colour by luminance; alpha composited on white, or on black when the
    opaque pixels are light, so the strokes contrast with the background either way."""
    if a.ndim == 2:
        return a
    grey = a[..., :3] @ LUMA
    if a.shape[-1] == 3:
        return grey
    alpha = a[..., 3]
    if alpha.min() >= alpha.max():  # no transparency to speak of: the colours are the picture
        return grey if alpha.max() > 0 else np.zeros_like(grey)
    opaque = float((grey * alpha).sum() / max(float(alpha.sum()), 1e-6))
    back = 0.0 if opaque > 0.5 else 1.0
    return grey * alpha + back * (1.0 - alpha)


def read_grey(image, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The picture `image` (a path, encoded bytes, a PIL image or an array) as float32 (H, W)
    greyscale in [0, 1], alpha composited (see the module docstring); bounded and checked as
    `prepare_digit` does."""
    name = _describe(image)
    if isinstance(image, (str, os.PathLike)):
        image = _open(_read_file(image, name), name, max_pixels)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        if len(image) > MAX_FILE_BYTES:
            raise TooLargeError(f"{FN}: {name}: more than the {MAX_FILE_BYTES:,} bytes an image may have")
        image = _open(bytes(image), name, max_pixels)
    if hasattr(image, "getbands") and hasattr(image, "size"):
        a = _pil_to_array(image, name, max_pixels)
    else:
        a = _array(image, name, max_pixels)
    return np.ascontiguousarray(_composite(a), np.float32)


def _border_median(g: np.ndarray) -> float:
    k = max(1, int(round(BORDER * min(g.shape))))
    edge = np.concatenate([g[:k].ravel(), g[-k:].ravel(), g[:, :k].ravel(), g[:, -k:].ravel()])
    return float(np.median(edge))


def prepare_grey(grey: np.ndarray, name: str = "image") -> np.ndarray:
    """Steps 2 to 5 of the module docstring on a greyscale float (H, W) in [0, 1]: the
    (1, 28, 28) float32 MNIST-like image. `name` is how errors name the input."""
    from PIL import Image

    g = np.asarray(grey, np.float32)
    if _border_median(g) > 0.5:
        g = 1.0 - g
    back, peak = _border_median(g), float(g.max(initial=0))
    if peak - back < MIN_CONTRAST:
        raise ValueError(f"{FN}: {name} shows no digit: it is uniform (values from {float(g.min()):.2f} to "
                         f"{float(g.max()):.2f}, background {back:.2f})")
    g = np.clip((g - back) / (peak - back), 0.0, 1.0)
    ink = g > INK_THRESHOLD
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    g = g[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = g.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(g).resize(size, Image.LANCZOS), np.float32)
    small = np.clip(small, 0.0, None)
    small /= max(float(small.max()), 1e-6)
    h, w = small.shape
    mass = float(small.sum())
    cy = float((small.sum(axis=1) * np.arange(h)).sum() / mass)
    cx = float((small.sum(axis=0) * np.arange(w)).sum() / mass)
    top = min(max(int(round(CENTRE - cy)), 0), FIELD - h)  # shifted by whole pixels, never cut off
    left = min(max(int(round(CENTRE - cx)), 0), FIELD - w)
    out = np.zeros((1, FIELD, FIELD), np.float32)
    out[0, top:top + h, left:left + w] = np.clip(small, 0.0, 1.0)
    return out


def prepare_digit(image, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One picture of a digit -> the (1, 28, 28) float32 image in [0, 1] a network trained on MNIST
    expects: white ink on black, cropped, scaled to fit 20x20, centred by centre of mass.

    `image`: a path (str or PathLike), encoded bytes (a PNG upload), a PIL image or an array
    (H, W), (H, W, 3) or (H, W, 4) (uint8 0..255 or float [0, 1]); any size up to `max_pixels`
    (default `MAX_PIXELS`), grey or colour, with or without alpha. Raises ValueError (one line
    naming the input) for an unreadable, truncated or oversized file (`fnnet.io.TooLargeError`
    for the size caps), a non-image, NaN, infinite or out-of-range pixels, or a picture with no
    ink (empty or uniform).

        x = prepare_digit("seven.png")            # (1, 28, 28)
        probs = classifier.probabilities(x[None])  # (1, 10)
    """
    return prepare_grey(read_grey(image, max_pixels=max_pixels), _describe(image))
