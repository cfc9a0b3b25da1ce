"""Pyro distributions of pyro-dynvae."""

from pyro_dynvae.distributions.block_tridiag_mvn import BlockTridiagMVN
from pyro_dynvae.distributions.kl import kl_block_tridiag_mvn

__all__ = ["BlockTridiagMVN", "kl_block_tridiag_mvn"]
