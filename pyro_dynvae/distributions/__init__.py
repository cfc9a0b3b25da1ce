"""Pyro distributions of pyro-dynvae."""

from pyro_dynvae.distributions.block_tridiag_mvn import BlockTridiagMVN
from pyro_dynvae.distributions.chain_product import ChainProductMVN, kl_chain_product_mvn
from pyro_dynvae.distributions.kl import kl_block_tridiag_mvn
from pyro_dynvae.distributions.shared_scale_normal import SharedScaleNormal

__all__ = [
    "BlockTridiagMVN",
    "ChainProductMVN",
    "SharedScaleNormal",
    "kl_block_tridiag_mvn",
    "kl_chain_product_mvn",
]
