"""Smoke tests of ``benchmarks/bench_block_tridiag.py``: every path, anchor, table and target
line is printed, and the paths agree on ``log|J|``. No timing is asserted."""

import re

import pytest
import torch

from benchmarks import bench_block_tridiag as bench

FAST = ["--repeats", "1", "--budget", "0.01"]


@pytest.mark.slow
def test_quick_run_prints_every_path_table_and_target(capsys):
    bench.main(["--quick", *FAST])
    out = capsys.readouterr().out
    for name in (*bench.FORWARD, *bench.BACKWARD, *bench.DISTRIBUTION):
        assert f" {name} " in out or f" {name}\n" in out, name
    for heading in ("matmul peak", "Table A1", "Table A2", "Table B", "targets", "Table C"):
        assert heading in out
    for column in ("MFLOP", "fastest", "%peak", "auto is", "rel.err"):
        assert column in out
    targets = [
        "B=1 T=1000 n=8: cyclic/banded = ",
        "sequential/cyclic = ",
        "B=1 T=1000 n=32: not in this grid",
        "B=1 T=1000 n=8 forward+backward: seq-autograd/cyclic-selinv = ",
        "B=64 T=100 n=8: banded/auto = ",
        "hmm/auto = ",
    ]
    for target in targets:
        assert target in out, target
    assert len(re.findall(r"\((?:target [<>]=? [\d.]+): (?:met|MISSED)\)", out)) == 5
    # Table A1's rel.err: dense, banded, cyclic and auto give sequential's log|J|.
    table_a1 = out.split("Table A1")[1].split("Table A2")[0].strip().splitlines()[2:]
    assert len(table_a1) == 2
    assert all(float(line.split()[-1]) < 1e-4 for line in table_a1)


@pytest.mark.slow
def test_gpu_grid_and_memory_probe_run_on_cpu(capsys):
    bench.main(["--gpu-grid", "--device", "cpu", "--time-limit", "0", *FAST])
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| B | T | n |"))
    for name in (*bench.GPU_FORWARD, *bench.GPU_BACKWARD):
        assert name in header
    assert re.search(r"^\| 1 \| 100 \| 8 \| \w+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", out, re.M)
    assert "time limit (0 s) reached" in out
    bench.main(["--memory-probe", "20", "cyclic"])
    growth, _, finite = capsys.readouterr().out.split()
    assert float(growth) >= 0 and finite == "True"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
@pytest.mark.parametrize("argv", [["--device", "cuda"], ["--gpu-grid"]])
def test_cuda_without_a_gpu_is_a_clear_error(argv, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert "CUDA is not available" in capsys.readouterr().err
