"""Regime-aware choice between the sequential, cyclic-reduction and dense block-tridiagonal paths.

Three algorithms compute the same quantities for a block-tridiagonal SPD precision ``J``:

- ``"sequential"``: the block Cholesky of :mod:`pyro_dynvae.ops.block_tridiag`, ``T`` dependent
  steps, ``7/3 T n^3`` flops per sequence;
- ``"cyclic"``: block cyclic reduction, :mod:`pyro_dynvae.ops.cyclic_reduction`,
  ``floor(log2 T) + 1`` dependent steps, 3.6-4.4 times the flops;
- ``"dense"``: one dense Cholesky of the assembled ``Tn x Tn`` matrix,
  :mod:`pyro_dynvae.ops.dense_factor`, ``(Tn)^3 / 3`` flops in a handful of batched calls (full
  blocks only; with diagonal blocks ``"dense"`` means ``"sequential"``, whose scalar chains are
  one fused operation per step already).

The functions here take ``algorithm="auto" | "sequential" | "cyclic" | "dense"`` (``None``: the
current default, ``"auto"`` unless changed with the :func:`block_tridiag_algorithm` context
manager) and then work on whichever factor they are given, so the solves, sampling and selected
inversion always follow the factorisation.

``"auto"`` (:func:`choose_algorithm`) picks by regime. A Python time loop costs about 20 us per
step on a CPU whatever the work, and on a GPU it is bound by kernel-launch latency; cyclic
reduction replaces ``T`` such steps by ``log2 T`` wider ones but does more arithmetic. Measured
on this project's CPU (one thread, float32, log-determinant, T in {100, 1000}, B in {1, 4, 16,
64}, n in {2, 4, 8, 16, 32}; see ``benchmarks/bench_block_tridiag.py``), cyclic reduction won or
tied (1.0-16x) wherever ``B n^3 <= 16384`` or ``B n^2 <= 1024`` (e.g. B=1 up to n=32, B=16 up
to n=8, B=64 up to n=4) and mostly lost beyond (0.5-1.0x: B=16 at n=16, B=64 at n=8 and n=32;
single noisy exceptions up to 1.6x). Re-measured after the sequential path moved to right
triangular solves (30 Nov 2026), the boundary held: cyclic/sequential time 0.6-0.9 at B=4 n=16
and B=16 n=8 (cyclic wins), 1.1-2.1 at B=4 n=32, B=16 n=16 and B=64 n=8, 16 (sequential wins);
at B=64 n=4 sequential is now slightly ahead (1.1-1.25) while the rule still picks cyclic, a
near tie left as is. Hence on CPU: cyclic iff ``T >= 16`` and
(``B n^3 <= 16384`` or ``B n^2 <= 1024``), ``B`` the number of sequences (the product of the batch
dims). Diagonal blocks (``B n`` scalar chains): the sequential loop is one fused elementwise
operation per step, so cyclic reduction only won at T=1000 with 16 chains (8.5x) and lost at
T=100 (0.6x with 16 chains, 0.2x with 1024) and at T=1000 with 1024 or more chains (0.3-0.5x):
cyclic iff ``T >= 512`` and ``B n <= 64``. On CUDA: cyclic iff ``T >= 16``, from the
launch-latency argument above; measured on an NVIDIA H200 (30 Nov 2026, float32, full blocks,
``benchmarks/gpu_check.sh``), the sequential loop took 0.1-0.16 ms a step whatever B and n, and
cyclic reduction was faster at every measured cell, T in {100, 1000, 10000}, B in {1, 64, 1024},
n in {8, 32}: 3.8-5.4x at T=100, 11-35x at T=1000, 17-258x at T=10000, except 1.3x at B=1024,
n=32 (T=100 and 1000), where one level's work fills the GPU. Below T=100 it is not measured.
The guard ``T >= 16`` is a judgement, not a measurement (below it both paths are a few dozen
operations). Before either, full blocks with ``T n <= DENSE_MAX_SIZE = 40`` take the dense route:
measured (2 Dec 2026, one thread, float64 blocks of ``from_info`` + ``rsample`` + ``log_prob`` +
backward, against ``"sequential"``) it was 1.6-2.0x faster at ``T n`` of 20-40 (T=10 with n=2
and B=128, 256; n=4 with B=16; T=20, n=2 with B=128), 1.3-1.5x at 80-100 with B=16 and 0.5-0.9x
beyond (``T n = 80`` with B=64, 160 with B=16). The per-latent chains of the dynamics VAE
(T=10, n=2) are the case it is for. All timings were taken on a 2-core machine shared with other
jobs: treat them as rough, and override the choice where it matters.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math

import torch
from torch import Tensor

from pyro_dynvae._settings import setting

from . import block_tridiag as sequential
from .cyclic_reduction import (
    CyclicReductionFactor,
    cyclic_reduction_factor,
    cyclic_reduction_logdet,
    cyclic_reduction_selected_inverse,
    cyclic_reduction_solve,
    cyclic_reduction_transform_noise,
)
from .dense_factor import (
    DenseFactor,
    dense_factor,
    dense_logdet,
    dense_selected_inverse,
    dense_solve,
    dense_transform_noise,
)
from .logdet_autograd import block_tridiag_logdet
from .solve_autograd import block_tridiag_solve

__all__ = [
    "ALGORITHMS",
    "block_tridiag_algorithm",
    "choose_algorithm",
    "factorize",
    "logdet",
    "logdet_with_selected_inverse_grad",
    "sample_transform",
    "selected_inverse",
    "solve",
    "solve_with_adjoint",
]

ALGORITHMS = ("auto", "sequential", "cyclic", "dense")
MIN_CYCLIC_STEPS = 16
CPU_MAX_WORK = 16384  # B n^3
CPU_MAX_SIZE = 1024  # B n^2
CPU_MIN_DIAGONAL_STEPS = 512
CPU_MAX_DIAGONAL_CHAINS = 64  # B n
DENSE_MAX_SIZE = 40  # T n

_DEFAULT = contextvars.ContextVar("pyro_dynvae_block_tridiag_algorithm", default="auto")

Factor = sequential.BlockCholesky | CyclicReductionFactor | DenseFactor


def _check_algorithm(algorithm: str) -> str:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return algorithm


def block_tridiag_algorithm(algorithm: str) -> contextlib.AbstractContextManager[None]:
    """Set the default algorithm inside a ``with`` block (thread- and task-local).

    :param str algorithm: ``"auto"``, ``"sequential"``, ``"cyclic"`` or ``"dense"``.
    """
    return setting(_DEFAULT, algorithm, ALGORITHMS, "algorithm")


def choose_algorithm(
    diag_blocks: Tensor,
    offdiag_blocks: Tensor | None = None,
    *,
    blocks: str = "full",
    algorithm: str | None = None,
) -> str:
    """Resolve ``algorithm`` (``None``: the context default) to ``"sequential"``, ``"cyclic"``
    or ``"dense"``.

    :param torch.Tensor diag_blocks: ``(..., T, n, n)`` (``(..., T, n)`` with diagonal blocks).
    :param offdiag_blocks: optional; its batch dims broadcast into ``B``.
    :param str blocks: ``"full"`` or ``"diagonal"`` (diagonal blocks count as ``n = 1``).
    :param algorithm: ``"auto"``, ``"sequential"``, ``"cyclic"``, ``"dense"`` or ``None``.
    :return: the concrete algorithm; the rule is in the module docstring.
    """
    algorithm = _check_algorithm(_DEFAULT.get() if algorithm is None else algorithm)
    if algorithm == "dense" and blocks == "diagonal":
        return "sequential"  # scalar chains: one fused operation per step already
    if algorithm != "auto":
        return algorithm
    event_dims = 3 if blocks == "full" else 2
    num_steps = diag_blocks.shape[-event_dims]
    if blocks == "full" and num_steps * diag_blocks.shape[-1] <= DENSE_MAX_SIZE:
        return "dense"
    if num_steps < MIN_CYCLIC_STEPS:
        return "sequential"
    if diag_blocks.device.type != "cpu":
        return "cyclic"
    batch = diag_blocks.shape[:-event_dims]
    if offdiag_blocks is not None:
        batch = torch.broadcast_shapes(batch, offdiag_blocks.shape[:-event_dims])
    num_sequences = math.prod(batch)
    if blocks == "diagonal":
        num_chains = num_sequences * diag_blocks.shape[-1]
        small = num_steps >= CPU_MIN_DIAGONAL_STEPS and num_chains <= CPU_MAX_DIAGONAL_CHAINS
        return "cyclic" if small else "sequential"
    n = diag_blocks.shape[-1]
    small = num_sequences * n**3 <= CPU_MAX_WORK or num_sequences * n**2 <= CPU_MAX_SIZE
    return "cyclic" if small else "sequential"


def factorize(
    diag_blocks: Tensor,
    offdiag_blocks: Tensor,
    *,
    blocks: str = "full",
    algorithm: str | None = None,
    name: str = "precision",
) -> Factor:
    """Factorise ``J`` with the chosen algorithm; raise if it is not positive definite.

    :return: a :class:`~pyro_dynvae.ops.block_tridiag.BlockCholesky`, a
        :class:`~pyro_dynvae.ops.cyclic_reduction.CyclicReductionFactor` or a
        :class:`~pyro_dynvae.ops.dense_factor.DenseFactor`.
    :raises ValueError: naming the first failing time step (for ``"cyclic"`` and ``"dense"``
        the sequential factorisation is rerun on this error path so that the message names the
        same step).
    """
    chosen = choose_algorithm(diag_blocks, offdiag_blocks, blocks=blocks, algorithm=algorithm)
    if chosen == "sequential":
        return sequential.block_cholesky(diag_blocks, offdiag_blocks, blocks=blocks, name=name)
    if chosen == "dense":
        factor = dense_factor(diag_blocks, offdiag_blocks)
    else:
        factor = cyclic_reduction_factor(diag_blocks, offdiag_blocks, blocks=blocks)
    if bool((factor.failed_step >= 0).any()):  # the one host synchronisation
        sequential.block_cholesky(diag_blocks, offdiag_blocks, blocks=blocks, name=name)
        raise ValueError(f"{name} is not positive definite (time step {factor.failed_step})")
    return factor


def logdet(factor: Factor, *, blocks: str = "full") -> Tensor:
    """``log|J|``, ``(...,)``, from either factor (autograd through the factorisation)."""
    if isinstance(factor, CyclicReductionFactor):
        return cyclic_reduction_logdet(factor)
    if isinstance(factor, DenseFactor):
        return dense_logdet(factor)
    return sequential.logdet(factor, blocks=blocks)


def _columns(function, factor: CyclicReductionFactor, rhs: Tensor) -> Tensor:
    """Apply a ``(..., T, n)`` cyclic-reduction function to ``(..., T, n, k)`` columns."""
    if rhs.dim() < 3:
        raise ValueError(f"rhs must have shape (..., T, n, k), got {tuple(rhs.shape)}")
    batch = torch.broadcast_shapes(rhs.shape[:-3], factor.failed_step.shape)
    return function(factor, rhs.expand(batch + rhs.shape[-3:]).movedim(-1, 0)).movedim(0, -1)


def solve(factor: Factor, rhs: Tensor, *, blocks: str = "full") -> Tensor:
    """``J^{-1} rhs`` for ``rhs`` of shape ``(..., T, n, k)``."""
    if isinstance(factor, CyclicReductionFactor):
        return _columns(cyclic_reduction_solve, factor, rhs)
    if isinstance(factor, DenseFactor):
        return dense_solve(factor, rhs)
    return sequential.solve(factor, rhs, blocks=blocks)


def sample_transform(factor: Factor, noise: Tensor, *, blocks: str = "full") -> Tensor:
    """Map white noise ``(..., T, n, k)`` to ``N(0, J^{-1})`` draws.

    Sequential and dense: ``L^{-T} noise``; cyclic: ``P' L_P^{-T} P noise`` with
    ``P J P' = L_P L_P'``. All have covariance ``J^{-1}``; for a given noise the cyclic draws
    differ from the other two.
    """
    if isinstance(factor, CyclicReductionFactor):
        return _columns(cyclic_reduction_transform_noise, factor, noise)
    if isinstance(factor, DenseFactor):
        return dense_transform_noise(factor, noise)
    return sequential.solve_upper(factor, noise, blocks=blocks)


def selected_inverse(factor: Factor, *, blocks: str = "full") -> tuple[Tensor, Tensor]:
    """The tridiagonal band ``(Sigma[t, t], Sigma[t+1, t])`` of ``J^{-1}``."""
    if isinstance(factor, CyclicReductionFactor):
        return cyclic_reduction_selected_inverse(factor)
    if isinstance(factor, DenseFactor):
        return dense_selected_inverse(factor)
    return sequential.selected_inverse(factor, blocks=blocks)


def logdet_with_selected_inverse_grad(
    diag_blocks: Tensor,
    offdiag_blocks: Tensor,
    *,
    blocks: str = "full",
    algorithm: str | None = None,
) -> tuple[Tensor, Tensor]:
    """``log|J|`` whose backward is the selected inverse, with the chosen algorithm.

    :return: ``(logdet, failed_step)``; see
        :func:`~pyro_dynvae.ops.logdet_autograd.block_tridiag_logdet`.
    """
    chosen = choose_algorithm(diag_blocks, offdiag_blocks, blocks=blocks, algorithm=algorithm)
    return block_tridiag_logdet(diag_blocks, offdiag_blocks, blocks=blocks, algorithm=chosen)


def _detached(factor):
    """A copy of a factor (tensors in named tuples, tuples and dataclasses) with every tensor
    detached, so that holding it does not keep the factorisation's autograd graph alive."""
    if isinstance(factor, Tensor):
        return factor.detach()
    if dataclasses.is_dataclass(factor):
        fields = [field.name for field in dataclasses.fields(factor) if field.init]
        changes = {name: _detached(getattr(factor, name)) for name in fields}
        return dataclasses.replace(factor, **changes)
    if isinstance(factor, tuple):
        parts = [_detached(part) for part in factor]
        return type(factor)(*parts) if hasattr(factor, "_fields") else tuple(parts)
    return factor


def solve_with_adjoint(
    factor: Factor,
    diag_blocks: Tensor,
    offdiag_blocks: Tensor,
    rhs: Tensor,
    *,
    blocks: str = "full",
) -> Tensor:
    """``J^{-1} rhs`` whose backward is one more solve with ``factor``.

    Gradients reach ``diag_blocks``, ``offdiag_blocks`` and ``rhs`` by the closed form of
    :mod:`~pyro_dynvae.ops.solve_autograd`, never through ``factor`` (used detached, so it may
    come from :func:`factorize` with or without autograd).

    :param factor: from :func:`factorize` of the same ``diag_blocks`` and ``offdiag_blocks``
        (either algorithm).
    :param torch.Tensor diag_blocks: ``(..., T, n, n)`` (``(..., T, n)`` with
        ``blocks="diagonal"``).
    :param torch.Tensor offdiag_blocks: ``(..., T-1, n, n)`` (``(..., T-1, n)``).
    :param torch.Tensor rhs: ``(..., T, n, k)``, as for :func:`solve`.
    :param str blocks: ``"full"`` or ``"diagonal"``.
    :return: ``(..., T, n, k)``.
    """
    inverse = functools.partial(solve, _detached(factor), blocks=blocks)
    return block_tridiag_solve(inverse, diag_blocks, offdiag_blocks, rhs, blocks=blocks)
