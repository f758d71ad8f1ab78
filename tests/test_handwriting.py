"""Digits drawn as a person draws them (scripts/handwriting.py: thick strokes on a 280x280 canvas,
off-centre, 90 to 220 px tall, slanted up to 20 degrees) are read by the book's SimpleConvNet once
prepare_digit has prepared them, and mostly misread after a plain resize to 28x28."""

import importlib.util
import os

import numpy as np

from fnnet.datasets import prepare_digit
from fnnet.inference import load_classifier

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "handwriting.py")


def _handwriting():
    spec = importlib.util.spec_from_file_location("handwriting", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_drawn_digits_are_read_after_prepare_digit(book_weights_dir):
    hw = _handwriting()
    drawn = hw.draw_digits(100, seed=0)
    images, labels = [img for img, _ in drawn], np.array([label for _, label in drawn])
    assert np.bincount(labels).tolist() == [10] * 10
    for img in images[:10]:  # dark ink on white, strokes thick enough to fill part of the canvas
        a = np.asarray(img)
        assert a.shape == (280, 280) and np.median(a) > 230 and a.min() < 70
        assert 0.02 < (a < 128).mean() < 0.4
    clf = load_classifier(os.path.join(book_weights_dir, "params.pkl"), "simple_convnet")
    prepared = float((hw.classify(clf, images, prepare_digit) == labels).mean())
    naive = float((hw.classify(clf, images, hw.naive) == labels).mean())
    print(f"100 drawn digits, the book's SimpleConvNet: prepare_digit {prepared:.2f}, naive {naive:.2f}")
    assert prepared >= 0.95, (prepared, naive)
    assert naive < prepared, (prepared, naive)
