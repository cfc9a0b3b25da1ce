"""Known-answer tests of the forecast scores and their trivial baselines."""

import math

import numpy as np
import pytest

from pyro_dynvae.metrics import BASELINES, forecast_scores, library_versions


def square_frames(corners, size=16, side=4):
    """Frames ``(1, T, 1, size, size)``: a bright ``side``-pixel square at each column corner."""
    frames = np.zeros((1, len(corners), 1, size, size))
    for t, corner in enumerate(corners):
        frames[0, t, 0, 4 : 4 + side, corner : corner + side] = 1.0
    return frames


def test_blank_frame_beats_a_forecast_in_the_wrong_place():
    # a square moving 4 px a frame; the "model" forecasts it where it last was (copy last):
    # wrong twice (where it is and where it was), so the black frame has half its error, and
    # the mean frame (a quarter-intensity smear over the four places) less still
    frames = square_frames([0, 4, 8, 12])
    context, future = frames[:, :2], frames[:, 2:]
    wrong = np.repeat(context[:, -1:], 2, axis=1)
    scores = forecast_scores(context, future, wrong)
    square_energy = 16 / 256
    assert scores["mse"]["blank"] == pytest.approx(square_energy)
    assert scores["mse"]["model"] == pytest.approx(2 * square_energy)
    # mean frame: 16 target pixels at (1 - 1/4)^2, 48 others at (1/4)^2
    assert scores["mse"]["mean_frame"] == pytest.approx((16 * 0.5625 + 48 * 0.0625) / 256)
    assert scores["best_baseline"] == "mean_frame"
    assert scores["ratio_to_best_baseline"] == pytest.approx(32 / 12)
    # on the target's 16 object pixels: blank and the misplaced square miss every one, the
    # mean frame is 1/4 bright there
    assert scores["object_mse"]["blank"] == pytest.approx(1.0)
    assert scores["object_mse"]["model"] == pytest.approx(1.0)
    assert scores["object_mse"]["mean_frame"] == pytest.approx(0.5625)
    assert not scores["beats_baselines"]
    assert set(scores["mse"]) == {"model", *BASELINES}
    assert scores["versions"] == library_versions()


def test_a_half_intensity_forecast_at_the_right_place_beats_every_baseline():
    frames = square_frames([0, 4, 8, 12])
    context, future = frames[:, :2], frames[:, 2:]
    scores = forecast_scores(context, future, 0.5 * future, mean_frame=np.zeros((1, 16, 16)))
    assert scores["mse"]["model"] == pytest.approx(0.25 * 16 / 256)
    assert scores["object_mse"]["model"] == pytest.approx(0.25)
    assert scores["ratio_to_best_baseline"] == pytest.approx(0.25)
    assert scores["object_ratio_to_best_baseline"] == pytest.approx(0.25)
    assert scores["beats_baselines"]
    perfect = forecast_scores(context, future, future)
    assert perfect["ratio_to_best_baseline"] == 0.0 and perfect["beats_baselines"]


def test_a_sharp_forecast_one_pixel_off_beats_the_blur_of_the_mean_frame():
    # the square forecast one pixel to the right of where it is: it misses 4 of the 16 object
    # pixels and lights 4 background pixels; the mean frame is a quarter-bright smear
    frames = square_frames([0, 4, 8, 12])
    context, future = frames[:, :2], frames[:, 2:]
    shifted = np.roll(future, 1, axis=-1)
    scores = forecast_scores(context, future, shifted)
    assert scores["object_mse"]["model"] == pytest.approx(4 / 16)
    assert scores["object_mse"]["mean_frame"] == pytest.approx(0.5625)
    assert scores["best_object_baseline"] == "mean_frame"
    assert scores["mse"]["model"] == pytest.approx(8 / 256)
    assert scores["beats_baselines"]


def test_neither_a_haze_nor_drawing_everywhere_wins():
    frames = square_frames([0, 4, 8, 12])
    context, future = frames[:, :2], frames[:, 2:]
    # a faint haze over the right forecast leaves its error on the object's pixels as it was
    hazy = np.clip(future + 0.2, 0.0, 1.0)
    assert forecast_scores(context, future, hazy)["object_mse"]["model"] == pytest.approx(0.0)
    haze_alone = forecast_scores(context, future, np.full_like(future, 0.2))
    assert haze_alone["object_mse"]["model"] == pytest.approx(0.64)
    assert not haze_alone["beats_baselines"]
    # a white canvas is exact on the object's pixels and wrong everywhere else
    white = forecast_scores(context, future, np.ones_like(future))
    assert white["object_mse"]["model"] == 0.0
    assert white["mse"]["model"] == pytest.approx(240 / 256)
    assert not white["beats_baselines"]


def test_mean_frame_and_background_baselines():
    rng = np.random.default_rng(0)
    context, future = rng.uniform(size=(3, 4, 1, 5, 5)), rng.uniform(size=(3, 2, 1, 5, 5))
    # by default the mean frame is the mean of every frame given (an oracle)
    oracle = np.concatenate([context, future], axis=1).mean(axis=(0, 1))
    scores = forecast_scores(context, future, future)
    assert scores["mse"]["mean_frame"] == pytest.approx(np.mean((oracle - future) ** 2))
    background = np.full((1, 5, 5), 0.5)
    scores = forecast_scores(context, future, future, background=background)
    assert scores["mse"]["blank"] == pytest.approx(np.mean((0.5 - future) ** 2))
    mask = np.abs(future - 0.5) > 0.05
    assert scores["object_mse"]["blank"] == pytest.approx(np.mean((0.5 - future)[mask] ** 2))
    # a static scene: copying is exact, so any error is infinitely worse
    static = np.ones((1, 3, 1, 2, 2))
    assert math.isnan(forecast_scores(static, static, static)["ratio_to_best_baseline"])
    assert forecast_scores(static, static, 0 * static)["ratio_to_best_baseline"] == math.inf


def test_forecast_scores_validate_their_inputs():
    with pytest.raises(ValueError, match="equal shape"):
        forecast_scores(np.zeros((2, 3, 4)), np.zeros((2, 2, 4)), np.zeros((2, 1, 4)))
    with pytest.raises(ValueError, match="frame shape"):
        forecast_scores(np.zeros((2, 3, 4)), np.zeros((2, 2, 5)), np.zeros((2, 2, 5)))
    with pytest.raises(ValueError, match="mean_frame"):
        forecast_scores(np.zeros((2, 3, 4)), np.zeros((2, 2, 4)), np.zeros((2, 2, 4)),
                        mean_frame=np.zeros(5))
    with pytest.raises(ValueError, match="threshold"):
        forecast_scores(np.zeros((2, 3, 4)), np.zeros((2, 2, 4)), np.zeros((2, 2, 4)),
                        threshold=0)
