"""
Compare every model variant and baseline on the same data, budget and seeds.

Trains each variant of :data:`pyro_dynvae.models.VARIANTS` on dynamic sprites over a drifting
background (32x32) and on Moving MNIST (one digit, 32x32), scores every disentanglement metric
and dynamics diagnostic on held-out sequences and writes ``table.md``, ``table.csv`` and
``figures/`` into ``--out`` (mean +- std over seeds). Interrupted studies resume: rerun the
same command. See :mod:`pyro_dynvae.assessment.study` for what is measured.

    python -m benchmarks.compare_variants --out compare_out --jobs 2   # 13 min, 2 idle cores
    python -m benchmarks.compare_variants --variants hierarchical slow_l1 vae --seeds 0 1 2
    python -m benchmarks.compare_variants --budget 8 --out compare_gpu  # scaled up, e.g. GPU
"""

import sys

from pyro_dynvae.assessment.study import main

if __name__ == "__main__":
    sys.exit(main())
