"""Disentanglement metrics (following google-research/disentanglement_lib) and dynamics
diagnostics. Every metric takes numpy arrays (or a ground-truth sampler) and returns a dict
of floats with the library versions under ``"versions"``."""

from .dci import dci, dci_completeness, dci_disentanglement
from .dynamics import (
    bimodality_coefficient,
    eigenvalue_bimodality,
    eigenvalue_histograms,
    eigenvalue_statistics,
    object_background_overlap,
)
from .forecast import BASELINES, forecast_scores
from .intervention import (
    GroundTruthSampler,
    beta_vae_score,
    factor_vae_score,
    sample_codes_and_factors,
)
from .mcc import mcc
from .mig import mig
from .modularity import modularity_explicitness
from .sap import sap
from .utils import library_versions

__all__ = [
    "BASELINES",
    "GroundTruthSampler",
    "beta_vae_score",
    "bimodality_coefficient",
    "dci",
    "dci_completeness",
    "dci_disentanglement",
    "eigenvalue_bimodality",
    "eigenvalue_histograms",
    "eigenvalue_statistics",
    "factor_vae_score",
    "forecast_scores",
    "library_versions",
    "mcc",
    "mig",
    "modularity_explicitness",
    "object_background_overlap",
    "sample_codes_and_factors",
    "sap",
]
