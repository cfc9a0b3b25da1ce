"""Every block-tridiagonal log-determinant path and anchor, measured in one run.

Paths (log-determinant of the ``Tn x Tn`` precision of a linear-Gaussian chain, float32, CPU):

- ``dense``: ``MultivariateNormal(precision_matrix=J).log_prob`` on the assembled matrix
  (only where ``B (Tn)^3`` is small enough);
- ``banded``: ``scipy.linalg.cholesky_banded`` (LAPACK ``spbtrf``), one sequence at a time
  (looped over the batch), no autograd; the band storage is built outside the timing;
- ``hmm``: Pyro's ``GaussianHMM.log_prob`` on a chain of the same size (state and observation
  dim ``n``): its parallel-scan log-likelihood, the library anchor;
- ``sequential``: :mod:`pyro_dynvae.ops.block_tridiag` (``T``-step block Cholesky);
- ``cyclic``: :mod:`pyro_dynvae.ops.cyclic_reduction` (``log2 T`` levels);
- ``auto``: :func:`pyro_dynvae.ops.dispatch.logdet_with_selected_inverse_grad` (the dispatch).

"fwd" is the log-determinant; "fwd+bwd" adds the gradient with respect to the blocks: autograd
through the loop for ``sequential``/``hmm``/``dense``, the selected-inverse backward of
:mod:`pyro_dynvae.ops.logdet_autograd` for ``sequential+sel`` and ``cyclic``. Times are medians
in milliseconds, on one thread; ratios are ``other / cyclic`` (above 1: cyclic is faster).
``flops`` is the sequential block Cholesky's ``7/3 T n^3`` per sequence and ``%peak`` the
fraction of this machine's float32 matmul peak (measured here, same run) that the best
forward path reaches at that count.

Usage: ``python3 benchmarks/bench_algorithms.py [--quick] [--repeats 5]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyro.distributions as pdist  # noqa: E402
import scipy.linalg  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyro_dynvae.ops import block_tridiag as sequential  # noqa: E402
from pyro_dynvae.ops.cyclic_reduction import (  # noqa: E402
    cyclic_reduction_factor,
    cyclic_reduction_logdet,
)
from pyro_dynvae.ops.dispatch import (  # noqa: E402
    choose_algorithm,
    logdet_with_selected_inverse_grad,
)
from pyro_dynvae.ops.logdet_autograd import block_tridiag_logdet  # noqa: E402

DENSE_MAX_FLOPS = 3e9


def chain_precision(batch: int, num_steps: int, n: int, seed: int = 0):
    """Precision blocks of ``z_{t+1} = A_t z_t + w_t`` observed through ``N(z_t, I)``."""
    gen = torch.Generator().manual_seed(seed)
    trans = 0.9 * torch.linalg.qr(torch.randn(batch, num_steps - 1, n, n, generator=gen))[0]
    eye = torch.eye(n)
    diag = 2 * eye.expand(batch, num_steps, n, n).clone()
    diag[:, :-1] += trans.mT @ trans
    return diag, -trans, trans


def timeit(fn, repeats: int) -> float:
    """Median wall time in ms of ``repeats`` calls after a warm-up call (which is the only
    sample when it takes over 2 s)."""
    start = time.perf_counter()
    fn()
    warm_up = time.perf_counter() - start
    if warm_up > 2:
        return 1e3 * warm_up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / timeit(lambda: a @ b, repeats) / 1e6


def band_storage(diag: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Lower band storage ``ab[i - j, j] = J[i, j]`` (bandwidth ``2n - 1``) of one sequence."""
    num_steps, n = diag.shape[0], diag.shape[-1]
    band = np.zeros((2 * n, num_steps * n), diag.dtype)
    rows, cols = np.tril_indices(n)
    steps = np.arange(num_steps)[:, None]
    band[(rows - cols)[None], steps * n + cols[None]] = diag[:, rows, cols]
    rows, cols = (g.ravel() for g in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    steps = np.arange(num_steps - 1)[:, None]
    band[(n + rows - cols)[None], steps * n + cols[None]] = off[:, rows, cols]
    return band


def make_hmm(trans: torch.Tensor, num_steps: int, n: int):
    batch = trans.shape[0]
    eye = torch.eye(n)
    # Pyro right-multiplies, z_{t+1} = z_t @ M_t: pass A_t' (plus the step from the prior).
    matrices = torch.cat([trans.mT, trans.mT[:, -1:]], dim=1)
    init = pdist.MultivariateNormal(torch.zeros(n), scale_tril=eye)
    noise = pdist.MultivariateNormal(torch.zeros(n), scale_tril=eye).expand((batch, num_steps))
    obs = pdist.MultivariateNormal(torch.zeros(n), scale_tril=eye)
    return lambda m: pdist.GaussianHMM(init, m, noise, eye, obs, duration=num_steps), matrices


def measure_row(batch: int, num_steps: int, n: int, repeats: int) -> dict[str, float]:
    diag, off, trans = chain_precision(batch, num_steps, n)
    row: dict[str, float] = {}

    def grad_of(fn, *inputs):
        inputs = [x.detach().requires_grad_() for x in inputs]

        def run():
            torch.autograd.grad(fn(*inputs).sum(), inputs)

        return run

    def seq_logdet(d, b):
        return sequential.logdet(sequential.block_cholesky_ex(d, b)[0])

    def cyc_logdet(d, b):
        return cyclic_reduction_logdet(cyclic_reduction_factor(d, b))

    row["sequential"] = timeit(lambda: seq_logdet(diag, off), repeats)
    row["cyclic"] = timeit(lambda: cyc_logdet(diag, off), repeats)
    row["auto"] = timeit(lambda: logdet_with_selected_inverse_grad(diag, off)[0], repeats)
    bands = [band_storage(diag[i].numpy(), off[i].numpy()) for i in range(batch)]
    row["banded"] = timeit(
        lambda: [
            2 * np.log(scipy.linalg.cholesky_banded(ab, lower=True, check_finite=False)[0]).sum()
            for ab in bands
        ],
        repeats,
    )
    hmm, matrices = make_hmm(trans, num_steps, n)
    observations = torch.randn(batch, num_steps, n)
    row["hmm"] = timeit(lambda: hmm(matrices).log_prob(observations), repeats)
    dense_flops = batch * (num_steps * n) ** 3 / 3
    if dense_flops <= DENSE_MAX_FLOPS:
        precision = sequential.dense_from_blocks(diag, off)
        zeros = torch.zeros(num_steps * n)

        def dense_logdet(p):
            return pdist.MultivariateNormal(zeros, precision_matrix=p).log_prob(zeros)

        row["dense"] = timeit(lambda: dense_logdet(precision), repeats)
        row["dense bwd"] = timeit(grad_of(dense_logdet, precision), repeats)
    row["sequential bwd"] = timeit(grad_of(seq_logdet, diag, off), repeats)
    row["sequential+sel bwd"] = timeit(
        grad_of(lambda d, b: block_tridiag_logdet(d, b, algorithm="sequential")[0], diag, off),
        repeats,
    )
    row["cyclic bwd"] = timeit(
        grad_of(lambda d, b: block_tridiag_logdet(d, b, algorithm="cyclic")[0], diag, off),
        repeats,
    )
    row["hmm bwd"] = timeit(grad_of(lambda m: hmm(m).log_prob(observations), matrices), repeats)
    row["auto is"] = choose_algorithm(diag, off)
    return row


def _target(label: str, ratio: float, bound: float, at_most: bool = False) -> str:
    met = ratio <= bound if at_most else ratio >= bound
    relation = "<=" if at_most else ">="
    return f"{label} = {ratio:.2f} (target {relation} {bound:g}: {'met' if met else 'MISSED'})"


def memory_probe(batch: int, num_steps: int, n: int, algorithm: str) -> None:
    """Run one forward+backward with the selected-inverse backward and print the growth of the
    peak resident memory in MiB and the time in ms."""

    def peak_kib() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM in /proc/self/status")

    diag, off, _ = chain_precision(batch, num_steps, n)
    diag.requires_grad_()
    off.requires_grad_()
    before = peak_kib()
    start = time.perf_counter()
    value, failed = logdet_with_selected_inverse_grad(diag, off, algorithm=algorithm)
    value.sum().backward()
    elapsed = time.perf_counter() - start
    assert bool((failed < 0).all()) and bool(torch.isfinite(diag.grad).all())
    print(f"{(peak_kib() - before) / 1024:.1f} {elapsed * 1e3:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid (smoke run)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-probe", nargs=4, metavar=("B", "T", "N", "ALGORITHM"))
    parser.add_argument(
        "--memory-steps",
        type=int,
        nargs="+",
        default=[1000, 2500, 10000],
        help="T values of the memory check at B=64, n=16 (peak about 12 n x n float32 blocks "
        "per step and sequence for cyclic: 7.5 GB at T=10000)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.memory_probe:
        batch, num_steps, n, algorithm = args.memory_probe
        memory_probe(int(batch), int(num_steps), int(n), algorithm)
        return

    peak = matmul_peak_gflops()
    print(f"torch {torch.__version__}, 1 thread, float32 CPU; matmul peak {peak:.1f} GFLOP/s")
    print("(a shared, noisy machine: read ratios, not absolute times)\n")
    grid = (
        [(1, 100, 8), (64, 100, 8)]
        if args.quick
        else [(b, t, n) for b in (1, 64) for t in (100, 1000) for n in (8, 16, 32)]
    )
    fwd = ["dense", "banded", "hmm", "sequential", "cyclic", "auto"]
    bwd = ["dense bwd", "hmm bwd", "sequential bwd", "sequential+sel bwd", "cyclic bwd"]
    header = f"{'B':>3} {'T':>5} {'n':>3} {'MFLOP':>7} | " + " ".join(f"{k:>10}" for k in fwd)
    rows = {}
    print("forward (log-determinant), ms; auto = the dispatched path")
    print(header + f" | {'best %peak':>10} {'auto is':>10}")
    for batch, num_steps, n in grid:
        row = rows[batch, num_steps, n] = measure_row(batch, num_steps, n, args.repeats)
        flops = batch * 7 / 3 * num_steps * n**3
        best = min(row[k] for k in ("sequential", "cyclic"))
        cells = " ".join(f"{row[k]:>10.2f}" if k in row else f"{'-':>10}" for k in fwd)
        frac = flops / (best * 1e-3) / (peak * 1e9)
        print(
            f"{batch:>3} {num_steps:>5} {n:>3} {flops / 1e6:>7.1f} | {cells} | "
            f"{100 * frac:>9.1f}% {row['auto is']:>10}"
        )
    print("\nforward + backward, ms")
    print(f"{'B':>3} {'T':>5} {'n':>3} | " + " ".join(f"{k:>18}" for k in bwd))
    for (batch, num_steps, n), row in rows.items():
        cells = " ".join(f"{row[k]:>18.2f}" if k in row else f"{'-':>18}" for k in bwd)
        print(f"{batch:>3} {num_steps:>5} {n:>3} | {cells}")
    print("\nratios other / cyclic (forward; fwd+bwd in the last two columns)")
    names = ["banded", "hmm", "sequential", "auto"]
    print(
        f"{'B':>3} {'T':>5} {'n':>3} | "
        + " ".join(f"{k:>10}" for k in names)
        + f" {'seq bwd':>10} {'hmm bwd':>10}"
    )
    for (batch, num_steps, n), row in rows.items():
        ratios = " ".join(f"{row[k] / row['cyclic']:>10.2f}" for k in names)
        print(
            f"{batch:>3} {num_steps:>5} {n:>3} | {ratios} "
            f"{row['sequential bwd'] / row['cyclic bwd']:>10.2f} "
            f"{row['hmm bwd'] / row['cyclic bwd']:>10.2f}"
        )

    print("\nissue 6 targets (auto = the dispatched path; B=1 targets on cyclic)")
    for (batch, num_steps, n), row in rows.items():
        if batch == 1 and num_steps == 1000 and n in (8, 32):
            print(
                f"B=1 T=1000 n={n}: "
                + "; ".join(
                    [
                        _target("cyclic/banded", row["cyclic"] / row["banded"], 2, at_most=True),
                        _target("sequential/cyclic", row["sequential"] / row["cyclic"], 3),
                        _target(
                            "fwd+bwd sequential/cyclic",
                            row["sequential bwd"] / row["cyclic bwd"],
                            2,
                        ),
                    ]
                )
            )
        if batch == 64:
            print(
                f"B=64 T={num_steps} n={n}: "
                + "; ".join(
                    [
                        _target("banded/auto", row["banded"] / row["auto"], 1),
                        _target("hmm/auto", row["hmm"] / row["auto"], 3),
                    ]
                )
            )

    if not args.quick:
        print("\nB=64, n=16, forward+backward: peak resident memory growth (MiB), ms")
        for algorithm in ("sequential", "cyclic"):
            for num_steps in args.memory_steps:
                command = [sys.executable, __file__, "--memory-probe", "64", str(num_steps)]
                out = subprocess.run(
                    command + ["16", algorithm], capture_output=True, text=True, check=True
                ).stdout.split()
                blocks_per_step = float(out[0]) * 2**20 / num_steps / 64 / 16**2 / 4
                print(
                    f"{algorithm:>10} T={num_steps:>5}: {float(out[0]):8.1f} MiB, {out[1]:>6} ms,"
                    f" {blocks_per_step:.1f} float32 n x n blocks per step and sequence"
                )


if __name__ == "__main__":
    main()
