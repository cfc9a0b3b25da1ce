"""The training-step speed-ups of issue 13 compute what the reference step computes.

Each fast path is compared with ``StepOptions.reference()`` (the step as it was before): the
same ELBO and gradients on the same batch, weights and Monte Carlo noise, the same items from the
memoised dataset as from rendering, and the same weights after Lightning training steps. No
timing is asserted here; ``benchmarks/bench_training.py`` measures the speed.
"""

import pyro
import pytest
import torch
from oracles import graph_nodes
from torch.utils.data import TensorDataset

from pyro_dynvae.config import TrainConfig
from pyro_dynvae.data import DynamicSprites, MemoizedSequences, MovingMNIST
from pyro_dynvae.distributions import BlockTridiagMVN, ChainProductMVN
from pyro_dynvae.models import build_model
from pyro_dynvae.models.dynamics import chain_layout
from pyro_dynvae.nets import ConvDecoder, conv_kernels
from pyro_dynvae.train import StepOptions, _memoized, fit, make_dataset, make_model

PHASE_NODE = "_PhaseConvTranspose2dBackward"


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def loss_and_gradients(dynvae, frames: torch.Tensor, options: StepOptions, seed: int = 0):
    loss_fn = dynvae.make_elbo()(dynvae.model, dynvae.guide)
    for param in loss_fn.parameters():
        param.grad = None
    torch.manual_seed(seed)
    with options.applied():
        loss = loss_fn(frames)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in loss_fn.named_parameters()}


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_decoder_kernels_agree_in_value_and_gradients(image_size, channels):
    torch.manual_seed(0)
    decoder = ConvDecoder(image_size, channels, latent_dim=8)
    latents = torch.randn(5, 8, requires_grad=True)
    weights = torch.randn(5, channels, image_size, image_size)
    results = {}
    for kernels in ("torch", "auto"):
        with conv_kernels(kernels):
            output = decoder(latents)
        grads = torch.autograd.grad((output * weights).sum(), [latents, *decoder.parameters()])
        results[kernels] = (output.detach(), grads)
    (reference, reference_grads), (fast, fast_grads) = results["torch"], results["auto"]
    assert relative_error(fast, reference) < 1e-5
    for actual, expected in zip(fast_grads, reference_grads, strict=True):
        assert relative_error(actual, expected) < 1e-5


def test_auto_kernels_use_the_phase_form_for_the_last_layer_only():
    decoder = ConvDecoder(32, 1, latent_dim=4)
    latents = torch.randn(3, 4, requires_grad=True)
    with conv_kernels("auto"):
        nodes = graph_nodes(decoder(latents))
    assert PHASE_NODE in nodes and "ConvolutionBackward0" in nodes  # the other layers: oneDNN
    with conv_kernels("torch"):
        assert PHASE_NODE not in graph_nodes(decoder(latents))
    wide = ConvDecoder(32, 8, latent_dim=4)  # 8 output channels: oneDNN's kernel stays
    with conv_kernels("auto"):
        assert PHASE_NODE not in graph_nodes(wide(latents))
    with pytest.raises(ValueError, match="kernels must be one of"):
        with conv_kernels("fast"):
            pass


def test_phase_form_is_the_transposed_convolution():
    """:class:`_PhaseConvTranspose2d` against ``conv_transpose2d`` in float64: values and
    gradients (gradcheck) with and without bias, on odd and even sides, 1 and 3 channels."""
    from pyro_dynvae.nets import _PhaseConvTranspose2d

    torch.manual_seed(0)
    for in_channels, out_channels, height, width, bias in [(3, 1, 5, 4, True), (4, 3, 3, 6, False)]:
        x = torch.randn(2, in_channels, height, width, dtype=torch.float64, requires_grad=True)
        weight = torch.randn(in_channels, out_channels, 4, 4, dtype=torch.float64,
                             requires_grad=True)
        b = torch.randn(out_channels, dtype=torch.float64, requires_grad=True) if bias else None
        expected = torch.nn.functional.conv_transpose2d(x, weight, b, stride=2, padding=1)
        torch.testing.assert_close(_PhaseConvTranspose2d.apply(x, weight, b), expected,
                                   rtol=0, atol=1e-12)
        assert torch.autograd.gradcheck(_PhaseConvTranspose2d.apply, (x, weight, b))
    x = torch.randn(6, 16, 8, 8).contiguous(memory_format=torch.channels_last)  # the nets' layout
    weight = torch.randn(16, 3, 4, 4)
    torch.testing.assert_close(
        _PhaseConvTranspose2d.apply(x, weight, None),
        torch.nn.functional.conv_transpose2d(x, weight, stride=2, padding=1),
        rtol=1e-5, atol=1e-5,
    )


def guide_inputs(dynvae, frames: torch.Tensor):
    """``(theta, potentials)`` of the guide for ``frames``: the posterior means of ``theta``."""
    features = dynvae.guide.encoder(frames)
    theta = dynvae.guide.dynamics_posterior(features).mean
    return theta, dynvae.guide.potentials(features)


@pytest.mark.parametrize(
    "image_size, likelihood, dataset",
    [(32, "gaussian", DynamicSprites), (64, "bernoulli", MovingMNIST)],
    ids=["study", "example"],
)
def test_elbo_and_gradients_match_the_reference_step(image_size, likelihood, dataset):
    """The study's (32x32, Gaussian) and the example's (64x64, Bernoulli) hierarchical model:
    the fast kernels, channels-last weights and per-latent chains on the dense route against the
    plain layers and one joint chain on the sequential route, in float64, where the two paths'
    rounding differences (float32: up to 3e-4 of a gradient's scale, in the transition scales'
    gradient, a sum of large terms that cancel) stay below 1e-9. The latent draws agree too:
    the per-latent chains draw their noise in the joint layout (``ChainProductMVN.rsample``)."""
    pyro.settings.set(module_local_params=True)
    torch.manual_seed(0)
    dynvae = build_model("hierarchical", image_size=image_size, latent_dim=8,
                         num_sequences=64, likelihood=likelihood).double()
    data = dataset(num_sequences=4, num_frames=10, image_size=image_size)
    frames = data.get_batch(range(4))[0].double()
    reference_loss, reference_grads = loss_and_gradients(dynvae, frames, StepOptions.reference())
    dynvae.to(memory_format=torch.channels_last)  # what StepOptions().channels_last does on CPU
    with chain_layout("joint"):
        joint = dynvae.guide.latent_posterior(*guide_inputs(dynvae, frames))
        assert isinstance(joint, BlockTridiagMVN)
    assert isinstance(dynvae.guide.latent_posterior(*guide_inputs(dynvae, frames)),
                      ChainProductMVN)
    loss, grads = loss_and_gradients(dynvae, frames, StepOptions())
    torch.testing.assert_close(loss, reference_loss, rtol=1e-12, atol=0)
    assert grads.keys() == reference_grads.keys()
    for name, grad in grads.items():  # relative to each gradient's scale
        assert relative_error(grad, reference_grads[name]) < 1e-9, name
    # the comparison can fail: other Monte Carlo noise gives another loss and other gradients
    other_loss, other_grads = loss_and_gradients(dynvae, frames, StepOptions(), seed=1)
    assert not torch.allclose(other_loss, reference_loss, rtol=1e-6, atol=0)
    assert relative_error(other_grads["model.decoder.deconvs.5.weight"],
                          reference_grads["model.decoder.deconvs.5.weight"]) > 1e-3


def test_memoized_sequences_serve_the_rendered_items():
    data = DynamicSprites(num_sequences=6, num_frames=3, image_size=16)
    item_bytes = sum(t.nbytes for t in data[0])
    cached = MemoizedSequences(data, max_bytes=4 * item_bytes)
    batch = cached.__getitems__([0, 1, 1, 5])
    again = cached.__getitems__([5, 0, 2, 3, 4])
    for index, (frames, factors) in zip([0, 1, 1, 5, 5, 0, 2, 3, 4], batch + again, strict=True):
        torch.testing.assert_close(frames, data[index][0], rtol=0, atol=0)
        torch.testing.assert_close(factors, data[index][1], rtol=0, atol=0)
    # the budget holds four items: the first four distinct indices stay, later ones are rendered
    assert cached.nbytes == 4 * item_bytes and sorted(cached._items) == [0, 1, 2, 5]
    assert cached[5][0] is batch[3][0] and cached[4][0] is not again[4][0]
    assert len(cached) == 6 and cached.factor_names == data.factor_names
    with pytest.raises(ValueError, match="max_bytes"):
        MemoizedSequences(data, max_bytes=0)


def test_fit_with_the_fast_step_matches_the_reference_fit(tmp_path):
    """Through Lightning, in float64: the memoised data, foreach Adam, the native kernel and
    channels-last weights leave the weights after 6 steps (3 epochs of the 8 sequences) where
    the reference step leaves them."""
    config = TrainConfig(
        variant="hierarchical", dataset="sprites", model_overrides={"conv_channels": [4, 8]},
        num_sequences=8, num_val_sequences=4, num_frames=4, image_size=16, latent_dim=3,
        batch_size=4, max_steps=6, val_every=0, checkpoint_every=6, forecast_horizon=1,
    )
    train_data, val_data = (
        TensorDataset(*(tensor.double() for tensor in data.get_batch(range(len(data)))))
        for data in (make_dataset(config, "train"), make_dataset(config, "test"))
    )
    weights = {}
    for name, options in (("reference", StepOptions.reference()), ("fast", StepOptions())):
        dynvae = make_model(config, channels=1).double()
        fit(dynvae, train_data, val_data, config, tmp_path / name, enable_progress_bar=False,
            step_options=options)
        weights[name] = {k: v.detach().clone() for k, v in dynvae.state_dict().items()}
        weight = dynvae.guide.encoder.convs[2].weight  # (8, 4, 4, 4): the layouts differ
        assert weight.is_contiguous(memory_format=torch.channels_last) == (name == "fast")
    initial = make_model(config, channels=1).double().state_dict()
    assert any(not torch.allclose(initial[k], v) for k, v in weights["reference"].items())
    for key, value in weights["fast"].items():
        torch.testing.assert_close(value, weights["reference"][key], rtol=1e-9, atol=1e-9,
                                   msg=key)


def test_fits_on_one_dataset_share_its_cache():
    data = DynamicSprites(num_sequences=4, num_frames=2, image_size=16)
    cached = _memoized(data, 2**20)
    assert isinstance(cached, MemoizedSequences) and _memoized(data, 2**20) is cached
    assert _memoized(data, 2**21) is not cached and _memoized(data, 0) is data

    class Unhashable(torch.utils.data.TensorDataset):
        __eq__ = object.__eq__
        __hash__ = None

    other = Unhashable(torch.zeros(3, 2))
    assert _memoized(other, 2**20).dataset is other
