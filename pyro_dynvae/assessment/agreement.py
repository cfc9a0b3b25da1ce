r"""Does a model's static/dynamic split agree with which latents the ground truth says carry
static factors?

Latent ``i``'s true group is that of the factor it correlates with most,
:math:`j^*(i) = \arg\max_j R_{ij}`, with :math:`R` the typed correlations
(:func:`~pyro_dynvae.metrics.mcc.typed_correlation_matrix`, Spearman versions: rank
correlation for continuous factors, the correlation ratio for classes, the circular-linear
correlation for angles) of the per-frame codes with the dataset's metric factors reduced to
what a frame shows. A latent is *active* when :math:`\max_j R_{ij} \ge` ``min_association``
(0.2: unrelated variables correlate at about :math:`1 / \sqrt S` over ``S`` sequences); the
others carry no factor and are left out. Over the active latents,

.. math::

    \text{agreement} = \frac{1}{|A|} \sum_{i \in A} [\text{model calls } i \text{ static}]
        = [j^*(i) \text{ is static}],
    \qquad \text{chance} = p_m p_t + (1 - p_m)(1 - p_t),

where :math:`p_m` and :math:`p_t` are the shares of active latents the model and the truth call
static: chance is the expected agreement of a split that labels as many latents static,
at random (hypergeometric, independent of the truth). Cohen's
:math:`\kappa = (\text{agreement} - \text{chance}) / (1 - \text{chance})` puts it on the scale
where chance is 0 and a perfect split 1 (Cohen 1960).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyro_dynvae.data import FactorDataset
from pyro_dynvae.metrics.mcc import typed_correlation_matrix

from .split import LatentSplit

#: a latent whose largest correlation with any factor is below this carries no factor
MIN_ASSOCIATION = 0.2


def split_agreement(split: LatentSplit, codes: Any, factors: Any, dataset: FactorDataset, *,
                    min_association: float = MIN_ASSOCIATION) -> dict[str, Any]:
    """Agreement of ``split`` with the static / dynamic groups of the factors each latent
    carries (see the module docstring).

    :param LatentSplit split: the model's split of its ``n`` latents.
    :param codes: per-frame codes ``(S, T, n)`` of held-out sequences.
    :param factors: their factor rows ``(S, T, K)`` in ``dataset``'s columns.
    :param FactorDataset dataset: which factors are scored (``metric_factors``) and static.
    :param float min_association: least largest correlation of an active latent.
    :returns: ``{"agreement", "chance", "kappa"}`` (None without active latents; kappa None
        when chance is 1), ``"num_active"``, ``"true_static_latents"``,
        ``"true_dynamic_latents"``, ``"carried_factor"`` (per latent, None if inactive) and
        ``"association"`` (per latent, the largest correlation).
    """
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors, dtype=np.float64)
    if codes.ndim != 3 or factors.ndim != 3 or codes.shape[:2] != factors.shape[:2]:
        raise ValueError(f"codes (S, T, n) and factors (S, T, K) must share (S, T), got "
                         f"{codes.shape} and {factors.shape}")
    if codes.shape[-1] != split.num_latents:
        raise ValueError(f"codes have {codes.shape[-1]} latents, the split {split.num_latents}")
    if not 0 < min_association < 1:
        raise ValueError(f"min_association must be in (0, 1), got {min_association}")
    space = dataset.factor_subset()
    columns = [dataset.factor_index(name) for name in space.factor_names]
    shown = space.identifiable_factors(factors[..., columns].reshape(-1, len(columns)))
    correlation = typed_correlation_matrix(codes.reshape(-1, codes.shape[-1]), shown.numpy(),
                                           space.factor_types)
    strongest = correlation.max(axis=1)
    carried = correlation.argmax(axis=1)
    active = np.flatnonzero(strongest >= min_association)
    true_static = [int(i) for i in active if space.factors[carried[i]].static]
    result: dict[str, Any] = {
        "num_active": int(active.size),
        "true_static_latents": true_static,
        "true_dynamic_latents": [int(i) for i in active if int(i) not in true_static],
        "carried_factor": [space.factor_names[carried[i]] if i in active else None
                           for i in range(codes.shape[-1])],
        "association": [float(v) for v in strongest],
        "min_association": min_association,
        "agreement": None, "chance": None, "kappa": None,
    }
    if not active.size:
        return result
    model_static = np.isin(active, split.static)
    truth_static = np.isin(active, true_static)
    agreement = float((model_static == truth_static).mean())
    p_model, p_truth = float(model_static.mean()), float(truth_static.mean())
    chance = p_model * p_truth + (1 - p_model) * (1 - p_truth)
    result.update(agreement=agreement, chance=chance,
                  kappa=None if chance >= 1 else (agreement - chance) / (1 - chance))
    return result
