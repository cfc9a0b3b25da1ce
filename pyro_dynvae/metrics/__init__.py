"""Disentanglement metrics (following google-research/disentanglement_lib) and dynamics
diagnostics. Every metric takes numpy arrays (or a ground-truth sampler) and returns a dict
of floats with the library versions under ``"versions"``."""

from .dci import dci, dci_completeness, dci_disentanglement
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
    "GroundTruthSampler",
    "beta_vae_score",
    "dci",
    "dci_completeness",
    "dci_disentanglement",
    "factor_vae_score",
    "library_versions",
    "mcc",
    "mig",
    "modularity_explicitness",
    "sample_codes_and_factors",
    "sap",
]
