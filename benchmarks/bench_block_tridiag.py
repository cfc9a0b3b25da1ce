"""Every block-tridiagonal path and anchor of pyro-dynvae, measured in one run.

The problem is the ``Tn x Tn`` block-tridiagonal precision ``J`` (diagonal blocks ``D_t``,
sub-diagonal blocks ``B_t``) of ``B`` random stable linear-Gaussian chains
``z_{t+1} = A_t z_t + w_t`` (:func:`~pyro_dynvae.ops.block_tridiag.markov_chain_blocks`). One
run prints, in order:

- the machine line: torch version, threads, dtype, device and this machine's matmul peak
  (GFLOP/s, measured in the same run on a square matmul of the benchmark dtype);
- **table A**, the algorithms: median ms of the log-determinant ``log|J|`` (forward) by

  - ``dense``: ``MultivariateNormal(precision_matrix=J).log_prob`` on the assembled matrix,
  - ``banded``: ``scipy.linalg.cholesky_banded`` (LAPACK ``pbtrf``) on the ``2n - 1`` lower
    band, looped over the ``B`` sequences, no autograd (CPU only; the band storage is built
    outside the timing),
  - ``hmm``: Pyro's ``GaussianHMM.log_prob`` of the same chain observed through
    ``x_t = z_t + v_t`` (its parallel-scan marginal likelihood: the library anchor),
  - ``sequential``: :func:`~pyro_dynvae.ops.block_tridiag.block_cholesky_ex` (``T`` steps),
  - ``cyclic``: :func:`~pyro_dynvae.ops.cyclic_reduction.cyclic_reduction_factor`
    (``floor(log2 T) + 1`` levels),
  - ``auto``: :func:`~pyro_dynvae.ops.dispatch.logdet_with_selected_inverse_grad`, the path
    :func:`~pyro_dynvae.ops.dispatch.choose_algorithm` dispatches to (named in ``auto is``);

  and of forward + backward (the gradient with respect to the blocks, or to the dense matrix /
  the HMM's transition matrices and noise): ``dense`` and ``hmm`` through autograd,
  ``seq-autograd`` through plain autograd of a textbook sequential block Cholesky loop
  (:func:`naive_sequential_logdet`: the issue's reference, what one writes without this
  library), ``seq-adjoint`` through :func:`~pyro_dynvae.ops.block_tridiag.block_cholesky_ex`
  (the same loop with its hand-written blockwise Murray adjoint),
  ``seq-selinv`` / ``cyclic-selinv`` with the selected-inverse backward of
  :func:`~pyro_dynvae.ops.logdet_autograd.block_tridiag_logdet`, and ``auto``. ``MFLOP`` is the
  sequential block Cholesky's ``7/3 T n^3`` per sequence times ``B``; ``%peak`` the fraction of
  the matmul peak that the fastest forward path (named in ``fastest``) reaches at that count;
  ``rel.err`` the largest relative difference of the ``log|J|`` of dense, banded, cyclic and
  auto from sequential's (a check that all paths compute the same thing);
- **table B**: every time of table A divided by ``auto``'s (above 1: the dispatched path is
  faster);
- the **issue 6 targets** (CPU float32): at ``B=1, T=1000, n in {8, 32}``, cyclic within 2x of
  banded and at least 3x faster than sequential; forward + backward at ``B=1, T=1000``
  (cyclic-selinv) at least 2x faster than autograd through the sequential loop; at ``B=64``,
  every ``(T, n)``, auto faster than banded looped over the batch and at least 3x faster than
  ``GaussianHMM.log_prob``. Each line says ``met`` or ``MISSED``, or that the cell is not in
  the grid;
- **table C**, the distribution end to end: ``BlockTridiagMVN(loc, D, B)`` factorise,
  ``rsample``, ``log_prob`` of the sample, ``entropy`` and the gradient of ``log_prob +
  entropy`` to ``loc, D, B`` (``block``); the same with ``blocks="diagonal"`` (``diag``);
  ``torch.distributions.MultivariateNormal`` on the dense precision (``dense``); banded
  log-determinant only (``banded``); ``GaussianHMM.log_prob`` + gradient (``hmm``). Ratios are
  ``time / block`` except ``diag``: ``block / diag`` (its speed-up);
- (not with ``--quick``) the **memory probe**: forward + backward with the selected-inverse
  backward at ``B=64, n=16, T in {1000, 2500, 10000}``, peak memory growth (resident set of a
  fresh subprocess on CPU, ``torch.cuda.max_memory_allocated`` on CUDA) and whether the memory
  per time step stays flat (linear in ``T``).

``--gpu-grid`` instead runs the issue's GPU grid: sequential vs cyclic vs dense, forward and
forward + backward, ``T in {100, 1000, 10000}``, ``B in {1, 64, 1024}``, ``n in {8, 32}``,
cheap cells first (by ``T``, the number of dependent steps, then by flops), and prints a
Markdown table with the date and the device name.

Rules: the dense path runs only where ``B (Tn)^3 <= --dense-limit`` (default ``64 * 1600^3`` on
CPU, ``1e13`` on CUDA, ``64 * 400^3`` with ``--quick``) and the ``B`` dense matrices hold at
most ``2^30`` elements; a cell runs only where the block tensors hold at most ``2^30`` elements
(``B T n^2``). Timing: each method runs once to warm up, then rounds interleave all methods of
a cell (so load from other processes hits them alike) until ``--repeats`` rounds or
``--budget`` seconds per method; a method whose warm-up exceeded the budget keeps that one
sample. Each cell is the median. On CUDA every timing is bracketed by
``torch.cuda.synchronize()``, a method that runs out of memory prints ``oom``, and
``--time-limit`` stops starting new cells after that many seconds. Validation is off for every
distribution; gradients come from ``torch.autograd.grad`` (nothing accumulates).

Usage, from the repository root::

    python3 -m benchmarks.bench_block_tridiag                 # every table, CPU, float32
    python3 -m benchmarks.bench_block_tridiag --quick         # a tiny grid (well under a minute)
    python3 -m benchmarks.bench_block_tridiag --device cuda   # the same tables on a GPU
    python3 -m benchmarks.bench_block_tridiag --gpu-grid      # the issue's GPU grid (Markdown)
"""

from __future__ import annotations

import argparse
import datetime
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyro.distributions as pdist
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

from pyro_dynvae.distributions import BlockTridiagMVN
from pyro_dynvae.ops import block_tridiag as sequential
from pyro_dynvae.ops.cyclic_reduction import cyclic_reduction_factor, cyclic_reduction_logdet
from pyro_dynvae.ops.dispatch import choose_algorithm, logdet_with_selected_inverse_grad
from pyro_dynvae.ops.logdet_autograd import block_tridiag_logdet

ROOT = Path(__file__).resolve().parents[1]
FORWARD = ("dense", "banded", "hmm", "sequential", "cyclic", "auto")
BACKWARD = ("dense", "hmm", "seq-autograd", "seq-adjoint", "seq-selinv", "cyclic-selinv", "auto")
GPU_FORWARD = ("sequential", "cyclic", "dense")
GPU_BACKWARD = ("seq-adjoint", "seq-selinv", "cyclic-selinv", "dense")
DISTRIBUTION = ("block", "diag", "dense", "banded", "hmm")
DENSE_LIMIT = {"cpu": 64 * 1600**3, "cuda": 1e13, "quick": 64 * 400**3}
MAX_ELEMENTS = 2**30
MEMORY_PROBE = (64, 16, (1000, 2500, 10000))  # B, n, T values


# ----------------------------------------------------------------------------------------------
# Timing.


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(
    methods: dict, repeats: int, budget_s: float, device: torch.device
) -> tuple[dict, dict]:
    """Median wall time (ms) of each method over up to ``repeats`` interleaved rounds.

    Rounds interleave the methods, so that load from other processes hits all of them alike;
    they stop once ``budget_s`` seconds per method have been spent. After one warm-up run each,
    a method whose warm-up took longer than ``budget_s`` keeps that one sample (the dense
    reference at large sizes runs once); one that runs out of GPU memory gets ``inf``.

    :return: ``(times, values)``: median ms and each method's warm-up return value.
    """

    def timed(fn):
        synchronize(device)
        begin = time.perf_counter()
        value = fn()
        synchronize(device)
        return time.perf_counter() - begin, value

    samples, values = {}, {}
    for name, fn in methods.items():
        try:
            first, values[name] = timed(fn)
            samples[name] = [first]
        except torch.OutOfMemoryError:
            samples[name] = [math.inf]
            torch.cuda.empty_cache()
    active = [name for name in methods if samples[name][0] <= budget_s]
    for name in active:
        samples[name] = []
    start = time.perf_counter()
    for _ in range(repeats):
        for name in active:
            samples[name].append(timed(methods[name])[0])
        if time.perf_counter() - start > budget_s * max(len(active), 1):
            break
    return {name: 1e3 * statistics.median(times) for name, times in samples.items()}, values


def matmul_peak_gflops(dtype: torch.dtype, device: torch.device) -> float:
    """This machine's matmul rate (GFLOP/s): a square matmul, 2 size^3 flops, median of 5."""
    size = 2048 if device.type == "cpu" else 8192
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    times, _ = median_ms({"matmul": lambda: a @ b}, 5, 5.0, device)
    return 2 * size**3 / times["matmul"] / 1e6


# ----------------------------------------------------------------------------------------------
# Problems and the paths that solve them.


class Chain(NamedTuple):
    """``B`` chains ``z_0 ~ N(0, I)``, ``z_{t+1} = A_t z_t + w_t``, ``w_t ~ N(0, Q_t)``, and the
    blocks ``(D, B)`` of the precision of ``z``."""

    trans: Tensor  # A_t, (B, T-1, n, n)
    noise: Tensor  # Q_t, (B, T-1, n, n)
    diag: Tensor  # D_t, (B, T, n, n)
    offdiag: Tensor  # B_t, (B, T-1, n, n)


def make_chain(
    batch: int, num_steps: int, dim: int, dtype: torch.dtype, device: torch.device
) -> Chain:
    """A stable random chain: ``A_t`` with spectral radius about 1/2, ``Q_t >= I/2``, seed 0."""
    options = {
        "generator": torch.Generator(device).manual_seed(0),
        "dtype": dtype,
        "device": device,
    }
    trans = torch.randn(batch, num_steps - 1, dim, dim, **options) / (2 * dim**0.5)
    root = torch.randn(batch, num_steps - 1, dim, dim, **options) / dim**0.5
    eye = torch.eye(dim, dtype=dtype, device=device)
    noise = root @ root.mT + 0.5 * eye
    diag, offdiag = sequential.markov_chain_blocks(eye.expand(batch, dim, dim), trans, noise)
    return Chain(trans, noise, diag, offdiag)


def dense_fits(batch: int, num_steps: int, dim: int, dense_limit: float) -> bool:
    size = num_steps * dim
    return batch * size**3 <= dense_limit and batch * size**2 <= MAX_ELEMENTS


def sequential_logdet(diag: Tensor, offdiag: Tensor) -> Tensor:
    return sequential.logdet(sequential.block_cholesky_ex(diag, offdiag)[0])


def naive_sequential_logdet(diag: Tensor, offdiag: Tensor) -> Tensor:
    """``log|J|`` by the textbook block Cholesky (``E_t = B_t C_t^{-T}``,
    ``C_{t+1} = chol(D_{t+1} - E_t E_t')``) in plain torch ops, so that autograd records and
    replays the loop: the reference "autograd through the sequential loop" of issue 6 (time
    steps taken with ``unbind``, as indexing inside the loop would make the backward
    quadratic in ``T``)."""
    diags, offdiags = diag.unbind(-3), offdiag.unbind(-3)
    chol = torch.linalg.cholesky(diags[0])
    logdet = chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    for diag_next, off in zip(diags[1:], offdiags, strict=True):
        sub = torch.linalg.solve_triangular(chol.mT, off, upper=True, left=False)
        chol = torch.linalg.cholesky(diag_next - sub @ sub.mT)
        logdet = logdet + chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 2 * logdet


def cyclic_logdet(diag: Tensor, offdiag: Tensor) -> Tensor:
    return cyclic_reduction_logdet(cyclic_reduction_factor(diag, offdiag))


def selinv_logdet(algorithm: str) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda diag, offdiag: block_tridiag_logdet(diag, offdiag, algorithm=algorithm)[0]


def auto_logdet(diag: Tensor, offdiag: Tensor) -> Tensor:
    return logdet_with_selected_inverse_grad(diag, offdiag)[0]


def dense_logdet(precision: Tensor) -> Tensor:
    """``log|J| = 2 log N(0 | 0, J^-1) + Tn log(2 pi)`` through ``MultivariateNormal``."""
    size = precision.shape[-1]
    zeros = precision.new_zeros(size)
    mvn = torch.distributions.MultivariateNormal(
        zeros, precision_matrix=precision, validate_args=False
    )
    return 2 * mvn.log_prob(zeros) + size * math.log(2 * math.pi)


def band_storage(diag: Tensor, offdiag: Tensor) -> list[np.ndarray]:
    """Lower band storage ``ab[i - j, j] = J[i, j]`` (``2n`` rows) of each sequence, the input
    of ``scipy.linalg.cholesky_banded(ab, lower=True)``."""
    diag, offdiag = diag.cpu().numpy(), offdiag.cpu().numpy()
    batch, num_steps, dim = diag.shape[:3]
    band = np.zeros((batch, 2 * dim, num_steps * dim), diag.dtype)
    rows, cols = np.tril_indices(dim)
    steps = np.arange(num_steps)[:, None]
    band[:, (rows - cols)[None], steps * dim + cols[None]] = diag[:, :, rows, cols]
    rows, cols = (g.ravel() for g in np.meshgrid(np.arange(dim), np.arange(dim), indexing="ij"))
    steps = np.arange(num_steps - 1)[:, None]
    band[:, (dim + rows - cols)[None], steps * dim + cols[None]] = offdiag[:, :, rows, cols]
    return list(band)


def banded_logdet(bands: list[np.ndarray]) -> np.ndarray:
    return np.array(
        [
            2 * np.log(scipy.linalg.cholesky_banded(ab, lower=True, check_finite=False)[0]).sum()
            for ab in bands
        ]
    )


def hmm_inputs(chain: Chain) -> tuple[Tensor, Tensor, Tensor]:
    """``GaussianHMM`` arguments for ``chain``: its transition matrices (row-vector convention,
    ``z_t = z_{t-1} M_t``: ``M_t = A_{t-1}'``, and ``M_0 = I`` maps the ``N(0, I)`` initial state
    to ``z_0`` with noise ``N(0, I)``), the noise's Cholesky factors, and random observations."""
    batch, num_steps, dim = chain.diag.shape[:3]
    eye = torch.eye(dim, dtype=chain.diag.dtype, device=chain.diag.device)
    first = eye.expand(batch, 1, dim, dim)
    matrices = torch.cat([first, chain.trans.mT], 1)
    noise_tril = torch.linalg.cholesky(torch.cat([first, chain.noise], 1))
    observations = torch.randn(batch, num_steps, dim, dtype=eye.dtype, device=eye.device)
    return matrices, noise_tril, observations


def hmm_log_prob(matrices: Tensor, noise_tril: Tensor, observations: Tensor) -> Tensor:
    """Pyro's ``GaussianHMM.log_prob`` of ``observations = z_t + v_t``, ``v_t ~ N(0, I/2)``."""
    dim = observations.shape[-1]
    zeros = observations.new_zeros(dim)
    eye = torch.eye(dim, dtype=zeros.dtype, device=zeros.device)
    hmm = pdist.GaussianHMM(
        pdist.MultivariateNormal(zeros, scale_tril=eye, validate_args=False),
        matrices,
        pdist.MultivariateNormal(zeros, scale_tril=noise_tril, validate_args=False),
        eye,
        pdist.MultivariateNormal(zeros, scale_tril=0.5**0.5 * eye, validate_args=False),
        validate_args=False,
    )
    return hmm.log_prob(observations)


def gradient(fn: Callable[..., Tensor], *inputs: Tensor) -> Callable[[], None]:
    """A callable running ``fn(*inputs)`` forward and its sum backward to ``inputs`` (the
    gradients are dropped, so that no copy of them outlives the call)."""
    leaves = [x.detach().requires_grad_() for x in inputs]

    def run() -> None:
        torch.autograd.grad(fn(*leaves).sum(), leaves)

    return run


# ----------------------------------------------------------------------------------------------
# Table A (and the GPU grid): one cell.


class Cell(NamedTuple):
    batch: int
    num_steps: int
    dim: int

    @property
    def flops(self) -> float:
        """The sequential block Cholesky's ``7/3 T n^3`` per sequence, times ``B``."""
        return self.batch * 7 / 3 * self.num_steps * self.dim**3

    def label(self) -> str:
        return f"{self.batch:>4} {self.num_steps:>5} {self.dim:>3}"


def algorithm_methods(
    chain: Chain, forward: Sequence[str], backward: Sequence[str], dense: bool
) -> dict:
    """The timed callables of one cell, keyed ``("fwd", path)`` (returning ``log|J|``, or the
    HMM's log-likelihood) and ``("bwd", path)`` (forward and backward, returning nothing);
    ``dense`` says whether the dense path fits (:func:`dense_fits`)."""
    diag, offdiag = chain.diag, chain.offdiag
    forward_fns = {"sequential": sequential_logdet, "cyclic": cyclic_logdet, "auto": auto_logdet}
    backward_fns = {
        "seq-autograd": naive_sequential_logdet,
        "seq-adjoint": sequential_logdet,
        "seq-selinv": selinv_logdet("sequential"),
        "cyclic-selinv": selinv_logdet("cyclic"),
        "auto": auto_logdet,
    }
    methods = {("fwd", k): partial(f, diag, offdiag) for k, f in forward_fns.items()}
    methods.update({("bwd", k): gradient(f, diag, offdiag) for k, f in backward_fns.items()})
    if dense:
        precision = sequential.dense_from_blocks(diag, offdiag)
        methods["fwd", "dense"] = partial(dense_logdet, precision)
        methods["bwd", "dense"] = gradient(dense_logdet, precision)
    if "banded" in forward and diag.device.type == "cpu":
        methods["fwd", "banded"] = partial(banded_logdet, band_storage(diag, offdiag))
    if "hmm" in forward or "hmm" in backward:
        matrices, noise_tril, observations = hmm_inputs(chain)
        methods["fwd", "hmm"] = partial(hmm_log_prob, matrices, noise_tril, observations)
        methods["bwd", "hmm"] = gradient(
            lambda m, s: hmm_log_prob(m, s, observations), matrices, noise_tril
        )
    wanted = {"fwd": forward, "bwd": backward}
    return {key: fn for key, fn in methods.items() if key[1] in wanted[key[0]]}


def measure_cell(cell: Cell, args, forward: Sequence[str], backward: Sequence[str]) -> dict:
    """Times (ms) of one cell keyed ``("fwd" | "bwd", path)``, plus ``"auto is"`` and
    ``"rel.err"``; ``{"oom": True}`` where the inputs do not fit in GPU memory."""
    try:
        chain = make_chain(*cell, args.dtype, args.device)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"oom": True}
    dense = dense_fits(*cell, args.dense_limit)
    methods = algorithm_methods(chain, forward, backward, dense)
    row, values = median_ms(methods, args.repeats, args.budget, args.device)
    row["auto is"] = choose_algorithm(chain.diag, chain.offdiag)
    reference = values.get(("fwd", "sequential"))
    if reference is not None:
        reference = reference.double().cpu().numpy()
        errors = [
            np.abs(np.asarray(torch.as_tensor(values[key]).double().cpu()) - reference).max()
            for key in values
            if key[0] == "fwd" and key[1] not in ("hmm", "sequential")
        ]
        row["rel.err"] = max(errors, default=0.0) / np.abs(reference).max()
    return row


def run_cells(cells: Sequence[Cell], args, forward, backward, on_row: Callable) -> dict:
    """Measure ``cells`` in order, calling ``on_row(cell, row)`` after each; after the first,
    start no new cell once ``--time-limit`` seconds have passed (the skipped cells are listed)."""
    start = time.perf_counter()
    rows = {}
    for index, cell in enumerate(cells):
        late = args.time_limit is not None and time.perf_counter() - start > args.time_limit
        if index > 0 and late:
            skipped = ", ".join(f"{c.batch}/{c.num_steps}/{c.dim}" for c in cells[index:])
            print(f"time limit ({args.time_limit:g} s) reached; not run (B/T/n): {skipped}")
            break
        if cell.batch * cell.num_steps * cell.dim**2 > MAX_ELEMENTS:
            rows[cell] = {"too big": True}
        else:
            rows[cell] = measure_cell(cell, args, forward, backward)
        on_row(cell, rows[cell])
    return rows


def report_progress(cell: Cell, row: dict) -> None:
    print(f"measured B={cell.batch} T={cell.num_steps} n={cell.dim}", file=sys.stderr, flush=True)


def fmt(value, width: int, spec: str = ".2f") -> str:
    if value is None:
        return f"{'-':>{width}}"
    if math.isinf(value):
        return f"{'oom':>{width}}"
    return f"{value:>{width}{spec}}"


# ----------------------------------------------------------------------------------------------
# Tables A, B and the targets.


def print_table_a(rows: dict, peak: float) -> None:
    print("\nTable A1: log-determinant forward, ms")
    header = f"{'B':>4} {'T':>5} {'n':>3} {'MFLOP':>8} | " + " ".join(f"{k:>10}" for k in FORWARD)
    print(header + f" | {'fastest':>10} {'%peak':>6} {'auto is':>10} {'rel.err':>8}")
    for cell, row in rows.items():
        times = {k: row["fwd", k] for k in FORWARD if ("fwd", k) in row}
        fastest = min(times, key=times.get)
        percent = 100 * cell.flops / (times[fastest] * 1e-3) / (peak * 1e9)
        cells = " ".join(fmt(times.get(k), 10) for k in FORWARD)
        print(
            f"{cell.label()} {cell.flops / 1e6:>8.1f} | {cells} | {fastest:>10} "
            f"{fmt(percent, 5, '.1f')}% {row['auto is']:>10} {row.get('rel.err', 0):>8.1e}"
        )
    print("\nTable A2: log-determinant forward + backward, ms")
    print(f"{'B':>4} {'T':>5} {'n':>3} | " + " ".join(f"{k:>13}" for k in BACKWARD))
    for cell, row in rows.items():
        print(f"{cell.label()} | " + " ".join(fmt(row.get(("bwd", k)), 13) for k in BACKWARD))


def print_table_b(rows: dict) -> None:
    print("\nTable B: time / auto's time, same pass (above 1: the dispatched path is faster)")
    fwd = [k for k in FORWARD if k != "auto"]
    bwd = [k for k in BACKWARD if k != "auto"]
    print(f"{'':>14} | {'forward':<54} | forward + backward")
    print(
        f"{'B':>4} {'T':>5} {'n':>3} | "
        + " ".join(f"{k:>10}" for k in fwd)
        + " | "
        + " ".join(f"{k:>13}" for k in bwd)
    )
    for cell, row in rows.items():

        def ratio(kind, name, row=row):
            return row[kind, name] / row[kind, "auto"] if (kind, name) in row else None

        print(
            f"{cell.label()} | "
            + " ".join(fmt(ratio("fwd", k), 10) for k in fwd)
            + " | "
            + " ".join(fmt(ratio("bwd", k), 13) for k in bwd)
        )


def target_line(label: str, row: dict, numerator, denominator, relation: str, bound: float):
    """``label: ratio (target relation bound: met | MISSED)``, or why it was not measured."""
    if numerator not in row or denominator not in row:
        missing = numerator[1] if numerator not in row else denominator[1]
        return f"{label} = not measured ({missing} not run here)"
    ratio = row[numerator] / row[denominator]
    met = {"<=": ratio <= bound, ">=": ratio >= bound, ">": ratio > bound}[relation]
    return f"{label} = {ratio:.2f} (target {relation} {bound:g}: {'met' if met else 'MISSED'})"


def print_targets(rows: dict, grid: Sequence[Cell]) -> None:
    print("\nIssue 6 targets (time ratios, this run)")
    for dim in (8, 32):
        cell = Cell(1, 1000, dim)
        if cell not in rows:
            print(f"B=1 T=1000 n={dim}: not in this grid")
            continue
        row = rows[cell]
        print(
            f"B=1 T=1000 n={dim}: "
            + target_line("cyclic/banded", row, ("fwd", "cyclic"), ("fwd", "banded"), "<=", 2)
            + "; "
            + target_line(
                "sequential/cyclic", row, ("fwd", "sequential"), ("fwd", "cyclic"), ">=", 3
            )
        )
    fwd_bwd = [cell for cell in grid if cell.batch == 1 and cell.num_steps == 1000]
    if not fwd_bwd:
        print("B=1 T=1000 forward+backward: not in this grid")
    for cell in fwd_bwd:
        row = rows[cell]
        adjoint = row["bwd", "seq-adjoint"] / row["bwd", "cyclic-selinv"]
        print(
            f"B=1 T=1000 n={cell.dim} forward+backward: "
            + target_line(
                "seq-autograd/cyclic-selinv",
                row,
                ("bwd", "seq-autograd"),
                ("bwd", "cyclic-selinv"),
                ">=",
                2,
            )
            + f" (against the hand-written sequential adjoint: {adjoint:.2f})"
        )
    wide = [cell for cell in grid if cell.batch == 64]
    if not wide:
        print("B=64: not in this grid")
    for cell in wide:
        row = rows[cell]
        print(
            f"B=64 T={cell.num_steps} n={cell.dim}: "
            + target_line("banded/auto", row, ("fwd", "banded"), ("fwd", "auto"), ">", 1)
            + "; "
            + target_line("hmm/auto", row, ("fwd", "hmm"), ("fwd", "auto"), ">=", 3)
        )


# ----------------------------------------------------------------------------------------------
# Table C: the distribution end to end.


def distribution_step(loc: Tensor, diag: Tensor, offdiag: Tensor, blocks: str) -> Tensor:
    d = BlockTridiagMVN(loc, diag, offdiag, validate_args=False, blocks=blocks)
    return d.log_prob(d.rsample()) + d.entropy()


def dense_step(loc: Tensor, precision: Tensor) -> Tensor:
    d = torch.distributions.MultivariateNormal(loc, precision_matrix=precision, validate_args=False)
    return d.log_prob(d.rsample()) + d.entropy()


def distribution_row(cell: Cell, args) -> dict:
    batch, num_steps, dim = cell
    chain = make_chain(batch, num_steps, dim, args.dtype, args.device)
    loc = torch.randn(batch, num_steps, dim, dtype=args.dtype, device=args.device)
    methods = {
        "block": gradient(
            partial(distribution_step, blocks="full"), loc, chain.diag, chain.offdiag
        ),
        "diag": gradient(
            partial(distribution_step, blocks="diagonal"),
            loc,
            chain.diag.diagonal(dim1=-2, dim2=-1),
            chain.offdiag.diagonal(dim1=-2, dim2=-1),
        ),
    }
    if dense_fits(batch, num_steps, dim, args.dense_limit):
        precision = sequential.dense_from_blocks(chain.diag, chain.offdiag)
        methods["dense"] = gradient(dense_step, loc.flatten(-2), precision)
    if args.device.type == "cpu":
        methods["banded"] = partial(banded_logdet, band_storage(chain.diag, chain.offdiag))
    matrices, noise_tril, observations = hmm_inputs(chain)
    methods["hmm"] = gradient(lambda m, s: hmm_log_prob(m, s, observations), matrices, noise_tril)
    return median_ms(methods, args.repeats, args.budget, args.device)[0]


def print_table_c(args) -> None:
    dims, lengths = ((4,), (20, 100)) if args.quick else ((4, 16, 32), (20, 100, 1000))
    print(
        "\nTable C: BlockTridiagMVN end to end (factorise, rsample, log_prob, entropy, "
        "backward), ms; (x) = time / block time, except diag: block / diag"
    )
    header = f"{'n':>3} {'T':>5} {'B':>4} | " + " | ".join(f"{c:>17}" for c in DISTRIBUTION)
    print(header)
    for dim in dims:
        for num_steps in lengths:
            for batch in (1, 64):
                row = distribution_row(Cell(batch, num_steps, dim), args)
                cells = []
                for column in DISTRIBUTION:
                    if column not in row:
                        cells.append(f"{'-':>17}")
                        continue
                    ratio = row[column] / row["block"]
                    ratio = 1 / ratio if column == "diag" else ratio
                    cells.append(f"{fmt(row[column], 9)} ({ratio:5.1f}x)")
                print(f"{dim:>3} {num_steps:>5} {batch:>4} | " + " | ".join(cells), flush=True)


# ----------------------------------------------------------------------------------------------
# Memory.


def resident_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_probe(cell: Cell, algorithm: str, dtype: torch.dtype, device: torch.device):
    """One forward + backward with the selected-inverse backward.

    :return: ``(peak memory growth in MiB, ms, whether log|J| and its gradient are finite)``.
        On CPU the growth is the peak resident set (``VmHWM``, reset through
        ``/proc/self/clear_refs`` after the inputs are built) minus the resident set then; on
        CUDA ``torch.cuda.max_memory_allocated`` minus the memory allocated then.
    """
    chain = make_chain(*cell, dtype, device)
    diag, offdiag = (x.detach().requires_grad_() for x in (chain.diag, chain.offdiag))
    del chain
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        Path("/proc/self/clear_refs").write_text("5")
        before = resident_mib("VmRSS")
    start = time.perf_counter()
    value, failed = logdet_with_selected_inverse_grad(diag, offdiag, algorithm=algorithm)
    grads = torch.autograd.grad(value.sum(), (diag, offdiag))
    synchronize(device)
    elapsed_ms = 1e3 * (time.perf_counter() - start)
    if device.type == "cuda":
        growth = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    else:
        growth = resident_mib("VmHWM") - before
    finite = bool((failed < 0).all()) and all(bool(torch.isfinite(g).all()) for g in grads)
    return growth, elapsed_ms, finite


def print_memory(args) -> None:
    batch, dim, lengths = MEMORY_PROBE
    print(f"\nMemory: B={batch}, n={dim}, forward + backward (selected-inverse backward)")
    per_step, works = {}, {}
    for algorithm in ("sequential", "cyclic"):
        for num_steps in lengths:
            cell = Cell(batch, num_steps, dim)
            if args.device.type == "cuda":
                growth, ms, finite = memory_probe(cell, algorithm, args.dtype, args.device)
            else:  # a fresh process, so that earlier tables do not hide the peak
                module = ["-m", "benchmarks.bench_block_tridiag", "--threads", str(args.threads)]
                probe = ["--memory-probe", str(num_steps), algorithm, "--dtype", args.dtype_name]
                command = [sys.executable, *module, *probe]
                run = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
                out = run.stdout.split()
                growth, ms, finite = float(out[0]), float(out[1]), out[2] == "True"
            blocks = growth * 2**20 / (num_steps * batch * dim**2 * args.dtype.itemsize)
            per_step[algorithm, num_steps] = growth / num_steps
            works[algorithm] = finite  # at the largest T, the last one
            print(
                f"{algorithm:>10} T={num_steps:>5}: {growth:8.1f} MiB, {ms:8.0f} ms, "
                f"{blocks:4.1f} n x n blocks per step and sequence, finite: {finite}"
            )
    for algorithm in ("sequential", "cyclic"):
        ratio = per_step[algorithm, lengths[-1]] / per_step[algorithm, lengths[0]]
        met = works[algorithm] and ratio <= 1.25
        print(
            f"target: T={lengths[-1]} works at B={batch}, n={dim} with memory linear in T "
            f"({algorithm}): finite log|J| and gradient: {works[algorithm]}; MiB per step at "
            f"T={lengths[-1]} / T={lengths[0]} = {ratio:.2f} (<= 1.25): "
            f"{'met' if met else 'MISSED'}"
        )


# ----------------------------------------------------------------------------------------------
# The GPU grid.


def gpu_grid(args) -> None:
    """The issue's GPU grid, cheap cells first, as a Markdown table printed row by row."""
    cells = sorted(
        (Cell(b, t, n) for b in (1, 64, 1024) for t in (100, 1000, 10000) for n in (8, 32)),
        key=lambda c: (c.num_steps, c.flops),
    )
    name = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "CPU"
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    print(
        f"\nGPU grid, {today}, {name}, {args.dtype_name}: median ms; dense only where "
        f"B (Tn)^3 <= {args.dense_limit:.3g} and B (Tn)^2 <= 2^30, else '-'; 'oom': out of "
        "memory; seq/cyc: sequential / cyclic (forward) and seq-adjoint / cyclic-selinv "
        "(forward + backward)\n"
    )
    columns = (
        ["B", "T", "n", "auto is"]
        + [f"{k} fwd" for k in GPU_FORWARD]
        + ["seq/cyc fwd"]
        + [f"{k} fwd+bwd" for k in GPU_BACKWARD]
        + ["seq/cyc fwd+bwd"]
    )
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))

    def on_row(cell: Cell, row: dict) -> None:
        if "oom" in row or "too big" in row:
            why = "oom" if "oom" in row else "inputs > 2^30 elements"
            print(f"| {cell.batch} | {cell.num_steps} | {cell.dim} | " + f"{why} | " * 12)
            return
        fwd = [fmt(row.get(("fwd", k)), 0) for k in GPU_FORWARD]
        bwd = [fmt(row.get(("bwd", k)), 0) for k in GPU_BACKWARD]
        seq_cyc = row["fwd", "sequential"] / row["fwd", "cyclic"]
        seq_cyc_bwd = row["bwd", "seq-adjoint"] / row["bwd", "cyclic-selinv"]
        values = [*cell, row["auto is"], *fwd, fmt(seq_cyc, 0), *bwd, fmt(seq_cyc_bwd, 0)]
        print("| " + " | ".join(str(v) for v in values) + " |", flush=True)

    run_cells(cells, args, GPU_FORWARD, GPU_BACKWARD, on_row)


# ----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny grid (well under a minute)")
    parser.add_argument(
        "--gpu-grid", action="store_true", help="run only the issue's GPU grid (Markdown)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda with --gpu-grid")
    parser.add_argument(
        "--dtype", dest="dtype_name", choices=("float32", "float64"), default="float32"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per cell (median)")
    parser.add_argument(
        "--budget",
        type=float,
        help="max seconds per method and cell (default 3, 1 with --gpu-grid)",
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch and BLAS)")
    parser.add_argument(
        "--dense-limit",
        type=float,
        help="largest B (Tn)^3 for the dense path (default by device, or --quick)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        help="seconds after which table A / the GPU grid starts no new cell",
    )
    parser.add_argument(
        "--memory-probe", nargs=2, metavar=("T", "ALGORITHM"), help=argparse.SUPPRESS
    )  # internal: one memory measurement
    args = parser.parse_args(argv)
    args.device = torch.device(args.device or ("cuda" if args.gpu_grid else "cpu"))
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error(
            "--device cuda (or --gpu-grid): CUDA is not available here "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False); "
            "use a machine with a GPU and a CUDA build of torch, or --device cpu"
        )
    args.dtype = getattr(torch, args.dtype_name)
    if args.budget is None:
        args.budget = 1.0 if args.gpu_grid else 3.0
    if args.dense_limit is None:
        args.dense_limit = DENSE_LIMIT["quick" if args.quick else args.device.type]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        if args.memory_probe:
            num_steps, algorithm = args.memory_probe
            batch, dim, _ = MEMORY_PROBE
            cell = Cell(batch, int(num_steps), dim)
            print(*memory_probe(cell, algorithm, args.dtype, args.device))
            return
        peak = matmul_peak_gflops(args.dtype, args.device)
        device = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "CPU"
        print(
            f"torch {torch.__version__}, {args.threads} thread(s), {args.dtype_name}, "
            f"{args.device} ({device}); matmul peak {peak:.1f} GFLOP/s; median ms of up to "
            f"{args.repeats} interleaved rounds (a shared machine is noisy: read ratios)",
            flush=True,
        )
        tiny = Cell(1, 20, 4)
        measure_cell(tiny, args, FORWARD, BACKWARD)  # warm-up: library init, first-call costs
        if args.gpu_grid:
            gpu_grid(args)
            return
        if args.quick:
            grid = [Cell(1, 1000, 8), Cell(64, 100, 8)]
        else:
            grid = [Cell(b, t, n) for b in (1, 64) for t in (100, 1000) for n in (8, 16, 32)]
        rows = run_cells(grid, args, FORWARD, BACKWARD, report_progress)
        failed = [cell for cell, row in rows.items() if "oom" in row or "too big" in row]
        for cell in failed:
            print(f"B={cell.batch} T={cell.num_steps} n={cell.dim}: inputs do not fit, not run")
            del rows[cell]
        print_table_a(rows, peak)
        print_table_b(rows)
        print_targets(rows, [cell for cell in grid if cell in rows])
        print_table_c(args)
        if not args.quick:
            print_memory(args)


if __name__ == "__main__":
    main()
