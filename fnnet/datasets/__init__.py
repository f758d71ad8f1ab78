"""Datasets: MNIST (verified, cached, downloadable), scikit-learn's 8x8 digits, mini-batches.

All loaders return the book's structure `((x_train, t_train), (x_test, t_test))` of NumPy
arrays: x float32 in [0, 1] (or uint8 raw pixels), t int32 labels (or float32 one-hot).
"""

from fnnet.datasets.batching import batches, num_batches, train_val_split
from fnnet.datasets.digit_image import prepare_digit
from fnnet.datasets.digits import load_digits
from fnnet.datasets.idx import ChecksumError, IdxError, read_idx
from fnnet.datasets.mnist import (
    MNIST_FILES,
    MNIST_MIRRORS,
    MNIST_SHA256,
    MNISTNotFoundError,
    default_cache_dir,
    load_mnist,
    one_hot,
)

__all__ = [
    "load_mnist", "load_digits", "read_idx", "batches", "num_batches", "train_val_split", "one_hot",
    "default_cache_dir", "MNIST_FILES", "MNIST_SHA256", "MNIST_MIRRORS", "MNISTNotFoundError",
    "IdxError", "ChecksumError", "prepare_digit",
]
