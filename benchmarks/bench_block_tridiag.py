"""Time BlockTridiagMVN against dense, banded-LAPACK and Pyro GaussianHMM references.

One run prints one table. Each cell is the median wall time (ms) of repeated runs of

- ``block``: ``BlockTridiagMVN(loc, D, B)`` with full ``n x n`` blocks: factorise, ``rsample``,
  ``log_prob`` of the sample, ``entropy``, and ``backward`` of ``log_prob + entropy`` to
  ``loc``, ``D`` and ``B``;
- ``diag``: the same on diagonal blocks with ``blocks="diagonal"``;
- ``dense``: the same with ``torch.distributions.MultivariateNormal(precision_matrix=J)`` on the
  dense ``Tn x Tn`` precision (only where ``B (Tn)^3`` stays small enough to finish);
- ``banded``: ``scipy.linalg.cholesky_banded`` on the ``2n-1`` lower band, log-determinant only,
  looped over the batch, no gradients (LAPACK ``pbtrf``: the single-sequence CPU floor);
- ``hmm``: Pyro's ``GaussianHMM.log_prob`` + ``backward`` for the same chain observed through
  ``x_t = z_t + v_t`` (parallel-scan marginal likelihood).

Validation is off for every distribution and gradients are cleared before each run (as after
``zero_grad(set_to_none=True)``). Ratios are ``time / block time`` (``diag`` is
``block / diag``: its speed-up), so a ratio above 1 means the reference is slower than the
block path. float32, CPU, one intra-op thread by default (``--threads``).

Usage::

    python3 -m benchmarks.bench_block_tridiag            # full grid, from the repo root
    python3 -m benchmarks.bench_block_tridiag --quick    # small grid
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pyro.distributions as dist
import scipy.linalg
import torch

from pyro_dynvae.distributions import BlockTridiagMVN
from pyro_dynvae.ops import block_tridiag as ops

DENSE_FLOP_LIMIT = 64 * 1600**3  # includes the target cell B=64, T=100, n=16


def median_ms(fn, repeats: int, budget_s: float) -> float:
    """Median wall time in ms of up to ``repeats`` runs after one warm-up run; stops once
    ``budget_s`` seconds have been spent. A warm-up run longer than the budget is itself the
    one sample (so the dense reference at large sizes runs once)."""
    begin = time.perf_counter()
    fn()
    first = time.perf_counter() - begin
    if first > budget_s:
        return 1e3 * first
    times = []
    start = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - start < budget_s):
        begin = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begin)
    return 1e3 * statistics.median(times)


def make_chain(batch, num_steps, dim, generator):
    """A stable random chain (A_t, Q_t, P_0) and its precision blocks, float32."""
    options = {"generator": generator}
    trans = torch.randn(batch, num_steps - 1, dim, dim, **options) / (2 * dim**0.5)
    root = torch.randn(batch, num_steps - 1, dim, dim, **options) / dim**0.5
    noise = root @ root.mT + 0.5 * torch.eye(dim)
    init_cov = torch.eye(dim).expand(batch, dim, dim)
    diag, offdiag = ops.markov_chain_blocks(init_cov, trans, noise)
    return trans, noise, diag, offdiag


def leaves(*tensors):
    return [x.detach().clone().requires_grad_() for x in tensors]


def fresh_grads(fn, tensors):
    """``fn`` with the gradients of ``tensors`` cleared first, as after
    ``optimizer.zero_grad(set_to_none=True)``, so runs do not time gradient accumulation."""

    def run():
        for x in tensors:
            x.grad = None
        fn(*tensors)

    return run


def run_ours(loc, diag, offdiag, blocks="full"):
    d = BlockTridiagMVN(loc, diag, offdiag, validate_args=False, blocks=blocks)
    z = d.rsample()
    (d.log_prob(z) + d.entropy()).sum().backward()


def run_ours_diagonal(loc, diag, offdiag):
    run_ours(loc, diag, offdiag, blocks="diagonal")


def run_dense(loc, precision):
    d = torch.distributions.MultivariateNormal(loc, precision_matrix=precision, validate_args=False)
    z = d.rsample()
    (d.log_prob(z) + d.entropy()).sum().backward()


def band_of(diag, offdiag):
    """Lower band storage ``ab[..., k, j] = J[j + k, j]`` (``k < 2n``) for scipy, built from
    the blocks: column block ``t`` of the band is the stack ``[D_t; B_t]`` (2n x n)."""
    batch, num_steps, dim = diag.shape[:3]
    below = torch.cat([offdiag, offdiag.new_zeros(batch, 1, dim, dim)], 1)
    stacked = torch.cat([diag, below], -2).numpy()  # (batch, T, 2n, n)
    band = np.zeros((batch, 2 * dim, num_steps, dim), dtype=np.float32)
    for k in range(2 * dim):
        for col in range(min(dim, 2 * dim - k)):
            band[:, k, :, col] = stacked[:, :, col + k, col]
    band = band.reshape(batch, 2 * dim, num_steps * dim)
    return [np.ascontiguousarray(b) for b in band]


def run_banded(bands):
    for band in bands:
        factor = scipy.linalg.cholesky_banded(band, lower=True, check_finite=False)
        2 * np.log(factor[0]).sum()


def run_hmm(trans, noise_tril, obs):
    batch, num_steps, dim = obs.shape
    zeros, eye = torch.zeros(dim), torch.eye(dim)
    hmm = dist.GaussianHMM(
        dist.MultivariateNormal(zeros, eye, validate_args=False),
        trans,
        dist.MultivariateNormal(zeros, scale_tril=noise_tril, validate_args=False),
        eye,
        dist.MultivariateNormal(zeros, 0.5 * eye, validate_args=False),
        validate_args=False,
    )
    hmm.log_prob(obs).sum().backward()


def bench_row(dim, num_steps, batch, repeats, budget_s):
    generator = torch.Generator().manual_seed(0)
    trans, noise, diag, offdiag = make_chain(batch, num_steps, dim, generator)
    loc = torch.randn(batch, num_steps, dim, generator=generator)
    row = {}
    args = leaves(loc, diag, offdiag)
    row["block"] = median_ms(fresh_grads(run_ours, args), repeats, budget_s)
    diag_args = leaves(loc, diag.diagonal(dim1=-2, dim2=-1), offdiag.diagonal(dim1=-2, dim2=-1))
    row["diag"] = median_ms(fresh_grads(run_ours_diagonal, diag_args), repeats, budget_s)
    if batch * (num_steps * dim) ** 3 <= DENSE_FLOP_LIMIT:
        dense_args = leaves(loc.flatten(-2), ops.dense_from_blocks(diag, offdiag))
        row["dense"] = median_ms(fresh_grads(run_dense, dense_args), repeats, budget_s)
    bands = band_of(diag, offdiag)
    row["banded"] = median_ms(lambda: run_banded(bands), repeats, budget_s)
    # The HMM's first transition maps a N(0, I) initial state to z_0; the rest follow A_t'.
    hmm_trans = leaves(torch.cat([torch.eye(dim).expand(batch, 1, dim, dim), trans.mT], 1))[0]
    noise_tril = torch.linalg.cholesky(
        torch.cat([torch.eye(dim).expand(batch, 1, dim, dim), noise], 1)
    )
    hmm_args = [hmm_trans, leaves(noise_tril)[0], torch.randn(batch, num_steps, dim)]
    row["hmm"] = median_ms(fresh_grads(run_hmm, hmm_args), repeats, budget_s)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small grid (n=4,16; T=20,100)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per cell (median)")
    parser.add_argument("--budget", type=float, default=3.0, help="max seconds per cell")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dims, lengths = ((4, 16), (20, 100)) if args.quick else ((4, 16, 32), (20, 100, 1000))
    columns = ["block", "diag", "dense", "banded", "hmm"]
    print(
        f"BlockTridiagMVN benchmark: float32, CPU, {args.threads} thread(s), torch "
        f"{torch.__version__}; median ms of up to {args.repeats} runs; (x) = time / block "
        "time, except diag: block / diag"
    )
    header = f"{'n':>3} {'T':>5} {'B':>3} | " + " | ".join(f"{c:>17}" for c in columns)
    print(header)
    print("-" * len(header))
    for dim in dims:
        for num_steps in lengths:
            for batch in (1, 64):
                row = bench_row(dim, num_steps, batch, args.repeats, args.budget)
                cells = []
                for column in columns:
                    if column not in row:
                        cells.append(f"{'-':>17}")
                        continue
                    ratio = row[column] / row["block"]
                    if column == "diag":
                        ratio = 1 / ratio
                    cells.append(f"{row[column]:9.2f} ({ratio:5.1f}x)")
                print(f"{dim:>3} {num_steps:>5} {batch:>3} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
