"""pyro-dynvae: disentangled video representations through latent dynamics, in Pyro."""

__version__ = "0.1.0"
