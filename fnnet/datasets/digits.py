"""The 8x8 handwritten digits bundled with scikit-learn: real data that needs no network.

1,797 images (UCI optical recognition of handwritten digits), pixel values 0..16. This is the
offline stand-in for MNIST and the dataset of fast end-to-end tests.
"""

from __future__ import annotations

import functools

import numpy as np

from fnnet.datasets.mnist import one_hot

__all__ = ["load_digits", "stratified_split"]


def stratified_split(t, test_ratio: float, seed: int):
    """Indices (train, test), each sorted, holding out round(test_ratio * n_c) of every class c."""
    if not 0.0 < test_ratio < 1.0:
        raise ValueError(f"stratified_split: test_ratio must be in (0, 1), got {test_ratio}")
    t = np.asarray(t)
    rng = np.random.Generator(np.random.PCG64(seed))
    test = []
    for c in np.unique(t):
        idx = np.flatnonzero(t == c)
        test.append(rng.permutation(idx)[: int(round(test_ratio * idx.size))])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(t.shape[0]), test)
    return train, test


@functools.lru_cache(maxsize=8)
def _split(test_ratio: float, seed: int):
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = bunch.data.reshape(-1, 8, 8).astype(np.uint8)
    t = bunch.target.astype(np.int32)
    train, test = stratified_split(t, test_ratio, seed)
    out = (x[train], t[train], x[test], t[test])
    for a in out:
        a.setflags(write=False)
    return out


def load_digits(normalize=True, flatten=True, one_hot_label=False, *, test_ratio=0.2, seed=0):
    """scikit-learn's 8x8 digits as `((x_train, t_train), (x_test, t_test))` NumPy arrays.

    x: (N, 64) when `flatten`, else (N, 1, 8, 8); float32 in [0, 1] (pixels / 16) when
    `normalize`, else uint8 0..16. t: int32 labels (N,), or float32 one-hot (N, 10).
    The split is stratified and fixed by `seed`: with the defaults 1,438 training and 359 test
    images, every class held out in proportion. Loaded once per process; each call returns
    fresh copies.
    """
    x_tr, t_tr, x_te, t_te = _split(float(test_ratio), int(seed))

    def fmt(x, t):
        x = x.reshape((x.shape[0], -1) if flatten else (x.shape[0], 1, 8, 8))
        x = x.astype(np.float32) / np.float32(16.0) if normalize else x.copy()
        return x, (one_hot(t) if one_hot_label else t.copy())

    return fmt(x_tr, t_tr), fmt(x_te, t_te)
