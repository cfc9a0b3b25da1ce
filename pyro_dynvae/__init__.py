"""pyro-dynvae: disentangled video representations through latent dynamics, in Pyro."""

from pyro_dynvae.distributions import BlockTridiagMVN

__version__ = "0.1.0"

__all__ = ["BlockTridiagMVN", "__version__"]
