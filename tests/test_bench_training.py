"""``benchmarks/bench_training.py``: its tables, its time accounting and its clean-up. No timing
is asserted."""

import re

import pyro
import pytest
import torch

from benchmarks import bench_training as bench
from pyro_dynvae.assessment import study
from pyro_dynvae.distributions import BlockTridiagMVN
from pyro_dynvae.models import build_model


class FakeClock:
    """Each reading advances wall time by one second (CPU time stays 0)."""

    cuda = False

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> tuple[float, float]:
        self.now += 1.0
        return self.now, 0.0


def test_stopwatch_counts_nested_regions_of_a_label_once():
    watch = bench.Stopwatch(FakeClock())
    inner = watch.timed("a", lambda: None)
    watch.timed("a", inner)()  # the clock is read on entering and leaving the outer region only
    assert watch.totals == {"a": 1.0}
    watch.timed("a", watch.timed("b", lambda: None))()  # a: readings 3 and 6, b: 4 and 5
    assert watch.totals == {"a": 4.0, "b": 1.0}


def tiny_model():
    """A seeded 16x16 conv ``hierarchical`` model, its ELBO and a batch of frames."""
    pyro.settings.set(module_local_params=True)
    torch.manual_seed(0)
    dynvae = build_model("hierarchical", image_size=16, latent_dim=3, conv_channels=[4, 8])
    return dynvae, dynvae.make_elbo()(dynvae.model, dynvae.guide), torch.rand(2, 4, 1, 16, 16)


def test_timed_components_see_the_nets_and_the_distribution_and_clean_up():
    dynvae, loss_fn, frames = tiny_model()
    originals = {name: BlockTridiagMVN.__dict__[name]
                 for name in ("__init__", "rsample", "from_info", "from_markov_chain")}
    watch = bench.Stopwatch(bench.Clock("cpu"))
    with bench.timed_components(dynvae, watch):
        loss = loss_fn(frames)
    assert set(watch.totals) == {"encoder", "decoder", "BlockTridiagMVN"}
    assert all(total > 0 for total in watch.totals.values())
    assert not any(watch.depth.values())  # every region closed
    # afterwards nothing is timed any more, and the class is as it was
    before = dict(watch.totals)
    assert torch.isfinite(loss) and torch.isfinite(loss_fn(frames))
    assert watch.totals == before
    assert all(BlockTridiagMVN.__dict__[name] is method for name, method in originals.items())
    assert not dynvae.guide.encoder._forward_hooks and not dynvae.model.decoder._forward_hooks


def test_without_frame_nets_replaces_the_nets_by_their_outputs_and_restores_them():
    dynvae, loss_fn, frames = tiny_model()
    loss_fn(frames)  # lazy parameters
    encoder, decoder = dynvae.guide.encoder, dynvae.model.decoder
    calls = []  # the nets' own layers run only when their original forward does
    for module in (encoder.convs, decoder.deconvs):
        module.register_forward_pre_hook(lambda module, _: calls.append(module))

    def gradients_reached():
        for param in loss_fn.parameters():
            param.grad = None
        loss_fn(frames).backward()
        return {name for name, param in loss_fn.named_parameters() if param.grad is not None}

    with bench.without_frame_nets(dynvae):
        reached = [gradients_reached() for _ in range(2)]
    # the nets ran once (their first outputs are reused); the rest still gets its gradients
    assert len(calls) == 2 and reached[0] == reached[1]
    assert not any("encoder" in name or "decoder" in name for name in reached[1])
    assert any(name.startswith("guide.") for name in reached[1])
    assert "forward" not in encoder.__dict__ and "forward" not in decoder.__dict__
    everything = gradients_reached()
    assert any("encoder" in name for name in everything) and reached[1] < everything


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--device", "cuda"])
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.slow
def test_study_run_prints_both_tables_and_the_study_hours(capsys):
    bench.main(["--configs", "study", "--threads", "1", "--rounds", "1", "--steps", "2"])
    out = capsys.readouterr().out
    rows = re.findall(r"^\| study \| 1 \| (reference|fast) \|(.*)\|$", out, re.M)
    assert [path for path, _ in rows] == ["reference", "fast"] * 2
    assert rows[0][1].endswith("| 1.00x | 1.00x ")  # the reference against itself
    breakdown = [cells.split("|") for path, cells in rows[2:]]
    assert all(len(cells) == len(bench.CATEGORIES) + 1 for cells in breakdown)
    for heading in bench.CATEGORIES:
        assert f" {heading} |" in out
    share = re.search(r"study, 1 thread\(s\): reference ([\d.]+) of ([\d.]+), fast", out)
    assert share and 0 < float(share[1]) < float(share[2])  # the nets: part of the step
    cells = len(study.DEFAULT_VARIANTS) * len(study.STUDY_DATASETS) * len(study.DEFAULT_SEEDS)
    steps = study.StudyBudget().max_steps
    assert re.search(rf"--budget 1 \({cells} cells of {steps} steps\).*reference [\d.]+ h, "
                     r"fast [\d.]+ h", out)
