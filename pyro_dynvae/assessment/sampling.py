"""Which frames of which held-out sequences a score sees: the sequence is the unit.

Frames of one sequence share everything that is constant within it (the static factors and any
latent that does not move), so they are not independent observations. Scored as if they were,
plug-in mutual information and predictors' training-set importances reward a latent that is
merely constant within each sequence: it names the sequence, and with it every static factor
of the sequences seen. Here every sequence contributes a few frames (one by default), and
every split between the observations a predictor is fitted on and those it is scored on puts
whole sequences on one side.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from pyro_dynvae.metrics.utils import DEFAULT_TEST_FRACTION
from pyro_dynvae.validation import as_generator, check_positive_int


def check_sequences(codes: Any, factors: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate per-frame codes ``(S, T, n)`` and factors ``(S, T, K)`` of the same ``S >= 2``
    sequences of ``T`` frames; return them as float64."""
    arrays = []
    for name, value, last in (("codes", codes, "n"), ("factors", factors, "K")):
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} must be a real array of shape (S, T, {last}), got "
                            f"{type(value).__name__}") from error
        if array.ndim != 3 or min(array.shape) < 1:
            raise ValueError(f"{name} must have shape (S, T, {last}) (sequences, frames, "
                             f"columns), got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite (found NaN or inf)")
        arrays.append(array)
    codes, factors = arrays
    if codes.shape[:2] != factors.shape[:2]:
        raise ValueError(f"codes {codes.shape} and factors {factors.shape} must describe the "
                         "same sequences and frames (equal first two dimensions)")
    if codes.shape[0] < 2:
        raise ValueError(f"codes must hold at least 2 sequences, got {codes.shape[0]}")
    return codes, factors


@dataclasses.dataclass(frozen=True)
class SequenceSample:
    """Frames drawn from held-out sequences, split by sequence into a fitting and a test part.

    Arrays have shape ``(sequences, frames_per_sequence, columns)``.

    :param numpy.ndarray fit_codes: codes of the fitting sequences.
    :param numpy.ndarray fit_factors: their factors.
    :param numpy.ndarray test_codes: codes of the test sequences.
    :param numpy.ndarray test_factors: their factors.
    """

    fit_codes: np.ndarray
    fit_factors: np.ndarray
    test_codes: np.ndarray
    test_factors: np.ndarray

    @property
    def frames_per_sequence(self) -> int:
        return self.fit_codes.shape[1]

    def frames(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """Every sampled frame of the ``"fit"`` or ``"test"`` sequences: codes ``(N, n)``,
        factors ``(N, K)``."""
        codes, factors = self._part(part)
        return codes.reshape(-1, codes.shape[-1]), factors.reshape(-1, factors.shape[-1])

    def one_frame(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """One frame per sequence of ``"fit"``, ``"test"`` or ``"all"`` sequences: independent
        observations, for statistics of a sample itself (mutual information, correlations,
        impurity importances)."""
        if part == "all":
            return (np.concatenate([self.fit_codes[:, 0], self.test_codes[:, 0]]),
                    np.concatenate([self.fit_factors[:, 0], self.test_factors[:, 0]]))
        codes, factors = self._part(part)
        return codes[:, 0], factors[:, 0]

    def sizes(self) -> dict[str, int]:
        """The sample sizes, for the record beside every score."""
        return {"num_fit_sequences": len(self.fit_codes),
                "num_test_sequences": len(self.test_codes),
                "frames_per_sequence": self.frames_per_sequence}

    def _part(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        if part == "fit":
            return self.fit_codes, self.fit_factors
        if part == "test":
            return self.test_codes, self.test_factors
        raise ValueError(f"part must be 'fit' or 'test', got {part!r}")


def sample_sequences(codes: Any, factors: Any, *, frames_per_sequence: int = 1,
                     test_fraction: float = DEFAULT_TEST_FRACTION,
                     random_state: Any = 0) -> SequenceSample:
    """Draw ``frames_per_sequence`` distinct frames of every sequence, uniformly at random, and
    split the sequences at random into a fitting and a test part.

    :param codes: per-frame codes ``(S, T, n)``.
    :param factors: per-frame factors ``(S, T, K)``.
    :param int frames_per_sequence: frames per sequence, at most ``T`` (default 1).
    :param float test_fraction: share of the sequences in the test part, at least one and at
        most ``S - 1`` (default 1/3: disentanglement_lib's 10,000 : 5,000).
    :param random_state: seed or :class:`numpy.random.Generator` of the draw and the split.
    """
    codes, factors = check_sequences(codes, factors)
    num_sequences, num_frames = codes.shape[:2]
    frames_per_sequence = check_positive_int(frames_per_sequence, "frames_per_sequence")
    if frames_per_sequence > num_frames:
        raise ValueError(f"frames_per_sequence must be at most the {num_frames} frames per "
                         f"sequence, got {frames_per_sequence}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rng = as_generator(random_state, "random_state")
    chosen = np.argsort(rng.random((num_sequences, num_frames)), axis=1)[:, :frames_per_sequence]
    rows = np.arange(num_sequences)[:, None]
    codes, factors = codes[rows, chosen], factors[rows, chosen]
    num_test = min(max(1, round(test_fraction * num_sequences)), num_sequences - 1)
    order = rng.permutation(num_sequences)
    fit, test = order[num_test:], order[:num_test]
    return SequenceSample(codes[fit], factors[fit], codes[test], factors[test])
