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
pixels is refused from its header (Pillow opens lazily), so a decompression bomb never expands.
Every refusal is a ValueError of one line naming the input.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np

__all__ = ["prepare_digit", "read_grey", "prepare_grey", "MAX_PIXELS", "MAX_FILE_BYTES"]

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


def _describe(image) -> str:
    """How messages name the input."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"<{len(image):,} bytes>"
    if hasattr(image, "getbands") and hasattr(image, "size"):
        return f"<PIL image {image.mode} {image.size[0]}x{image.size[1]}>"
    return f"<{type(image).__name__} of shape {np.shape(image)}>"


def _check_pixels(width: int, height: int, name: str) -> None:
    if width * height > MAX_PIXELS:
        raise ValueError(f"{FN}: image {name} is {width}x{height} = {width * height:,} pixels, more than the "
                         f"{MAX_PIXELS:,} pixels allowed; refusing to decode it")
    if width < 1 or height < 1:
        raise ValueError(f"{FN}: image {name} is empty ({width}x{height} pixels)")


def _open(data: bytes, name: str):
    """A decoded PIL image from encoded bytes; its size is checked from the header first."""
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():  # Pillow's own bomb warning: the cap below refuses earlier
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ValueError(f"{FN}: image {name} has more than the {MAX_PIXELS:,} pixels allowed (Pillow: "
                         f"{' '.join(str(e).split())}); refusing to decode it") from None
    except Image.UnidentifiedImageError:
        raise ValueError(f"{FN}: {name} is not an image Pillow can read (no format it knows)") from None
    except Exception as e:  # Pillow's plugins raise many kinds on bad headers
        raise ValueError(f"{FN}: {name} is not an image Pillow can read "
                         f"({type(e).__name__}: {' '.join(str(e).split())})") from None
    _check_pixels(*img.size, name)
    try:
        img.draft(None, (WORK_SIDE, WORK_SIDE))  # a JPEG decodes at 1/2, 1/4 or 1/8 scale when that is enough
        img.load()
        return ImageOps.exif_transpose(img)
    except Exception as e:  # truncated or corrupt data
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


def _pil_to_array(img, name: str) -> np.ndarray:
    """A PIL image as float32 (H, W), (H, W, 3) or (H, W, 4) in [0, 1]."""
    _check_pixels(*img.size, name)
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        a = np.asarray(img, np.float32)
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


def _array(image, name: str) -> np.ndarray:
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
    _check_pixels(a.shape[1], a.shape[0], name)
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
    if not np.isfinite(a).all():
        raise ValueError(f"{FN}: {name} holds NaN or infinite values")
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


def read_grey(image) -> np.ndarray:
    """The picture `image` (a path, encoded bytes, a PIL image or an array) as float32 (H, W)
    greyscale in [0, 1], alpha composited (see the module docstring); bounded and checked as
    `prepare_digit` does."""
    name = _describe(image)
    if isinstance(image, (str, os.PathLike)):
        image = _open(_read_file(image, name), name)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        if len(image) > MAX_FILE_BYTES:
            raise ValueError(f"{FN}: {name}: more than the {MAX_FILE_BYTES:,} bytes an image may have")
        image = _open(bytes(image), name)
    if hasattr(image, "getbands") and hasattr(image, "size"):
        a = _pil_to_array(image, name)
    else:
        a = _array(image, name)
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


def prepare_digit(image) -> np.ndarray:
    """One picture of a digit -> the (1, 28, 28) float32 image in [0, 1] a network trained on MNIST
    expects: white ink on black, cropped, scaled to fit 20x20, centred by centre of mass.

    `image`: a path (str or PathLike), encoded bytes (a PNG upload), a PIL image or an array
    (H, W), (H, W, 3) or (H, W, 4) (uint8 0..255 or float [0, 1]); any size up to `MAX_PIXELS`,
    grey or colour, with or without alpha. Raises ValueError (one line naming the input) for an
    unreadable or oversized file, a non-image, or a picture with no ink (empty or uniform).

        x = prepare_digit("seven.png")            # (1, 28, 28)
        probs = classifier.probabilities(x[None])  # (1, 10)
    """
    return prepare_grey(read_grey(image), _describe(image))
