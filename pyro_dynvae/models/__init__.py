"""The dynamics-VAE model family: one Pyro program, a registry of named variants.

``build_model(name, ...)`` returns a :class:`DynamicsVAE` whose ``.model`` and ``.guide`` are
PyroModules called on frames ``(B, T, C, H, W)``; :data:`VARIANTS` maps each name to its
:class:`DynamicsVAEConfig` (see :mod:`pyro_dynvae.models.config` for the table).
"""

from .config import VARIANTS, DynamicsVAEConfig
from .dynamics import LaplaceRandomWalk, LatentDynamics
from .dynvae import DynamicsGuide, DynamicsModel, DynamicsVAE, build_model

__all__ = [
    "VARIANTS",
    "DynamicsGuide",
    "DynamicsModel",
    "DynamicsVAE",
    "DynamicsVAEConfig",
    "LaplaceRandomWalk",
    "LatentDynamics",
    "build_model",
]
