"""Mini-batches and the book's train/validation split, shuffled with explicit jax.random keys."""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["batches", "num_batches", "train_val_split", "permutation"]


def permutation(key, n: int) -> np.ndarray:
    """A permutation of range(n) drawn from `key`, as NumPy int indices (same key, same order)."""
    return np.asarray(jax.random.permutation(key, n))


def _check_pair(fn: str, x, t) -> int:
    nx, nt = np.shape(x)[:1], np.shape(t)[:1]
    if not nx or not nt:
        raise ValueError(f"{fn}: x and t must have a leading sample axis, got shapes {np.shape(x)} and "
                         f"{np.shape(t)}")
    if nx != nt:
        raise ValueError(f"{fn}: x has {nx[0]} samples (shape {np.shape(x)}) but t has {nt[0]} "
                         f"(shape {np.shape(t)})")
    return nx[0]


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches `batches` yields for n samples."""
    return n // batch_size if drop_last else -(-n // batch_size)


def batches(x, t, batch_size: int, key=None, *, shuffle: bool = True, drop_last: bool = False):
    """Yield `(x_batch, t_batch)` pairs covering the data once (one epoch).

    With `shuffle` (the default) the order is `jax.random.permutation(key, N)`: the same key
    gives the same batches. The tail: when N is not a multiple of `batch_size`, the last batch
    is smaller (N % batch_size samples) so that every sample is seen, or, with
    `drop_last=True`, it is left out so that every batch has exactly `batch_size` samples
    (one shape, one jit compilation). Batches are the input's array type, indexed on the host.
    """
    n = _check_pair("batches", x, t)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batches: batch_size must be a positive int, got {batch_size!r}")
    if shuffle and key is None:
        raise ValueError("batches: shuffle=True needs a jax.random key (or pass shuffle=False)")
    order = permutation(key, n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], t[idx]


def train_val_split(x, t, val_ratio: float = 0.2, *, key):
    """Shuffle with `key`, then hold out the first int(N * val_ratio) samples, as the book does.

    Returns `((x_train, t_train), (x_val, t_val))`.
    """
    n = _check_pair("train_val_split", x, t)
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"train_val_split: val_ratio must be in [0, 1), got {val_ratio}")
    order = permutation(key, n)
    n_val = int(n * val_ratio)
    val, train = order[:n_val], order[n_val:]
    return (x[train], t[train]), (x[val], t[val])
