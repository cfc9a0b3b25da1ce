"""Gaussian over a sequence with a block-tridiagonal precision matrix."""

from __future__ import annotations

import math

import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch import Tensor
from torch.distributions import MultivariateNormal, biject_to, constraints, transform_to
from torch.distributions.utils import lazy_property

from pyro_dynvae.ops import block_tridiag as ops
from pyro_dynvae.ops import dispatch  # algorithm choice (sequential / cyclic), see its docs

_LOG_2PI = math.log(2 * math.pi)


class _Independent(constraints._IndependentConstraint):
    """:func:`torch.distributions.constraints.independent` whose check also works on an empty
    batch (torch's reshapes the result to ``(..., -1)``, which fails without elements)."""

    def check(self, value: Tensor) -> Tensor:
        result = self.base_constraint.check(value)
        if result.dim() < self.reinterpreted_batch_ndims:
            expected = self.base_constraint.event_dim + self.reinterpreted_batch_ndims
            raise ValueError(f"Expected value.dim() >= {expected} but got {value.dim()}")
        return result.flatten(-self.reinterpreted_batch_ndims).all(-1)


def _delegate_to_independent(registry):
    """The factory of :class:`_Independent` in ``registry`` (``biject_to``, ``transform_to``):
    torch's for ``independent``; the registries look types up exactly, not by subclass."""

    def factory(constraint: _Independent):
        base, ndims = constraint.base_constraint, constraint.reinterpreted_batch_ndims
        return registry(constraints.independent(base, ndims))

    return factory


for _registry in (biject_to, transform_to):
    _registry.register(_Independent, _delegate_to_independent(_registry))


def _check_tensors(**tensors: Tensor) -> None:
    """Every argument is a floating-point tensor, all of one dtype (``TypeError`` naming them)."""
    for name, value in tensors.items():
        if not (isinstance(value, Tensor) and value.is_floating_point()):
            raise TypeError(f"{name} must be a floating-point tensor, got {value!r:.80}")
    if len({value.dtype for value in tensors.values()}) > 1:
        listed = ", ".join(f"{name} {value.dtype}" for name, value in tensors.items())
        raise TypeError(f"the arguments must have one dtype, got {listed}")


def _asymmetry_error(diag_blocks: Tensor) -> ValueError | None:
    """The error naming the first time step whose ``D_t`` is not symmetric (to the tolerance of
    ``constraints.symmetric``), or ``None`` when every ``D_t`` is."""
    asymmetric = ~constraints.symmetric.check(diag_blocks)
    if not bool(asymmetric.any()):
        return None
    step = int(asymmetric.nonzero()[:, -1].min())
    return ValueError(f"diag_blocks must be symmetric, but D_t is not at time step {step}")


def _symmetric_part(diag_blocks: Tensor, blocks: str, validate: bool) -> Tensor:
    """The diagonal blocks every computation uses: with ``validate`` as given (no extra
    operations in the graph; the constructor's ``arg_constraints`` check rejects blocks that
    are not symmetric, see :func:`_asymmetry_error`), else ``(D_t + D_t') / 2``."""
    if blocks == "diagonal" or validate:
        return diag_blocks
    return (diag_blocks + diag_blocks.mT) / 2


class BlockTridiagMVN(TorchDistribution):
    r"""Multivariate normal over ``z`` with ``event_shape == (T, n)`` whose precision ``J``
    (``Tn x Tn``) is block tridiagonal: diagonal blocks ``D_t = J[t, t]`` and sub-diagonal
    blocks ``B_t = J[t+1, t]``, so

    .. math::

        \log p(z) = -\tfrac12 d' J d + \tfrac12 \log|J| - \tfrac{Tn}{2}\log 2\pi,\quad
        d' J d = \sum_t d_t' D_t d_t + 2 \sum_t d_{t+1}' B_t d_t,\quad d = z - \mu.

    This is the posterior family of Archer et al. (2016), "Black box variational inference
    for state space models", and the prior of any linear-Gaussian Markov chain
    (:meth:`from_markov_chain`). Every operation costs ``O(T n^3)`` through the block
    Cholesky factor ``J = L L'`` (Golub & Van Loan, *Matrix Computations*, sec. 4.5): the
    log-determinant from its diagonal, reparameterised samples ``z = mu + L^{-T} eps`` by back
    substitution (Rue & Held 2005, alg. 2.4), and marginal covariances by selected inversion
    (Takahashi et al. 1973; Rue & Held 2005, sec. 2.4; Jain et al. 2007), see
    :mod:`pyro_dynvae.ops.block_tridiag`. The factor is computed once, lazily, and cached.

    With ``blocks="diagonal"`` every block is diagonal and only the diagonals are stored
    (``n`` independent scalar tridiagonal chains, a much faster path); the public
    :attr:`diag_blocks` and :attr:`offdiag_blocks` are still full ``(n, n)`` blocks.

    A precision that is not positive definite raises ``ValueError`` naming the first failing
    time step (and batch index) when the factor is computed: at construction with
    ``validate_args``, at first use otherwise. No jitter is ever added. With ``validate_args``
    diagonal blocks that are not symmetric raise ``ValueError``; without, each ``D_t`` is
    replaced by its symmetric part ``(D_t + D_t') / 2`` (the only part a quadratic form sees),
    so the density, the factor and :attr:`diag_blocks` all use that one matrix. The arguments
    must be floating-point tensors of one dtype (``TypeError`` otherwise). Empty batches
    (a batch dim of size 0) work as for any distribution.

    Gradients avoid replaying the factorisation where they can. ``log|J|`` (in
    :meth:`log_prob`, :meth:`entropy` and the KL) comes from the cached factor when one exists
    (:meth:`from_info`, after :meth:`rsample`, :attr:`variance` or :meth:`covariance_blocks`,
    or at construction with ``validate_args``): one factorisation serves everything, and the
    gradient flows back through it. Otherwise it is computed with
    :func:`~pyro_dynvae.ops.dispatch.logdet_with_selected_inverse_grad`, whose backward is the
    selected inverse ``d log|J| / dJ = Sigma`` on the band, one sweep instead of a replay of
    the factorisation in reverse. So a model that only evaluates densities (fitting a GMRF
    prior by maximum likelihood with :meth:`log_prob`) gets this cheaper backward, provided
    validation is off (``validate_args=False`` or ``pyro.enable_validation(False)``, the usual
    setting for speed). If the factor is needed afterwards (:meth:`rsample`, :attr:`variance`)
    it is computed then, a second factorisation. :meth:`from_markov_chain` seeds ``log|J|`` in
    closed form and factorises nothing for densities. The mean of :meth:`from_info` has a
    one-solve backward (:func:`~pyro_dynvae.ops.dispatch.solve_with_adjoint`).

    :param torch.Tensor loc: mean ``mu``, ``(..., T, n)``.
    :param torch.Tensor diag_blocks: ``D_t``, symmetric, ``(..., T, n, n)``; with
        ``blocks="diagonal"`` the diagonals ``(..., T, n)``.
    :param torch.Tensor offdiag_blocks: ``B_t = J[t+1, t]``, ``(..., T-1, n, n)``; with
        ``blocks="diagonal"`` ``(..., T-1, n)``.
    :param bool validate_args: validate parameters and samples (see
        :class:`torch.distributions.Distribution`).
    :param str blocks: ``"full"`` (default) or ``"diagonal"``, keyword only.

    Leading dims of the three tensors broadcast to the batch shape.
    """

    arg_constraints = {
        "loc": _Independent(constraints.real, 2),
        "diag_blocks": _Independent(constraints.symmetric, 1),
        "offdiag_blocks": _Independent(constraints.real, 3),
    }
    support = _Independent(constraints.real, 2)
    has_rsample = True

    def __init__(
        self,
        loc: Tensor,
        diag_blocks: Tensor,
        offdiag_blocks: Tensor,
        validate_args: bool | None = None,
        *,
        blocks: str = "full",
    ) -> None:
        _check_tensors(loc=loc, diag_blocks=diag_blocks, offdiag_blocks=offdiag_blocks)
        num_steps, dim = ops.check_block_shapes(diag_blocks, offdiag_blocks, blocks=blocks)
        if loc.dim() < 2 or loc.shape[-2:] != (num_steps, dim):
            raise ValueError(
                f"loc must have shape (..., T, n) = (..., {num_steps}, {dim}) to match "
                f"diag_blocks {tuple(diag_blocks.shape)}, got {tuple(loc.shape)}"
            )
        self.blocks = blocks
        self._algebra = ops._algebra(blocks)
        block_ndim = self._algebra.block_ndim
        batch_shape = torch.broadcast_shapes(
            loc.shape[:-2],
            diag_blocks.shape[: -block_ndim - 1],
            offdiag_blocks.shape[: -block_ndim - 1],
        )
        self.loc = loc.expand(batch_shape + loc.shape[-2:])
        # The blocks keep their own (broadcastable) batch shape, so that a prior shared by a
        # batch of sequences is factorised once, not once per sequence.
        validate = self._validate_args if validate_args is None else validate_args
        self._diag = _symmetric_part(diag_blocks, blocks, validate)
        self._offdiag = offdiag_blocks
        try:
            super().__init__(batch_shape, torch.Size((num_steps, dim)), validate_args=validate_args)
        except ValueError:  # an asymmetric D_t: name its time step, not only the constraint
            asymmetry = blocks == "full" and _asymmetry_error(self._diag)
            if asymmetry:
                raise asymmetry from None
            raise
        # A Markov chain's precision (log-det seeded by from_markov_chain) is positive definite
        # by construction; any other precision is factorised now when validating.
        if self._validate_args and "_logdet_precision" not in self.__dict__:
            self._factor  # noqa: B018 -- raise now, naming the first failing time step

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def from_info(
        cls,
        info_vec: Tensor,
        diag_blocks: Tensor,
        offdiag_blocks: Tensor,
        validate_args: bool | None = None,
        *,
        blocks: str = "full",
    ) -> BlockTridiagMVN:
        """The Gaussian ``N(J^{-1} h, J^{-1})`` in information form.

        The mean is found by a forward and a backward block substitution with the factor of
        ``J``, which is then cached on the result. The mean's backward is one more solve with
        that factor (:func:`~pyro_dynvae.ops.dispatch.solve_with_adjoint`), not a replay of the
        factorisation.

        :param torch.Tensor info_vec: ``h``, ``(..., T, n)``.
        :param torch.Tensor diag_blocks: as in the constructor.
        :param torch.Tensor offdiag_blocks: as in the constructor.
        :param bool validate_args: as in the constructor.
        :param str blocks: ``"full"`` or ``"diagonal"``, keyword only.
        """
        _check_tensors(info_vec=info_vec, diag_blocks=diag_blocks, offdiag_blocks=offdiag_blocks)
        num_steps, dim = ops.check_block_shapes(diag_blocks, offdiag_blocks, blocks=blocks)
        if info_vec.dim() < 2 or info_vec.shape[-2:] != (num_steps, dim):
            raise ValueError(
                f"info_vec must have shape (..., T, n) = (..., {num_steps}, {dim}) to match "
                f"diag_blocks {tuple(diag_blocks.shape)}, got {tuple(info_vec.shape)}"
            )
        validate = cls._validate_args if validate_args is None else validate_args
        asymmetry = validate and blocks == "full" and _asymmetry_error(diag_blocks)
        if asymmetry:  # before factorising, which reads one triangle only
            raise asymmetry
        diag_blocks = _symmetric_part(diag_blocks, blocks, validate)
        factor = dispatch.factorize(diag_blocks, offdiag_blocks, blocks=blocks)
        loc = dispatch.solve_with_adjoint(
            factor, diag_blocks, offdiag_blocks, info_vec.unsqueeze(-1), blocks=blocks
        ).squeeze(-1)
        new = cls.__new__(cls)
        new.__dict__["_factor"] = factor  # seeds the lazy_property: no second factorisation
        new.__init__(loc, diag_blocks, offdiag_blocks, validate_args=validate_args, blocks=blocks)
        new.__dict__["info_vec"] = info_vec.expand(new.loc.shape)
        return new

    @classmethod
    def from_markov_chain(
        cls,
        init_loc: Tensor,
        init_cov: Tensor,
        trans_matrix: Tensor,
        trans_cov: Tensor,
        validate_args: bool | None = None,
        *,
        blocks: str = "full",
    ) -> BlockTridiagMVN:
        r"""The joint Gaussian of the linear-Gaussian Markov chain

        ``z_0 ~ N(init_loc, init_cov)``,
        ``z_{t+1} = trans_matrix[..., t, :, :] @ z_t + w_t``,
        ``w_t ~ N(0, trans_cov[..., t, :, :])``, ``t = 0 .. T-2``,

        with precision blocks (:func:`~pyro_dynvae.ops.block_tridiag.markov_chain_precision`)
        ``D_0 = P_0^{-1} + A_0' Q_0^{-1} A_0``, ``D_t = Q_{t-1}^{-1} + A_t' Q_t^{-1} A_t``,
        ``D_{T-1} = Q_{T-2}^{-1}``, ``B_t = -Q_t^{-1} A_t`` and mean ``m_{t+1} = A_t m_t``.

        Convention: column vectors, ``z_{t+1} = A_t z_t`` (as in ``z_t = A_t z_{t-1}``), so
        ``trans_matrix[..., t, i, j]`` maps old coordinate ``j`` to new coordinate ``i``.
        Pyro's :class:`~pyro.distributions.GaussianHMM` uses row vectors and right-multiplies,
        ``z_{t+1} = z_t @ transition_matrix``: its ``transition_matrix`` is indexed
        ``(old, new)``, i.e. it is the transpose ``A_t'`` of ours.

        :param torch.Tensor init_loc: ``(..., n)``.
        :param torch.Tensor init_cov: ``(..., n, n)``; variances ``(..., n)`` with
            ``blocks="diagonal"``.
        :param torch.Tensor trans_matrix: ``(..., T-1, n, n)``; diagonals ``(..., T-1, n)``
            with ``blocks="diagonal"``. ``T = trans_matrix.shape[-3] + 1`` (``shape[-2] + 1``).
        :param torch.Tensor trans_cov: ``(..., T-1, n, n)``; variances ``(..., T-1, n)`` with
            ``blocks="diagonal"``.
        :param bool validate_args: as in the constructor.
        :param str blocks: ``"full"`` or ``"diagonal"``, keyword only.
        :raises TypeError: if the arguments are not floating-point tensors of one dtype.
        :raises ValueError: naming the argument, if the shapes do not match, if ``init_cov`` or
            ``trans_cov`` is not positive definite, and with validation if an argument holds
            a non-finite value.
        """
        tensors = {"init_loc": init_loc, "init_cov": init_cov, "trans_matrix": trans_matrix,
                   "trans_cov": trans_cov}
        _check_tensors(**tensors)
        if cls._validate_args if validate_args is None else validate_args:
            finite = torch.stack([torch.isfinite(value).all() for value in tensors.values()])
            if not bool(finite.all()):  # one host synchronisation
                name = list(tensors)[finite.tolist().index(False)]
                raise ValueError(f"{name} must be finite, got non-finite values")
        # log|J| in closed form: log_prob, entropy and KL against this chain never factorise
        # J, which stays exact for explosive dynamics where J is too ill-conditioned to
        # factorise in float32.
        diag_blocks, offdiag_blocks, logdet = ops.markov_chain_precision(
            init_cov, trans_matrix, trans_cov, blocks=blocks
        )
        loc = ops.markov_chain_mean(init_loc, trans_matrix, blocks=blocks)
        new = cls.__new__(cls)
        new.__dict__["_logdet_precision"] = logdet
        new.__init__(loc, diag_blocks, offdiag_blocks, validate_args=validate_args, blocks=blocks)
        return new

    def expand(self, batch_shape, _instance=None) -> BlockTridiagMVN:
        new = self._get_checked_instance(BlockTridiagMVN, _instance)
        batch_shape = torch.Size(batch_shape)
        new.blocks = self.blocks
        new._algebra = self._algebra
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new._diag = self._diag
        new._offdiag = self._offdiag
        # their batch shapes broadcast already
        for name in ("_factor", "_covariance_band", "_logdet_precision"):
            if name in self.__dict__:
                new.__dict__[name] = self.__dict__[name]
        if "info_vec" in self.__dict__:
            new.__dict__["info_vec"] = self.info_vec.expand(new.loc.shape)
        super(BlockTridiagMVN, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # -- parameters and cached factorisations ----------------------------------------------------

    @property
    def diag_blocks(self) -> Tensor:
        """``D_t = J[t, t]`` as full blocks, ``batch_shape + (T, n, n)``."""
        blocks = self._algebra.to_full(self._diag)
        return blocks.expand(self.batch_shape + blocks.shape[-3:])

    @property
    def offdiag_blocks(self) -> Tensor:
        """``B_t = J[t+1, t]`` as full blocks, ``batch_shape + (T-1, n, n)``."""
        blocks = self._algebra.to_full(self._offdiag)
        return blocks.expand(self.batch_shape + blocks.shape[-3:])

    @lazy_property
    def _factor(self) -> dispatch.Factor:
        return dispatch.factorize(self._diag, self._offdiag, blocks=self.blocks)

    @lazy_property
    def _covariance_band(self) -> tuple[Tensor, Tensor]:
        return dispatch.selected_inverse(self._factor, blocks=self.blocks)

    @lazy_property
    def info_vec(self) -> Tensor:
        """``h = J mu``, ``batch_shape + (T, n)``."""
        return ops.matvec(self._diag, self._offdiag, self.loc, blocks=self.blocks)

    @lazy_property
    def _logdet_precision(self) -> Tensor:
        """``log|J|``, batch shape broadcastable to ``batch_shape``: from the cached factor if
        there is one, else with the selected-inverse backward (see the class docstring)."""
        if "_factor" in self.__dict__:
            return dispatch.logdet(self._factor, blocks=self.blocks)
        logdet, failed_step = dispatch.logdet_with_selected_inverse_grad(
            self._diag, self._offdiag, blocks=self.blocks
        )
        if bool((failed_step >= 0).any()):  # one host synchronisation, as in the factorisation
            # Error path only: the checked factorisation names the first failing step and batch
            # index, in the same words as everywhere else.
            dispatch.factorize(self._diag, self._offdiag, blocks=self.blocks)
            steps = failed_step.tolist()
            raise ValueError(f"precision is not positive definite (time steps {steps})")
        return logdet

    # -- moments --------------------------------------------------------------------------------

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        """Marginal variances ``diag Sigma[t, t]``, ``batch_shape + (T, n)``."""
        variance = self._algebra.diagonal(self._covariance_band[0])
        return variance.expand(self.loc.shape)

    def covariance_blocks(self) -> tuple[Tensor, Tensor]:
        """The tridiagonal band of ``Sigma = J^{-1}``, by selected inversion.

        :returns: ``(cov_diag, cov_offdiag)``: ``Sigma[t, t] = Cov(z_t, z_t)``,
            ``batch_shape + (T, n, n)``, and ``Sigma[t+1, t] = Cov(z_{t+1}, z_t)``,
            ``batch_shape + (T-1, n, n)``.
        """
        full = [self._algebra.to_full(x) for x in self._covariance_band]
        return tuple(x.expand(self.batch_shape + x.shape[-3:]) for x in full)

    @property
    def precision_matrix(self) -> Tensor:
        """Dense ``J``, ``batch_shape + (Tn, Tn)`` (flattened in (t, i) order)."""
        dense = ops.dense_from_blocks(self._diag, self._offdiag, blocks=self.blocks)
        return dense.expand(self.batch_shape + dense.shape[-2:])

    @property
    def covariance_matrix(self) -> Tensor:
        """Dense ``Sigma = J^{-1} = L^{-T} L^{-1}``, ``batch_shape + (Tn, Tn)``."""
        if isinstance(self._factor, ops.BlockCholesky):
            chol = ops.dense_from_blocks(*self._factor, blocks=self.blocks, symmetric=False)
        else:  # a cyclic-reduction factor is a Cholesky factor of a permuted J
            chol = torch.linalg.cholesky(self.precision_matrix)
        dense = torch.cholesky_inverse(chol)
        return dense.expand(self.batch_shape + dense.shape[-2:])

    def to_dense(self) -> MultivariateNormal:
        """The same distribution as a dense :class:`~torch.distributions.MultivariateNormal`
        over the flattened ``T*n`` vector (for tests and small problems)."""
        return MultivariateNormal(
            self.loc.flatten(-2), precision_matrix=self.precision_matrix, validate_args=False
        )

    # -- sampling, densities --------------------------------------------------------------------

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        """``z = mu + L^{-T} eps``, ``eps ~ N(0, I)``, by back substitution, with ``J = L L'``
        the block Cholesky factor; when cyclic reduction is chosen (see
        :mod:`pyro_dynvae.ops.dispatch`) it is ``mu + P' L^{-T} P eps`` with ``P J P' = L L'``
        (``P`` the elimination order): the same distribution, another square root, so not the
        same draw for a given ``eps``. All samples are columns of one right-hand side."""
        shape = self._extended_shape(sample_shape)
        noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        num_samples = torch.Size(sample_shape).numel()  # not -1: batches may be empty
        flat_noise = noise.reshape((num_samples,) + self.batch_shape + self.event_shape)
        return self.loc + self._transform_noise(flat_noise).reshape(shape)

    def _transform_noise(self, noise: Tensor) -> Tensor:
        """``L^{-T} eps`` (see :meth:`rsample`) for ``eps`` of shape
        ``(S,) + batch_shape + (T, n)``."""
        columns = noise.movedim(0, -1)
        return dispatch.sample_transform(self._factor, columns, blocks=self.blocks).movedim(-1, 0)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        diff = value - self.loc
        mahalanobis = ops.quadratic_form(self._diag, self._offdiag, diff, blocks=self.blocks)
        num_steps, dim = self.event_shape
        return 0.5 * (self._logdet_precision - mahalanobis - num_steps * dim * _LOG_2PI)

    def entropy(self) -> Tensor:
        """``Tn/2 (1 + log 2 pi) - 1/2 log|J|``."""
        num_steps, dim = self.event_shape
        entropy = 0.5 * (num_steps * dim * (1 + _LOG_2PI) - self._logdet_precision)
        return entropy.expand(self.batch_shape)
