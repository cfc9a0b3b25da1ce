r"""Independent Gaussian chains presented as one distribution over their joint state."""

from __future__ import annotations

import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch import Tensor
from torch.distributions import MultivariateNormal, constraints
from torch.distributions.kl import kl_divergence, register_kl

from pyro_dynvae.distributions.block_tridiag_mvn import BlockTridiagMVN

__all__ = ["ChainProductMVN", "kl_chain_product_mvn", "kl_with_joint"]


class ChainProductMVN(TorchDistribution):
    r"""The product of ``m`` independent block-tridiagonal Gaussians, each over ``(T, k)``,
    as one Gaussian over ``z`` of event shape ``(T, k m)``.

    Coordinate ``j m + i`` of ``z_t`` is coordinate ``j`` of chain ``i`` at time ``t``
    ("component-major"): for a latent-velocity chain (``k = 2``) ``z_t = (p_1..p_m,
    v_1..v_m)``, the layout of :class:`~pyro_dynvae.models.dynamics.LatentDynamics`. The joint
    precision is block tridiagonal with blocks that are, after this permutation, block
    diagonal over the chains,

    .. math::

        J = P' \operatorname{blockdiag}(J^{(1)}, \dots, J^{(m)}) P, \qquad
        \log p(z) = \sum_i \log p^{(i)}(z^{(i)}),

    so every operation is the chains' own, batched over ``i``: ``m`` factorisations of
    ``Tk x Tk`` matrices instead of one of ``Tkm x Tkm``, ``m^2`` times fewer flops and small
    enough for the dense route of :mod:`pyro_dynvae.ops.dispatch`. Samples, densities,
    entropy, moments and the KL divergence between two such products (registered with
    :func:`torch.distributions.kl.register_kl`) are those of the joint Gaussian
    :meth:`to_joint`, to float rounding.

    The chains may compute in a wider dtype than the values they present (``dtype``): float64
    chains for a float32 model cost little (each chain is ``Tk x Tk``) and keep factorisations
    that float32 cannot do, such as the precision of a nearly static latent with a velocity.

    :param BlockTridiagMVN chains: the chains, batch shape ``batch_shape + (m,)``, event
        shape ``(T, k)``.
    :param torch.dtype dtype: the dtype of values in and out (samples, means, densities);
        default: the chains'.
    """

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(
        self,
        chains: BlockTridiagMVN,
        validate_args: bool | None = None,
        *,
        dtype: torch.dtype | None = None,
    ) -> None:
        if not isinstance(chains, BlockTridiagMVN):
            raise TypeError(f"chains must be a BlockTridiagMVN, got {type(chains).__name__}")
        if len(chains.batch_shape) < 1:
            shape = tuple(chains.batch_shape)
            raise ValueError(f"chains must have a batch dim of chains, got batch shape {shape}")
        self.chains = chains
        self.dtype = chains.loc.dtype if dtype is None else dtype
        num_steps, chain_dim = chains.event_shape
        self.num_chains = chains.batch_shape[-1]
        event_shape = torch.Size((num_steps, chain_dim * self.num_chains))
        super().__init__(chains.batch_shape[:-1], event_shape, validate_args=validate_args)

    # -- the permutation between the joint layout and the chains' --------------------------------

    def to_chains(self, value: Tensor) -> Tensor:
        """``(..., T, k m)`` -> ``(..., m, T, k)``, in the chains' dtype."""
        chain_dim = self.chains.event_shape[-1]
        value = value.to(self.chains.loc.dtype)
        return value.unflatten(-1, (chain_dim, self.num_chains)).movedim(-1, -3)

    def from_chains(self, value: Tensor) -> Tensor:
        """``(..., m, T, k)`` -> ``(..., T, k m)``, in :attr:`dtype`."""
        return value.movedim(-3, -1).flatten(-2).to(self.dtype)

    def _joint_blocks(self, blocks: Tensor) -> Tensor:
        """Chain blocks ``(..., m, S, k, k)`` -> joint blocks ``(..., S, k m, k m)``, in
        :attr:`dtype`."""
        blocks = blocks.to(self.dtype)
        eye = torch.eye(self.num_chains, dtype=blocks.dtype, device=blocks.device)
        joint = torch.einsum("...isjl,ih->...sjilh", blocks, eye)
        return joint.flatten(-4, -3).flatten(-2)

    @property
    def diag_blocks(self) -> Tensor:
        """``D_t = J[t, t]`` of the joint precision, ``batch_shape + (T, k m, k m)``."""
        return self._joint_blocks(self.chains.diag_blocks)

    @property
    def offdiag_blocks(self) -> Tensor:
        """``B_t = J[t+1, t]`` of the joint precision, ``batch_shape + (T-1, k m, k m)``."""
        return self._joint_blocks(self.chains.offdiag_blocks)

    def to_joint(self) -> BlockTridiagMVN:
        """The same distribution as one :class:`BlockTridiagMVN` of event shape ``(T, k m)``
        (for tests and for callers that need its dense matrices), in :attr:`dtype`."""
        return BlockTridiagMVN(
            self.mean, self.diag_blocks, self.offdiag_blocks, validate_args=False
        )

    @property
    def precision_matrix(self) -> Tensor:
        """Dense joint ``J``, ``batch_shape + (T k m, T k m)`` in ``(t, j m + i)`` order."""
        return self.to_joint().precision_matrix

    @property
    def covariance_matrix(self) -> Tensor:
        """Dense joint ``Sigma = J^{-1}``, ``batch_shape + (T k m, T k m)``."""
        return self.to_joint().covariance_matrix

    def to_dense(self) -> MultivariateNormal:
        """The same distribution as a dense :class:`~torch.distributions.MultivariateNormal`
        over the flattened ``T k m`` vector (for tests and small problems)."""
        return self.to_joint().to_dense()

    # -- the distribution -----------------------------------------------------------------------

    def expand(self, batch_shape, _instance=None) -> ChainProductMVN:
        new = self._get_checked_instance(ChainProductMVN, _instance)
        batch_shape = torch.Size(batch_shape)
        new.chains = self.chains.expand(batch_shape + (self.num_chains,))
        new.num_chains, new.dtype = self.num_chains, self.dtype
        super(ChainProductMVN, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> Tensor:
        return self.from_chains(self.chains.mean)

    @property
    def mode(self) -> Tensor:
        return self.mean

    @property
    def variance(self) -> Tensor:
        """Marginal variances, ``batch_shape + (T, k m)``."""
        return self.from_chains(self.chains.variance)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        """``z = mu + P' blockdiag(L_i^{-T}) P eps`` with the white noise ``eps`` drawn in the
        joint layout. The permutation ``P`` keeps each chain's coordinates in their own order,
        so ``P' blockdiag(L_i) P`` is lower triangular: it is the Cholesky factor of the joint
        precision, and for a given ``eps`` the draw equals the joint chain's (sequential or
        dense factorisation) to rounding, not just in distribution."""
        shape = self._extended_shape(sample_shape)
        mean = self.mean
        noise = torch.randn(shape, dtype=mean.dtype, device=mean.device)
        num_samples = torch.Size(sample_shape).numel()  # not -1: batches may be empty
        flat_noise = noise.reshape((num_samples,) + self.batch_shape + self.event_shape)
        draws = self.from_chains(self.chains._transform_noise(self.to_chains(flat_noise)))
        return mean + draws.reshape(shape)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self.chains.log_prob(self.to_chains(value)).sum(-1).to(self.dtype)

    def entropy(self) -> Tensor:
        return self.chains.entropy().sum(-1).to(self.dtype)


@register_kl(ChainProductMVN, ChainProductMVN)
def kl_chain_product_mvn(q: ChainProductMVN, p: ChainProductMVN) -> Tensor:
    """``KL(q || p) = sum_i KL(q^(i) || p^(i))`` over the independent chains.

    :raises ValueError: if the two products do not have the same chains' event shape and number.
    """
    if (q.num_chains, q.chains.event_shape) != (p.num_chains, p.chains.event_shape):
        raise ValueError(
            f"KL needs the same chains, got {q.num_chains} x {tuple(q.chains.event_shape)} and "
            f"{p.num_chains} x {tuple(p.chains.event_shape)}"
        )
    return kl_divergence(q.chains, p.chains).sum(-1).to(q.dtype)


@register_kl(BlockTridiagMVN, ChainProductMVN)
@register_kl(ChainProductMVN, BlockTridiagMVN)
def kl_with_joint(
    q: BlockTridiagMVN | ChainProductMVN, p: BlockTridiagMVN | ChainProductMVN
) -> Tensor:
    """``KL(q || p)`` between a product of chains and one joint chain (a structured posterior
    whose full potentials couple the latents, against a prior of separate chains): the KL of
    the joint forms, :func:`~pyro_dynvae.distributions.kl.kl_block_tridiag_mvn`."""
    q, p = (d.to_joint() if isinstance(d, ChainProductMVN) else d for d in (q, p))
    return kl_divergence(q, p)
