"""The dynamics-VAE model family: one Pyro program, a registry of named variants, and the DSVAE
baseline.

``build_model(name, ...)`` returns a :class:`DynamicsVAE` whose ``.model`` and ``.guide`` are
PyroModules called on frames ``(B, T, C, H, W)``; :data:`VARIANTS` maps each name to its
:class:`DynamicsVAEConfig` (see :mod:`pyro_dynvae.models.config` for the table). For
``"dsvae"`` (:data:`DSVAE_VARIANTS`) it returns a :class:`DSVAE` (Li and Mandt 2018, see
:mod:`pyro_dynvae.models.dsvae`) with the same interface. :data:`MODEL_NAMES` lists every name
``build_model`` accepts.
"""

from .config import VARIANTS, DynamicsVAEConfig
from .dsvae import DSVAE, DSVAE_VARIANTS, DSVAEConfig, DSVAEGuide, DSVAEModel, build_dsvae
from .dynamics import LaplaceRandomWalk, LatentDynamics
from .dynvae import DynamicsGuide, DynamicsModel, DynamicsVAE, build_model

#: every name :func:`build_model` accepts: the dynamics-VAE variants, then the baselines with a
#: program of their own
MODEL_NAMES: tuple[str, ...] = (*VARIANTS, *DSVAE_VARIANTS)

__all__ = [
    "DSVAE",
    "DSVAE_VARIANTS",
    "MODEL_NAMES",
    "VARIANTS",
    "DSVAEConfig",
    "DSVAEGuide",
    "DSVAEModel",
    "DynamicsGuide",
    "DynamicsModel",
    "DynamicsVAE",
    "DynamicsVAEConfig",
    "LaplaceRandomWalk",
    "LatentDynamics",
    "build_dsvae",
    "build_model",
]
