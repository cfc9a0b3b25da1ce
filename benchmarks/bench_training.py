"""
Training throughput of a study cell and of the example, and where one step's time goes.

Two configurations of the ``hierarchical`` variant: ``study`` (a cell of
``pyro-dynvae compare``: sprites over a drifting background, 32x32, T=10, batch 16, n=8, conv
nets, Gaussian likelihood with a learned scale) and ``example`` (``TrainConfig()``'s defaults:
one digit, 64x64, T=10, batch 16, n=16, Bernoulli likelihood, issue 13's example configuration;
``examples/moving_mnist.py`` ran it until 3 Dec 2026 with the narrower conv net that
``--conv-channels 8 16 32`` times, and now trains a 32x32 canvas).
Two paths, measured interleaved in the same run: ``reference``, the step as it was before
issue 13 (``StepOptions.reference()``), and ``fast``, the default (``StepOptions()``: memoised
training data, foreach Adam, the native kernel for the decoder's last layer, channels-last
convolution weights, per-latent chains on the dense Cholesky route, the shared-scale Gaussian
likelihood). The fast path's data come from a warm cache, the steady state after the
first epoch (a budget-1 study cell renders during its first 128 of 600 steps).

Per configuration, thread count and path the script prints

- the Lightning step (``pyro_dynvae.train.fit``, the median time between successive training
  batches, so it includes loading the batch and every hook): ms per step, sequences per second
  and the speed-up over ``reference`` (wall clock and CPU time; one thread's CPU time is the
  steadier of the two on a machine shared with other jobs);
- where the time goes, from a hand-written loop doing the same work on the same module:
  ``data`` (next batch of the training loader), ``encoder`` and ``decoder`` (the frame nets'
  forward), ``BlockTridiagMVN`` (construction, sampling, densities and the KL between the two,
  forward), ``Pyro+ELBO`` (the rest of the loss's forward: Pyro's tracing and bookkeeping, the
  small nets, the other distributions), ``backward`` (all of it), ``optimiser`` (clipping, Adam,
  zeroing) and ``Lightning`` (the Lightning step minus the loop's);
- the frame nets' share of it: the loop's time minus the same loop's with the encoder and decoder
  replaced by their outputs on the first batch, i.e. the nets' forward and backward.

Times are medians over ``--rounds`` interleaved rounds. ``--conv-channels 8 16 32`` adds a row
for the fast path with those conv widths: a different, smaller model, whose scores have to be
compared separately before it counts. ``study-budget8`` is the study's cell at ``--budget 8``
(the same step, 8x the sequences and steps); for both study configurations the script estimates
the training hours of the default study (10 variants, 2 datasets, 3 seeds) in one process.
``--device cuda`` times ``study`` and ``study-budget8`` on the GPU. ``--variants`` prints the
older table instead: every variant's SVI step against the mean-field guide's (64x64, T=20).

    python -m benchmarks.bench_training                          # both configs, 1 and 2 threads
    python -m benchmarks.bench_training --configs study --threads 1 --rounds 3
    python -m benchmarks.bench_training --conv-channels 8 16 32  # also a smaller conv net
    python -m benchmarks.bench_training --device cuda --threads 1  # GPU: study and --budget 8
    python -m benchmarks.bench_training --variants hierarchical meanfield
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

import pyro
import pyro.infer.trace_mean_field_elbo as trace_mean_field_elbo
import torch
from lightning.pytorch.callbacks import Callback

from pyro_dynvae import loading
from pyro_dynvae import train as training
from pyro_dynvae.assessment import study
from pyro_dynvae.config import TrainConfig
from pyro_dynvae.data import MovingMNIST
from pyro_dynvae.distributions import BlockTridiagMVN, ChainProductMVN
from pyro_dynvae.models import VARIANTS, build_model

pyro.settings.set(module_local_params=True)

TARGET_RATIO = 1.2
PATHS = {"reference": training.StepOptions.reference(), "fast": training.StepOptions()}
CATEGORIES = ("data", "encoder", "decoder", "BlockTridiagMVN", "Pyro+ELBO", "backward",
              "optimiser", "Lightning")
WARMUP_STEPS = 5


# ----- configurations ----------------------------------------------------------------------------
def study_config(budget: study.StudyBudget) -> TrainConfig:
    """A cell of the study at ``budget``: sprites, hierarchical (``study.train_config``)."""
    return study.train_config("sprites", "hierarchical", 0, budget)


@dataclasses.dataclass
class Setup:
    """One configuration to time: its name, its config (cut to the timed steps) and data."""

    name: str
    config: TrainConfig
    train_data: torch.utils.data.Dataset
    val_data: torch.utils.data.Dataset


def make_setup(name: str, config: TrainConfig, device: str, steps: int) -> Setup:
    """``config`` for ``WARMUP_STEPS + steps`` steps on ``device``, without periodic validation or
    checkpoints, and its datasets."""
    config = dataclasses.replace(
        config, max_steps=WARMUP_STEPS + steps, val_every=0, checkpoint_every=10**6,
        accelerator="gpu" if device == "cuda" else "cpu", devices="1", num_val_sequences=16,
    )
    return Setup(name, config, training.make_dataset(config, "train"),
                 training.make_dataset(config, "test"))


# ----- timing ------------------------------------------------------------------------------------
class Clock:
    """Wall and CPU seconds; waits for the GPU first on CUDA."""

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"

    def __call__(self) -> tuple[float, float]:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter(), time.process_time()


class StepTimer(Callback):
    """Wall and CPU time between successive ``on_train_batch_end`` calls after the warm-up.

    The median over steps: a benchmark's short run logs every 2 steps, where a real run
    (``fit``'s ``log_every_n_steps``, 50 from 500 steps on) logs every 50th, so the mean would
    charge each step with 25 times its share of the logging.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock, self.marks = clock, []

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= WARMUP_STEPS:
            self.marks.append(self.clock())

    def per_step(self) -> tuple[float, float]:
        intervals = list(zip(self.marks, self.marks[1:], strict=False))
        return tuple(statistics.median(end[k] - start[k] for start, end in intervals)
                     for k in (0, 1))


class Stopwatch:
    """Accumulates wall seconds per label; a label's nested regions count once."""

    def __init__(self, clock: Clock) -> None:
        self.clock, self.totals, self.depth, self.start = clock, {}, {}, {}

    def enter(self, label: str) -> None:
        self.depth[label] = self.depth.get(label, 0) + 1
        if self.depth[label] == 1:
            self.start[label] = self.clock()[0]

    def exit(self, label: str) -> None:
        self.depth[label] -= 1
        if not self.depth[label]:
            self.totals[label] = self.totals.get(label, 0.0) + self.clock()[0] - self.start[label]

    def timed(self, label: str, function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            self.enter(label)
            try:
                return function(*args, **kwargs)
            finally:
                self.exit(label)

        return wrapper


@contextlib.contextmanager
def patched(target, name: str, value) -> Iterator[None]:
    """``target.name = value`` inside the block, restored after."""
    original = target.__dict__[name]
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


@contextlib.contextmanager
def timed_components(dynvae: torch.nn.Module, watch: Stopwatch) -> Iterator[None]:
    """Time the frame nets (module hooks) and every BlockTridiagMVN call and KL (patches)."""
    handles = []
    for label, module in (("encoder", dynvae.guide.encoder), ("decoder", dynvae.model.decoder)):
        handles.append(module.register_forward_pre_hook(lambda *_, lab=label: watch.enter(lab)))
        handles.append(module.register_forward_hook(lambda *_, lab=label: watch.exit(lab)))
    label = "BlockTridiagMVN"
    kl = trace_mean_field_elbo.kl_divergence

    def kl_divergence(q, p):
        gaussian = isinstance(q, BlockTridiagMVN | ChainProductMVN)
        return (watch.timed(label, kl) if gaussian else kl)(q, p)

    with contextlib.ExitStack() as stack:
        for cls in (BlockTridiagMVN, ChainProductMVN):
            for name in ("__init__", "rsample", "log_prob", "entropy"):
                method = cls.__dict__[name]
                stack.enter_context(patched(cls, name, watch.timed(label, method)))
        for name in ("from_info", "from_markov_chain"):
            method = BlockTridiagMVN.__dict__[name].__func__
            stack.enter_context(
                patched(BlockTridiagMVN, name, classmethod(watch.timed(label, method)))
            )
        stack.enter_context(patched(trace_mean_field_elbo, "kl_divergence", kl_divergence))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def model_for(setup: Setup, conv_channels: Sequence[int] | None) -> torch.nn.Module:
    """The setup's model (seeded), with other conv widths if ``conv_channels`` is given."""
    config = setup.config
    if conv_channels:
        overrides = dict(config.model_overrides, conv_channels=list(conv_channels))
        config = dataclasses.replace(config, model_overrides=overrides)
    return training.make_model(config, channels=setup.train_data[0][0].shape[1])


def lightning_step(setup: Setup, options: training.StepOptions,
                   conv_channels: Sequence[int] | None, clock: Clock) -> tuple[float, float]:
    """Wall and CPU seconds per Lightning training step (``fit``)."""
    timer = StepTimer(clock)
    with tempfile.TemporaryDirectory() as run_dir, study._quiet():
        training.fit(model_for(setup, conv_channels), setup.train_data, setup.val_data,
                     setup.config, run_dir, callbacks=[timer], enable_progress_bar=False,
                     step_options=options)
    return timer.per_step()


@contextlib.contextmanager
def without_frame_nets(dynvae: torch.nn.Module) -> Iterator[None]:
    """The encoder and decoder replaced by their first outputs (detached leaves that take the
    gradient), so the loop times everything but the frame nets' forward and backward."""
    outputs = {}
    with contextlib.ExitStack() as stack:
        for label, module in (("encoder", dynvae.guide.encoder), ("decoder", dynvae.model.decoder)):
            forward = module.forward

            def replaced(inputs, label=label, forward=forward):
                if label not in outputs:
                    outputs[label] = forward(inputs).detach().requires_grad_()
                return outputs[label]

            module.forward = replaced
            stack.callback(delattr, module, "forward")
        yield


def loop_breakdown(setup: Setup, options: training.StepOptions,
                   conv_channels: Sequence[int] | None, clock: Clock,
                   frame_nets: bool = True) -> dict[str, float]:
    """Seconds per step of each part of the Lightning step's work, in a hand-written loop
    (``frame_nets=False``: with the encoder and decoder replaced by their first outputs)."""
    config, device = setup.config, "cuda" if clock.cuda else "cpu"
    dynvae = model_for(setup, conv_channels)
    module = training.DynamicsVAEModule(dynvae, setup.train_data, setup.val_data, config, options)
    module._set_memory_format(torch.device(device))  # what fit's set-up does
    module.to(device)
    sampler = loading.StepBatchSampler(len(setup.train_data), config.batch_size, config.seed)
    batches = iter(loading.seeded_loader(training._memoized(setup.train_data, options.cache_bytes),
                                         config.seed, batch_sampler=sampler))
    loss_fn = module.loss_fn
    with torch.no_grad():
        loss_fn(loading.frames_of(next(batches)).to(device))  # lazy parameters
    optimizer = module.configure_optimizers()
    params = list(loss_fn.parameters())
    watch = Stopwatch(clock)
    totals = dict.fromkeys(("data", "forward", "backward", "optimiser"), 0.0)
    nets = contextlib.nullcontext() if frame_nets else without_frame_nets(dynvae)
    with options.applied(), timed_components(dynvae, watch), nets:
        for step in range(config.max_steps):
            if step == WARMUP_STEPS:
                totals = dict.fromkeys(totals, 0.0)
                watch.totals.clear()
            t0 = clock()[0]
            frames = loading.frames_of(next(batches)).to(device)
            t1 = clock()[0]
            loss = loss_fn(frames)
            t2 = clock()[0]
            loss.backward()
            t3 = clock()[0]
            torch.nn.utils.clip_grad_norm_(params, config.gradient_clip_val)
            optimizer.step()
            optimizer.zero_grad()
            t4 = clock()[0]
            for key, start, end in (("data", t0, t1), ("forward", t1, t2),
                                    ("backward", t2, t3), ("optimiser", t3, t4)):
                totals[key] += end - start
    steps = config.max_steps - WARMUP_STEPS
    parts = {key: watch.totals.get(key, 0.0) / steps for key in CATEGORIES[1:4]}
    parts["Pyro+ELBO"] = totals["forward"] / steps - sum(parts.values())
    return {"data": totals["data"] / steps, **parts, "backward": totals["backward"] / steps,
            "optimiser": totals["optimiser"] / steps}


def warm_cache(setup: Setup, options: training.StepOptions) -> None:
    """Render every training sequence into the fast path's cache (its steady state)."""
    cached = training._memoized(setup.train_data, options.cache_bytes)
    for start in range(0, len(cached), 256):
        cached.__getitems__(range(start, min(start + 256, len(cached))))


def measure(setup: Setup, paths: dict[str, tuple[training.StepOptions, Sequence[int] | None]],
            rounds: int, clock: Clock) -> dict[str, dict[str, float]]:
    """
    Interleaved rounds of every path: the paths' Lightning steps one after the other, then their
    loops, in the reverse order every other round (so a slow drift of the machine's speed
    cancels). Medians over rounds of each time and of each round's speed-up over ``reference``.
    """
    for options, _ in paths.values():
        if options.cache_bytes:
            warm_cache(setup, options)
    samples = {name: [] for name in paths}
    for round_index in range(rounds):
        order = list(paths)[:: -1 if round_index % 2 else 1]
        steps = {name: lightning_step(setup, *paths[name], clock) for name in order}
        for name in order:
            parts = loop_breakdown(setup, *paths[name], clock)
            rest = loop_breakdown(setup, *paths[name], clock, frame_nets=False)
            frame_nets = sum(parts.values()) - sum(rest.values())
            wall, cpu = steps[name]
            parts["Lightning"] = wall - sum(parts.values())
            speedup = steps["reference"][0] / wall, steps["reference"][1] / cpu
            samples[name].append({"step": wall, "cpu": cpu, **parts, "speedup": speedup[0],
                                  "speedup_cpu": speedup[1], "frame nets": frame_nets})
    return {name: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
            for name, runs in samples.items()}


# ----- reports -----------------------------------------------------------------------------------
def print_tables(results: dict[tuple[str, int], dict[str, dict[str, float]]],
                 batch_size: int) -> None:
    print("\nLightning training step (medians over interleaved rounds of the time and of the"
          " round's speed-up = reference / path):")
    print("\n| config | threads | path | ms/step | seq/s | speed-up (wall) | speed-up (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for (name, threads), paths in results.items():
        for path, times in paths.items():
            print(f"| {name} | {threads} | {path} | {1e3 * times['step']:.1f} | "
                  f"{batch_size / times['step']:.0f} | {times['speedup']:.2f}x | "
                  f"{times['speedup_cpu']:.2f}x |")
    print("\nWhere a step's time goes, ms (wall; Lightning = its step minus the loop's parts):")
    print("\n| config | threads | path | " + " | ".join(CATEGORIES) + " | step |")
    print("|---" * (len(CATEGORIES) + 4) + "|")
    for (name, threads), paths in results.items():
        for path, times in paths.items():
            cells = " | ".join(f"{1e3 * times[key]:.1f}" for key in (*CATEGORIES, "step"))
            print(f"| {name} | {threads} | {path} | {cells} |")
    print("\nThe frame nets' share: forward and backward of the encoder and decoder, ms (the loop"
          " minus the loop with the nets replaced by their outputs):\n")
    for (name, threads), paths in results.items():
        shares = ", ".join(f"{path} {1e3 * times['frame nets']:.1f} of {1e3 * times['step']:.1f}"
                           for path, times in paths.items())
        print(f"  {name}, {threads} thread(s): {shares}")


def study_cells() -> int:
    """Cells of the default study: its variants x datasets x seeds."""
    return len(study.DEFAULT_VARIANTS) * len(study.STUDY_DATASETS) * len(study.DEFAULT_SEEDS)


def study_hours(step_seconds: float, budget: study.StudyBudget) -> float:
    """Training hours of the default study (:func:`study_cells`) in one process, at
    ``step_seconds`` a step (steps only: no set-up, checkpoints or scoring)."""
    return study_cells() * budget.max_steps * step_seconds / 3600


BUDGETS = {"study": 1, "study-budget8": 8}


def config_of(name: str) -> TrainConfig:
    """The training configuration called ``name`` (a key of :data:`BUDGETS` or ``example``)."""
    if name == "example":  # issue 13's example configuration: TrainConfig's defaults
        return TrainConfig()
    return study_config(study.StudyBudget.scaled(BUDGETS[name]))


def throughput(args: argparse.Namespace) -> None:
    """The throughput tables for ``args`` (see the module docstring)."""
    clock = Clock(args.device)
    paths = {name: (options, None) for name, options in PATHS.items()}
    if args.conv_channels:
        label = "fast, conv " + "-".join(map(str, args.conv_channels))
        paths[label] = (PATHS["fast"], args.conv_channels)
    configs = args.configs or (["study", "study-budget8"] if args.device == "cuda"
                               else ["study", "example"])
    setups = [make_setup(name, config_of(name), args.device, args.steps) for name in configs]
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
          + f"; {args.rounds} rounds of {args.steps} steps after {WARMUP_STEPS} warm-up steps")
    results = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for setup in setups:
            times = results[setup.name, threads] = measure(setup, paths, args.rounds, clock)
            steps = ", ".join(f"{path} {1e3 * t['step']:.1f} ms ({t['speedup']:.2f}x)"
                              for path, t in times.items())
            print(f"  {setup.name}, {threads} thread(s): {steps}", flush=True)
    print_tables(results, setups[0].config.batch_size)
    for (name, threads), times in results.items():
        if name in BUDGETS:
            budget = study.StudyBudget.scaled(BUDGETS[name])
            cells = study_cells()
            hours = ", ".join(f"{path} {study_hours(t['step'], budget):.2f} h"
                              for path, t in times.items())
            print(f"\nthe default study at --budget {BUDGETS[name]} ({cells} cells of "
                  f"{budget.max_steps} steps), training steps only, one process, {threads} "
                  f"thread(s): {hours}")


# ----- the older table: every variant against the mean-field guide ------------------------------
def seconds_per_step(
    variant: str, frames: torch.Tensor, latent_dim: int, steps: int, repeats: int
) -> float:
    """Median over ``repeats`` blocks of ``steps`` SVI steps, after one warm-up step."""
    torch.manual_seed(0)
    dynvae = build_model(
        variant,
        image_size=frames.shape[-1],
        channels=frames.shape[2],
        latent_dim=latent_dim,
        num_sequences=frames.shape[0],
    )
    loss_fn = dynvae.make_elbo()(dynvae.model, dynvae.guide)
    loss_fn(frames)  # create lazy parameters
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad()
        loss_fn(frames).backward()
        optimizer.step()

    step()
    blocks = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        blocks.append((time.perf_counter() - start) / steps)
    return statistics.median(blocks)


def variant_table(args: argparse.Namespace) -> None:
    """Every variant's SVI step against the mean-field guide's (the structured guide's cost)."""
    torch.set_num_threads(args.threads[0])
    variants = list(dict.fromkeys(["meanfield", *args.variants]))  # the reference first
    batch_size, image_size, num_frames = 16, 64, 20
    data = MovingMNIST(num_sequences=batch_size, num_frames=num_frames, image_size=image_size)
    frames = data.get_batch(range(batch_size))[0]
    print(f"SVI step, {image_size}x{image_size}, T={num_frames}, batch {batch_size}, n=8, torch "
          f"threads {torch.get_num_threads()} (shared machine: timings are noisy)")
    print(f"{'variant':<16}{'s/step':>10}{'seq/s':>10}{'vs meanfield':>14}")
    times = {}
    for variant in variants:
        times[variant] = seconds_per_step(variant, frames, 8, args.steps, args.rounds)
        print(f"{variant:<16}{times[variant]:>10.3f}{batch_size / times[variant]:>10.1f}"
              f"{times[variant] / times['meanfield']:>13.2f}x")
    if "hierarchical" in times:
        ratio = times["hierarchical"] / times["meanfield"]
        verdict = "meets" if ratio <= TARGET_RATIO else "misses"
        print(f"structured guide / meanfield guide (hierarchical / meanfield): {ratio:.2f}x "
              f"({verdict} the {TARGET_RATIO}x target)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--configs", nargs="+", choices=["study", "study-budget8", "example"],
                        help="configurations to time (default: study and example on CPU, "
                        "study and study-budget8 on CUDA)")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2],
                        help="torch intra-op thread counts to time")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per path and round")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--conv-channels", nargs="+", type=int, default=None,
                        help="also time the fast path with these conv widths (another model)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                        help="print the variants-against-meanfield table instead")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.variants:
        variant_table(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
