import math

import pytest
import torch
from torch.nn.functional import softplus

from pyro_dynvae.nets import (
    ELU,
    ConvDecoder,
    ConvEncoder,
    DynamicsNet,
    LocalPotentials,
    MLPDecoder,
    MLPEncoder,
    conv_kernels,
    inverse_softplus,
)


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_conv_encoder_decoder_shapes(image_size, channels):
    torch.manual_seed(0)
    encoder = ConvEncoder(image_size, channels, conv_channels=(4, 8), feature_dim=16)
    decoder = ConvDecoder(image_size, channels, latent_dim=5, conv_channels=(4, 8))
    frames = torch.rand(2, 3, channels, image_size, image_size)
    features = encoder(frames)
    assert features.shape == (2, 3, 16)
    # log2(S) - 2 stride-2 layers take the side to 4: 3 for 32, 4 for 64
    num_convs = sum(isinstance(m, torch.nn.Conv2d) for m in encoder.modules())
    assert num_convs == int(math.log2(image_size)) - 2
    output = decoder(torch.randn(2, 3, 5))
    assert output.shape == (2, 3, channels, image_size, image_size)
    # each frame is processed independently: batching does not mix frames
    assert torch.allclose(encoder(frames[1, 2]), features[1, 2], atol=1e-6)


@pytest.mark.parametrize("image_size", [4, 48, 0])
def test_conv_rejects_bad_image_size(image_size):
    with pytest.raises(ValueError, match="image_size"):
        ConvEncoder(image_size, 1)
    with pytest.raises(ValueError, match="image_size"):
        ConvDecoder(image_size, 1, 4)


def test_conv_rejects_bad_channels():
    with pytest.raises(ValueError, match="conv_channels"):
        ConvEncoder(32, 1, conv_channels=())


@pytest.mark.parametrize("activation, function", [
    ("elu", torch.nn.functional.elu),
    ("leaky_relu", torch.nn.functional.leaky_relu),
    ("relu", torch.nn.functional.relu),
])
@pytest.mark.parametrize("broadcast", [False, True])
def test_conv_activation_is_applied_after_every_hidden_layer(activation, function, broadcast):
    # reference: the same weights applied by hand with the functional activation
    torch.manual_seed(0)
    encoder = ConvEncoder(16, 1, conv_channels=(4, 8), feature_dim=6, activation=activation)
    decoder = ConvDecoder(16, 1, 3, conv_channels=(4, 8), broadcast=broadcast,
                          activation=activation)
    frames, latents = torch.randn(5, 1, 16, 16), torch.randn(5, 3)
    hidden = frames
    for conv in encoder.convs[::2]:
        hidden = function(conv(hidden))
    expected = function(encoder.linear(hidden.flatten(1)))
    assert torch.allclose(encoder(frames), expected, atol=1e-6)
    if broadcast:
        grid = decoder.coordinates.expand(5, -1, -1, -1)
        tiled = latents[:, :, None, None].expand(-1, -1, *grid.shape[-2:])
        start = decoder.start
        hidden = start[4](function(start[2](function(start[0](torch.cat([tiled, grid], 1))))))
    else:
        hidden = decoder.start(latents).reshape(5, decoder.first_width, 4, 4)
    for deconv in decoder.deconvs[1::2]:
        hidden = deconv(function(hidden))
    assert torch.allclose(decoder(latents), hidden, atol=1e-5)
    # the choice changes the function (ELU and ReLU differ below zero)
    assert (encoder(frames) < 0).any() == (activation != "relu")


def test_elu_matches_torch_values_and_gradients():
    # reference: torch.nn.functional.elu (expm1), in float64 and float32, with its gradient;
    # below -80 the exponent is floored (exactly -1 either way)
    x = torch.cat([torch.linspace(-40, 40, 20001, dtype=torch.float64),
                   torch.linspace(-1000, -40, 2001, dtype=torch.float64),
                   torch.tensor([0.0, -0.0, 1e-12, -1e-12, -1e-300, float("inf"), -float("inf")],
                                dtype=torch.float64)]).requires_grad_()
    y = ELU()(x)
    expected = torch.nn.functional.elu(x)
    torch.testing.assert_close(y, expected, rtol=0, atol=2e-16)
    weights = torch.randn_like(x)
    (grad,) = torch.autograd.grad((y * weights).sum(), x)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), x)
    # w * (elu(x) + 1) against w * exp(x): a few ulps of 1 times |w| (below 5)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=2e-15)
    x32 = torch.cat([torch.randn(4, 8, 16, 16) * 3, torch.randn(4, 8, 16, 16) * 300])
    torch.testing.assert_close(ELU()(x32), torch.nn.functional.elu(x32), rtol=0, atol=6e-8)
    assert torch.equal(ELU()(x32[x32 < -80]), torch.full_like(x32[x32 < -80], -1.0))
    inputs = torch.randn(50, dtype=torch.float64).mul(2).requires_grad_()
    assert torch.autograd.gradcheck(ELU(), (inputs,))
    # NaN propagates, as in torch's
    assert ELU()(torch.tensor([float("nan")])).isnan().all()


def test_elu_is_torchs_under_torch_kernels():
    torch.manual_seed(0)
    x = (torch.randn(1000) * 3).requires_grad_()
    with conv_kernels("torch"):
        y = ELU()(x)
    assert torch.equal(y, torch.nn.functional.elu(x))
    assert type(y.grad_fn).__name__ == "EluBackward0"
    assert type(ELU()(x).grad_fn).__name__ == "_ExpELUFunctionBackward"


def test_conv_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation must be one of"):
        ConvEncoder(16, 1, activation="tanh")
    with pytest.raises(ValueError, match="activation must be one of"):
        ConvDecoder(16, 1, 3, activation="gelu")


def test_mlp_without_hidden_layers_is_identity_encoder_and_affine_decoder():
    torch.manual_seed(0)
    encoder = MLPEncoder((1, 2, 3), hidden_dims=())
    frames = torch.rand(4, 1, 2, 3)
    assert encoder.feature_dim == 6
    assert torch.equal(encoder(frames), frames.reshape(4, 6))
    decoder = MLPDecoder(3, (1, 2, 3), hidden_dims=())
    a, b = torch.randn(3), torch.randn(3)
    zero = torch.zeros(3)
    assert decoder(a).shape == (1, 2, 3)
    assert torch.allclose(decoder(a + b), decoder(a) + decoder(b) - decoder(zero), atol=1e-6)


def test_mlp_shapes_with_hidden_layers():
    encoder = MLPEncoder((2, 4, 4), hidden_dims=(8, 7))
    decoder = MLPDecoder(3, (2, 4, 4), hidden_dims=(8,))
    assert encoder(torch.rand(5, 6, 2, 4, 4)).shape == (5, 6, 7)
    assert decoder(torch.randn(5, 6, 3)).shape == (5, 6, 2, 4, 4)


def test_local_potentials_diagonal():
    torch.manual_seed(0)
    potentials = LocalPotentials(6, 3, precision_floor=0.01, init_precision=2.0)
    features = torch.randn(4, 5, 6) * 10
    mean, precision = potentials(features)
    assert mean.shape == precision.shape == (4, 5, 3)
    assert (precision >= 0.01).all()
    # at zero features the precision is the initial one
    _, precision_at_zero = potentials(torch.zeros(6))
    assert torch.allclose(precision_at_zero, torch.full((3,), 2.01), atol=1e-5)


def test_local_potentials_low_rank_is_diag_plus_outer_product():
    torch.manual_seed(0)
    potentials = LocalPotentials(6, 3, rank=2, precision_floor=1e-3)
    features = torch.randn(4, 6)
    mean, precision = potentials(features)
    assert precision.shape == (4, 3, 3)
    diagonal = softplus(potentials.precision(features)) + 1e-3
    factor = potentials.factor(features).reshape(4, 3, 2)
    expected = torch.diag_embed(diagonal) + factor @ factor.transpose(-1, -2)
    assert torch.allclose(precision, expected, atol=1e-6)
    assert torch.allclose(precision, precision.transpose(-1, -2))
    assert (torch.linalg.eigvalsh(precision) >= 1e-3 - 1e-6).all()


def test_local_potentials_rejects_negative_rank():
    with pytest.raises(ValueError, match="rank"):
        LocalPotentials(4, 2, rank=-1)


def test_dynamics_net_reads_neighbouring_pairs():
    torch.manual_seed(0)
    net = DynamicsNet(4, 3, hidden_dim=8, with_scale=True, init_scale=0.2)
    features = torch.randn(2, 6, 4)
    offset, scale = net(features)
    assert offset.shape == scale.shape == (2, 5, 3)
    assert (scale > 0).all()
    # step t-1 -> t sees frames t-1 and t only: changing frame 3 changes steps 2 and 3
    perturbed = features.clone()
    perturbed[:, 3] += 1.0
    changed = (net(perturbed)[0] != offset).any(-1).any(0)
    assert changed.tolist() == [False, False, True, True, False]
    # initial scale through the bias
    hidden_zero_net = DynamicsNet(4, 3, with_scale=True, init_scale=0.2)
    torch.nn.init.zeros_(hidden_zero_net.scale.weight)
    _, scale = hidden_zero_net(features)
    assert torch.allclose(scale, torch.full_like(scale, 0.2 + 1e-4), atol=1e-5)


def test_dynamics_net_without_scale():
    offset, scale = DynamicsNet(4, 2)(torch.randn(3, 4))
    assert offset.shape == (2, 2) and scale is None


def test_inverse_softplus():
    for value in [1e-3, 0.5, 1.0, 20.0]:
        assert softplus(torch.tensor(inverse_softplus(value))).item() == pytest.approx(value)
    with pytest.raises(ValueError):
        inverse_softplus(0.0)


@pytest.mark.parametrize("image_size", [16, 32, 64])
def test_broadcast_decoder_draws_every_cell_with_shared_weights(image_size):
    torch.manual_seed(0)
    decoder = ConvDecoder(image_size, 3, 5, conv_channels=(8, 16, 16, 32), broadcast=True)
    latents = torch.randn(2, 4, 5, requires_grad=True)
    output = decoder(latents)
    assert output.shape == (2, 4, 3, image_size, image_size)
    output.sum().backward()
    assert latents.grad.abs().sum() > 0
    # the first layer is a per-cell function of (z, cell coordinates): the cell at
    # coordinates (x, y) of one latent equals the layer applied to (z, x, y)
    z = torch.randn(1, 5)
    cells = torch.cat([z[:, :, None, None].expand(-1, -1, 8, 8), decoder.coordinates[None]], 1)
    per_cell = decoder.start[0]
    by_hand = per_cell(torch.cat([z, torch.tensor([[-1.0, 1.0]])], dim=1)[:, :, None, None])
    torch.testing.assert_close(per_cell(cells)[:, :, -1, 0], by_hand[:, :, 0, 0])
    # then two 3x3 convolutions: a cell's features depend on the cells within two steps
    bumped = cells.clone()
    bumped[:, :, 4, 4] += 1.0
    with torch.no_grad():
        change = (decoder.start(bumped) - decoder.start(cells)).abs().sum(1)[0]
    assert change[2:7, 2:7].min() > 0
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[2:7, 2:7] = False
    assert change[outside].max() == 0
    with pytest.raises(ValueError, match="broadcast decoder needs image_size >= 16"):
        ConvDecoder(8, 1, 5, broadcast=True)
