"""
The budget of the variant study (:mod:`~pyro_dynvae.assessment.study`): everything that sets
the cost of one cell, the same for every variant (:class:`StudyBudget`), and its scaling up to
disentanglement_lib's sample sizes.
"""

from __future__ import annotations

import dataclasses

#: disentanglement_lib's 10,000 + 5,000 points as sequences of one frame: the ceiling of the
#: scaled scoring set
LIBRARY_SCORE_SEQUENCES = 15000

#: sample sizes of disentanglement_lib, the ceiling of the scaled intervention budgets
LIBRARY_INTERVENTION_SIZES = {"batch_size": 64, "num_train": 10000, "num_eval": 5000,
                              "num_variance_estimate": 10000}


@dataclasses.dataclass(frozen=True)
class StudyBudget:
    """
    Everything that sets the cost of one cell, identical for every variant.

    :param int max_steps: optimiser steps per training run.
    :param int num_train_sequences: training sequences.
    :param int num_test_sequences: held-out sequences for the held-out ELBO, reconstruction,
        forecast and dynamics diagnostics.
    :param int num_score_sequences: held-out sequences the codes-vs-factors scores draw one
        frame each from (the first ``num_test_sequences`` of them are the ones above);
        15,000 gives disentanglement_lib's 10,000 fitting and 5,000 test points.
    :param int num_frames: frames per sequence ``T``.
    :param int batch_size: sequences per optimiser step.
    :param int latent_dim: latent dimension ``n``.
    :param float learning_rate: Adam learning rate.
    :param int forecast_horizon: frames forecast from the first ``T - k``.
    :param int intervention_batch_size: observations per BetaVAE / FactorVAE point.
    :param int intervention_num_train: BetaVAE / FactorVAE training points.
    :param int intervention_num_eval: BetaVAE / FactorVAE evaluation points.
    :param int variance_estimate: observations for FactorVAE's global code variances.
    :param str dci_predictor: ``"random_forest"`` (fast, non-standard) or
        ``"gradient_boosting"`` (disentanglement_lib's).
    :param int data_seed: seed of the training and held-out data (shared by all cells).
    :param int judge_steps: training steps of each dataset's judge (trained once per study,
        not scaled: the protocol refuses a judge below its accuracy,
        :data:`~pyro_dynvae.assessment.protocol.MIN_ACCURACY`).
    :param int protocol_pairs: pairs of held-out sequences of the static/dynamic protocol
        (at most half the scored sequences).
    """

    max_steps: int = 2000
    num_train_sequences: int = 2048
    num_test_sequences: int = 96
    num_score_sequences: int = 1000
    num_frames: int = 10
    batch_size: int = 16
    latent_dim: int = 8
    learning_rate: float = 2e-3
    forecast_horizon: int = 3
    intervention_batch_size: int = 16
    intervention_num_train: int = 200
    intervention_num_eval: int = 100
    variance_estimate: int = 1000
    dci_predictor: str = "random_forest"
    data_seed: int = 0
    judge_steps: int = 3000
    protocol_pairs: int = 256

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "int" and field.name != "data_seed" and value < 1:
                raise ValueError(f"{field.name} must be a positive integer, got {value}")
        if self.dci_predictor not in ("random_forest", "gradient_boosting"):
            raise ValueError("dci_predictor must be 'random_forest' or 'gradient_boosting', "
                             f"got {self.dci_predictor!r}")
        if self.num_test_sequences < 3:
            raise ValueError("num_test_sequences must be at least 3 (metric train/test split), "
                             f"got {self.num_test_sequences}")
        if self.num_score_sequences < 3:
            raise ValueError("num_score_sequences must be at least 3 (fit/test split), "
                             f"got {self.num_score_sequences}")

    @classmethod
    def scaled(cls, budget: float, dci_predictor: str | None = None) -> StudyBudget:
        """
        The default budget with steps and sequences multiplied by ``budget`` and the scoring
        and intervention sample sizes too, up to disentanglement_lib's (and never below small
        floors, e.g. 12 held-out sequences, so that each factor shows two classes or more in
        the metric's fitting frames, which the explicitness classifier needs); DCI uses the
        standard gradient boosting from ``budget >= 4`` unless ``dci_predictor`` says otherwise.
        """
        if not budget > 0:
            raise ValueError(f"budget must be positive, got {budget}")
        base = cls()

        def scale(value: int, floor: int = 1, ceiling: int | None = None) -> int:
            scaled = max(floor, round(value * budget))
            return scaled if ceiling is None else min(scaled, max(value, ceiling))

        num_train_sequences = scale(base.num_train_sequences, floor=2)
        return cls(
            max_steps=scale(base.max_steps),
            num_train_sequences=num_train_sequences,
            num_test_sequences=scale(base.num_test_sequences, floor=12),
            num_score_sequences=scale(base.num_score_sequences, 60,
                                      LIBRARY_SCORE_SEQUENCES),
            batch_size=min(base.batch_size, num_train_sequences),
            intervention_batch_size=scale(base.intervention_batch_size, 4,
                                          LIBRARY_INTERVENTION_SIZES["batch_size"]),
            intervention_num_train=scale(base.intervention_num_train, 10,
                                         LIBRARY_INTERVENTION_SIZES["num_train"]),
            intervention_num_eval=scale(base.intervention_num_eval, 5,
                                        LIBRARY_INTERVENTION_SIZES["num_eval"]),
            variance_estimate=scale(base.variance_estimate, 20,
                                    LIBRARY_INTERVENTION_SIZES["num_variance_estimate"]),
            dci_predictor=dci_predictor
            or ("gradient_boosting" if budget >= 4 else "random_forest"),
        )
