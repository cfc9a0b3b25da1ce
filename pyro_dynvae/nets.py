"""Neural networks of the dynamics VAE: frame encoders and decoders, local Gaussian potentials and
the eigenvalue (dynamics) network.

Two families of frame networks share one interface:

- :class:`ConvEncoder` / :class:`ConvDecoder` for square images whose side is a power of two
  (``32`` and ``64`` are the intended sizes): strided 4x4 convolutions halve the side down to
  ``4 x 4``, the decoder mirrors them with transposed convolutions (DCGAN layout, Radford et al.
  2016), small enough to train on a couple of CPU cores.
- :class:`MLPEncoder` / :class:`MLPDecoder` for small frames flattened to vectors (tiny tests,
  linear-Gaussian checks). With no hidden layer the decoder is a single affine map.

Convolution kernels (:func:`conv_kernels`): by default the decoder's last layer, which writes
only the few image channels, runs on CPU as one stride-1 convolution whose output channels are
the four phases of the strided output (:class:`_PhaseConvTranspose2d`): oneDNN's transposed
convolution for so few output channels costs 2-4x as much in forward, PyTorch's native im2col +
GEMM kernel (``slow_conv_transpose2d``) 1.7-2.8x; every other layer, and every layer on other
devices, is the plain ``torch.nn`` layer. The result is the same function of the same parameters
(to float rounding); ``with conv_kernels("torch"):`` runs the plain ``torch.nn`` layers
everywhere.

Activations of the conv networks (``activation``): ``"elu"`` (the default, Clevert et al. 2016),
``"leaky_relu"`` (slope 0.01 below zero, Maas et al. 2013) or ``"relu"``. On CPU torch's ELU costs
about 15x a ReLU of the same size (its ``expm1`` against a compare: about 3.9 against 0.22 ms for
the 64x64 example's first feature map, one AVX2 thread); in those nets the ELUs and their
backward passes took about 12% of a training step. :class:`ELU` computes the same function through
``exp`` (1.5-1.7x faster), and by default (``conv_kernels("auto")``) every ELU of the conv
networks is that one.

Every encoder maps frames ``(..., C, H, W)`` to features ``(..., feature_dim)``; every decoder maps
latents ``(..., n)`` to per-pixel outputs ``(..., C, H, W)`` (logits or Gaussian means). Leading
dims are arbitrary (batch, time, Monte Carlo particles).

:class:`LocalPotentials` turns a frame's features into a Gaussian potential on its latent,
``exp(-1/2 z' R_t z + z' R_t m_t)``, the "local evidence" that the structured guide adds to the
prior chain's precision (Archer et al. 2016, "Black box variational inference for state space
models"). :class:`DynamicsNet` reads the features of two neighbouring frames and emits the
parameters of the transition between them.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.functional import softplus

from pyro_dynvae._settings import setting

__all__ = [
    "ACTIVATIONS",
    "ConvDecoder",
    "ConvEncoder",
    "DynamicsNet",
    "ELU",
    "LocalPotentials",
    "MLPDecoder",
    "MLPEncoder",
    "activation_layer",
    "conv_kernels",
    "inverse_softplus",
]

CONV_KERNELS = ("auto", "torch")
#: transposed convolutions with at most this many output channels use the phase form on CPU
PHASE_FORM_MAX_OUT_CHANNELS = 4
_CONV_KERNELS = contextvars.ContextVar("pyro_dynvae_conv_kernels", default="auto")


def conv_kernels(kernels: str) -> contextlib.AbstractContextManager[None]:
    """Choose the kernels of the convolutions and ELUs inside a ``with`` block (thread- and
    task-local).

    :param str kernels: ``"auto"`` (the default: the measured faster kernel per layer, see the
        module docstring) or ``"torch"`` (the plain ``torch.nn`` layers and
        ``torch.nn.functional.elu`` everywhere).
    """
    return setting(_CONV_KERNELS, kernels, CONV_KERNELS, "kernels")


def inverse_softplus(value: float) -> float:
    """The ``x`` with ``softplus(x) == value`` (for initialising biases), ``value > 0``."""
    if value <= 0:
        raise ValueError(f"inverse_softplus needs a positive value, got {value}")
    return value + math.log(-math.expm1(-value))


#: side of the broadcast decoder's first feature map
BROADCAST_GRID = 8


#: the exponent's floor: ``e^x - 1`` rounds to ``-1`` below it in float32 and float64 alike, while
#: ``exp`` of ``x < -87`` (a subnormal or zero result) leaves the vectorised kernel for a path
#: about 5x slower on large negative inputs, which the decoder's feature maps have
_EXP_FLOOR = -80.0


class _ExpELUFunction(torch.autograd.Function):
    """``elu(x) = max(x, exp(clamp(x, -80, 0)) - 1)`` with the ELU's own backward on the result."""

    @staticmethod
    def forward(ctx, input: torch.Tensor) -> torch.Tensor:
        exponent = input.clamp(_EXP_FLOOR, 0)
        result = torch.maximum(input, exponent.exp_().sub_(1))
        ctx.save_for_backward(result)
        return result

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (result,) = ctx.saved_tensors
        return torch.ops.aten.elu_backward(grad_output, 1.0, 1.0, 1.0, True, result)


class ELU(nn.Module):
    r""":class:`torch.nn.ELU` (``alpha = 1``, Clevert et al. 2016) computed as

    .. math:: \mathrm{elu}(x) = \max\bigl(x,\ e^{\min(\max(x, -80), 0)} - 1\bigr),

    which holds because ``e^x - 1 >= x`` for every ``x`` (with equality only at 0), so the
    maximum picks ``x`` above zero and ``e^x - 1`` below; below ``-80`` both ``e^x - 1`` and
    ``e^{-80} - 1`` round to ``-1`` (in float32 and float64), and the floor keeps ``exp`` out of
    its slow path for subnormal results (5x on inputs of magnitude 100). ``torch.nn.ELU``
    evaluates ``expm1``, which on CPU costs about twice ``exp``; this form is 1.5-1.7x faster on
    one AVX2 thread for the conv nets' feature maps and differs from it by at most half an ulp
    of 1 (``6e-8`` in float32, the rounding of ``e^x - 1`` near 0). The backward is PyTorch's ELU
    backward on the result, ``grad * (elu(x) + 1)`` below zero and ``grad`` above; NaN
    propagates as in ``torch.nn.ELU``. Under ``conv_kernels("torch")`` it is
    ``torch.nn.functional.elu``.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if _CONV_KERNELS.get() != "auto":
            return torch.nn.functional.elu(input)
        return _ExpELUFunction.apply(input)


ACTIVATIONS = {"elu": ELU, "leaky_relu": nn.LeakyReLU, "relu": nn.ReLU}


def activation_layer(activation: str) -> nn.Module:
    """A new layer of the named activation (a key of :data:`ACTIVATIONS`).

    :raises ValueError: for another name.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return ACTIVATIONS[activation]()


def _num_halvings(image_size: int) -> int:
    """Number of stride-2 layers that take ``image_size`` down to 4."""
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(
            f"image_size must be a power of two >= 8 for the conv networks, got {image_size}"
        )
    return int(math.log2(image_size)) - 2


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of the given widths with ELU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (size_in, size_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(size_in, size_out))
        if i < len(sizes) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


def _channel_plan(image_size: int, channels: Sequence[int]) -> list[int]:
    """One width per stride-2 layer: ``channels`` cut or extended (with its last width)."""
    depth = _num_halvings(image_size)
    channels = list(channels)
    if not channels or any(c <= 0 for c in channels):
        raise ValueError(f"conv_channels must be positive widths, got {channels}")
    return (channels + [channels[-1]] * depth)[:depth]


#: kernel rows (columns) of ``ConvTranspose2d(4x4, stride 2, padding 1)`` that output row
#: ``2m + a`` takes from input rows ``m - 1 + a`` and ``m + a``, for the phases ``a = 0, 1``
_PHASE_TAPS = torch.tensor([[3, 1], [2, 0]])


def _phase_kernel(weight: torch.Tensor) -> torch.Tensor:
    """The ``(4 C_out, C_in, 2, 2)`` kernel of the four output phases of a ``4x4`` transposed
    convolution's ``(C_in, C_out, 4, 4)`` weight; phase ``(a, b)`` is in rows
    ``(2a + b) C_out + c``."""
    taps = _PHASE_TAPS.to(weight.device)
    kernel = weight[:, :, taps][:, :, :, :, taps]  # (C_in, C_out, a, u, b, v)
    return kernel.permute(2, 4, 1, 0, 3, 5).reshape(4 * weight.shape[1], weight.shape[0], 2, 2)


class _PhaseConvTranspose2d(torch.autograd.Function):
    r"""``conv_transpose2d(input, weight, bias, stride=2, padding=1)`` for ``4x4`` kernels,
    computed as one stride-1 ``2x2`` convolution of the padded input with the four output
    phases as channels.

    Output pixel ``(2m + a, 2n + b)`` of the transposed convolution sums the input's ``2x2``
    window at rows ``m - 1 + a, m + a`` and columns ``n - 1 + b, n + b`` against the kernel
    taps :data:`_PHASE_TAPS` ``[a]`` x ``[b]`` (the sub-pixel view of a strided transposed
    convolution, Shi et al. 2016, "Real-time single image and video super-resolution using an
    efficient sub-pixel convolutional neural network"), so

    .. math:: y_{:, :, 2m + a, 2n + b} = \bigl(\mathrm{conv}(\mathrm{pad}_1(x), K)\bigr)_{
              (a, b, :), m + a, n + b},

    with ``K`` = :func:`_phase_kernel` of the weight: the same multiply-adds as the transposed
    convolution, none of them with a zero tap (the ``3x3`` sub-pixel kernel has 5 zeros in 9).
    oneDNN runs it 1.7-2.8x faster than PyTorch's native ``slow_conv_transpose2d`` at 1-3 output
    channels. The backward is the transposed convolution's own (``convolution_backward``).
    """

    @staticmethod
    def forward(ctx, input, weight, bias):
        ctx.save_for_backward(input, weight)
        ctx.has_bias = bias is not None
        batch, _, height, width = input.shape
        out_channels = weight.shape[1]
        phases = torch.nn.functional.conv2d(
            torch.nn.functional.pad(input, (1, 1, 1, 1)),
            _phase_kernel(weight),
            None if bias is None else bias.repeat(4),
        ).view(batch, 2, 2, out_channels, height + 1, width + 1)
        rows = [phases[:, a, :, :, a : a + height] for a in (0, 1)]  # (N, b, C, H, W + 1)
        interleaved = torch.stack(
            [torch.stack([row[:, b, :, :, b : b + width] for b in (0, 1)], -1) for row in rows],
            3,
        )  # (N, C, H, a, W, b)
        return interleaved.reshape(batch, out_channels, 2 * height, 2 * width)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        grad_input, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad_output.contiguous(), input, weight, [weight.shape[1]] if ctx.has_bias else None,
            (2, 2), (1, 1), (1, 1), True, (0, 0), 1,
            (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias
             and ctx.needs_input_grad[2]),
        )
        return grad_input, grad_weight, grad_bias


class _ConvTranspose2d(nn.ConvTranspose2d):
    """:class:`torch.nn.ConvTranspose2d` (same parameters) whose forward on CPU, for at most
    :data:`PHASE_FORM_MAX_OUT_CHANNELS` output channels, the ``4x4`` kernel at stride 2 and padding
    1, and under ``conv_kernels("auto")``, is :class:`_PhaseConvTranspose2d`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if (
            input.device.type != "cpu"
            or input.dim() != 4
            or self.out_channels > PHASE_FORM_MAX_OUT_CHANNELS
            or _CONV_KERNELS.get() != "auto"
            or (self.kernel_size, self.stride, self.padding) != ((4, 4), (2, 2), (1, 1))
            or self.output_padding != (0, 0)
            or self.dilation != (1, 1)
            or self.groups != 1
        ):
            return super().forward(input)
        return _PhaseConvTranspose2d.apply(input, self.weight, self.bias)


class ConvEncoder(nn.Module):
    """Strided conv encoder for ``(..., C, S, S)`` frames, ``S`` a power of two >= 8.

    Layer ``k`` is ``Conv2d(4x4, stride 2, padding 1)`` and the activation, with
    ``conv_channels[k]`` outputs (``log2(S) - 2`` layers take the side to 4), then a linear layer
    to ``feature_dim`` and the activation.

    :param int image_size: side ``S`` of the square frames.
    :param int channels: image channels ``C``.
    :param conv_channels: widths of the conv layers (cut or extended to the needed depth).
    :param int feature_dim: size of the output features.
    :param str activation: ``"elu"``, ``"leaky_relu"`` or ``"relu"`` (:data:`ACTIVATIONS`).
    """

    def __init__(
        self,
        image_size: int,
        channels: int,
        conv_channels: Sequence[int] = (16, 32, 32, 64),
        feature_dim: int = 128,
        activation: str = "elu",
    ):
        super().__init__()
        widths = _channel_plan(image_size, conv_channels)
        layers: list[nn.Module] = []
        for width_in, width_out in zip([channels] + widths[:-1], widths, strict=True):
            layers += [
                nn.Conv2d(width_in, width_out, 4, stride=2, padding=1),
                activation_layer(activation),
            ]
        self.frame_shape = (channels, image_size, image_size)
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(widths[-1] * 16, feature_dim)
        self.activation = activation_layer(activation)
        self.feature_dim = feature_dim

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """:param frames: ``(..., C, S, S)``. :returns: features ``(..., feature_dim)``."""
        batch_shape = frames.shape[:-3]
        hidden = self.convs(frames.reshape((-1,) + self.frame_shape))
        features = self.activation(self.linear(hidden.flatten(1)))
        return features.reshape(batch_shape + (self.feature_dim,))


class ConvDecoder(nn.Module):
    """Transposed-conv decoder, the mirror image of :class:`ConvEncoder`.

    ``Linear(latent_dim, 16 * w) -> (w, 4, 4)``, then ``ConvTranspose2d(4x4, stride 2, padding 1)``
    layers, each after the activation, doubling the side up to ``S``; the last one outputs ``C``
    channels without activation.

    With ``broadcast`` the first stage is a spatial broadcast instead (Watters et al. 2019, "Spatial
    Broadcast Decoder"; the coordinate channels of Liu et al. 2018, "An intriguing failing of
    convolutional neural networks and the CoordConv solution"): the latents are tiled over an
    ``8 x 8`` grid, two channels of the cells' coordinates in ``[-1, 1]`` are appended, and a
    1x1 convolution (a per-cell layer) followed by two 3x3 convolutions gives the ``8 x 8``
    feature map the transposed convolutions refine. A fully connected first layer must learn
    one set of weights per place an object can be; the broadcast computes every cell from
    ``(z, cell position)`` with shared weights, so a latent can move an object by being compared
    with the coordinates, and what the object looks like is drawn the same way everywhere. The
    3x3 convolutions let neighbouring cells draw one shape together: with per-cell layers only
    (two 1x1 convolutions), a 28-px digit spanning four cells came out as a blob (measured on
    the example's Moving MNIST, 16 latents, 2000 steps: a digit classifier read 0.37 of the
    reconstructions against 0.54 with the 3x3 convolutions).

    :param int image_size: side ``S`` of the square frames.
    :param int channels: image channels ``C``.
    :param int latent_dim: latent size ``n``.
    :param conv_channels: the encoder's widths; the decoder uses them in reverse order.
    :param bool broadcast: start from the spatial broadcast (``S >= 16``) instead of a linear
        layer.
    :param str activation: ``"elu"``, ``"leaky_relu"`` or ``"relu"`` (:data:`ACTIVATIONS`).
    """

    def __init__(
        self,
        image_size: int,
        channels: int,
        latent_dim: int,
        conv_channels: Sequence[int] = (16, 32, 32, 64),
        broadcast: bool = False,
        activation: str = "elu",
    ):
        super().__init__()
        widths = _channel_plan(image_size, conv_channels)[::-1]
        if broadcast:
            if len(widths) < 2:
                raise ValueError(f"a broadcast decoder needs image_size >= 16, got {image_size}")
            widths = widths[:1] + widths[2:]  # one stage fewer: 8x8 up to S
            grid = torch.linspace(-1.0, 1.0, BROADCAST_GRID)
            coordinates = torch.stack(torch.meshgrid(grid, grid, indexing="xy"))
            self.register_buffer("coordinates", coordinates)  # (2, g, g): x, y
            self.start = nn.Sequential(
                nn.Conv2d(latent_dim + 2, widths[0], 1),
                activation_layer(activation),
                nn.Conv2d(widths[0], widths[0], 3, padding=1),
                activation_layer(activation),
                nn.Conv2d(widths[0], widths[0], 3, padding=1),
            )
            self.start_side = BROADCAST_GRID
        else:
            self.start = nn.Linear(latent_dim, widths[0] * 16)
            self.start_side = 4
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths, widths[1:] + [channels], strict=True):
            layers += [
                activation_layer(activation),
                _ConvTranspose2d(width_in, width_out, 4, stride=2, padding=1),
            ]
        self.deconvs = nn.Sequential(*layers)
        self.broadcast = broadcast
        self.first_width = widths[0]
        self.frame_shape = (channels, image_size, image_size)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """:param latents: ``(..., n)``. :returns: per-pixel outputs ``(..., C, S, S)``."""
        batch_shape = latents.shape[:-1]
        flat = latents.reshape(-1, latents.shape[-1])
        side = self.start_side
        if self.broadcast:
            tiled = flat[:, :, None, None].expand(-1, -1, side, side)
            grid = self.coordinates.to(flat.dtype).expand(flat.shape[0], -1, -1, -1)
            hidden = self.start(torch.cat([tiled, grid], dim=1))
        else:
            hidden = self.start(flat).reshape(-1, self.first_width, side, side)
        output = self.deconvs(hidden)
        return output.reshape(batch_shape + self.frame_shape)


class MLPEncoder(nn.Module):
    """Encoder of flattened frames: ``Linear + ELU`` per hidden width.

    With ``hidden_dims=()`` it is the identity on the flattened frame (features = pixels), which
    makes the local potentials affine in the frame, as the linear-Gaussian posterior is.

    :param frame_shape: ``(C, H, W)``.
    :param hidden_dims: widths of the hidden layers; the last one is ``feature_dim``.
    """

    def __init__(self, frame_shape: Sequence[int], hidden_dims: Sequence[int] = (64,)):
        super().__init__()
        self.frame_shape = tuple(frame_shape)
        self.frame_dim = math.prod(self.frame_shape)
        sizes = [self.frame_dim, *hidden_dims]
        layers: list[nn.Module] = []
        for size_in, size_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(size_in, size_out), nn.ELU()]
        self.layers = nn.Sequential(*layers)
        self.feature_dim = sizes[-1]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """:param frames: ``(..., C, H, W)``. :returns: features ``(..., feature_dim)``."""
        return self.layers(frames.flatten(-len(self.frame_shape)))


class MLPDecoder(nn.Module):
    """Decoder to flattened frames: ``Linear + ELU`` per hidden width, then a linear layer.

    With ``hidden_dims=()`` it is one affine map ``z -> W z + b`` (linear-Gaussian decoder).

    :param int latent_dim: latent size ``n``.
    :param frame_shape: ``(C, H, W)``.
    :param hidden_dims: widths of the hidden layers.
    """

    def __init__(
        self, latent_dim: int, frame_shape: Sequence[int], hidden_dims: Sequence[int] = (64,)
    ):
        super().__init__()
        self.frame_shape = tuple(frame_shape)
        self.layers = _mlp([latent_dim, *hidden_dims, math.prod(self.frame_shape)])

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """:param latents: ``(..., n)``. :returns: per-pixel outputs ``(..., C, H, W)``."""
        return self.layers(latents).unflatten(-1, self.frame_shape)


class LocalPotentials(nn.Module):
    """Gaussian potential of each frame on its latent: mean ``m_t`` and precision ``R_t``.

    ``R_t = diag(softplus(a_t) + floor) + U_t U_t'`` with ``U_t`` of shape ``(n, rank)``
    (``rank=0``: diagonal). The floor keeps ``R_t`` positive definite, so the structured guide's
    precision ``J_prior + blockdiag(R_t)`` is positive definite by construction.

    :param int feature_dim: size of the input features.
    :param int latent_dim: latent size ``n``.
    :param int rank: rank of the low-rank part of ``R_t`` (0 for a diagonal precision).
    :param float precision_floor: smallest diagonal precision.
    :param init_precision: ``R_t``'s diagonal at initialisation (through the bias): a float, or
        a tensor of one value per latent.
    """

    def __init__(
        self,
        feature_dim: int,
        latent_dim: int,
        rank: int = 0,
        precision_floor: float = 1e-3,
        init_precision: float | torch.Tensor = 1.0,
    ):
        super().__init__()
        if rank < 0:
            raise ValueError(f"potential rank must be >= 0, got {rank}")
        self.latent_dim, self.rank, self.precision_floor = latent_dim, rank, precision_floor
        self.mean = nn.Linear(feature_dim, latent_dim)
        self.precision = nn.Linear(feature_dim, latent_dim)
        init = torch.as_tensor(init_precision, dtype=self.precision.bias.dtype)
        if (init <= 0).any():
            raise ValueError(f"init_precision must be positive, got {init_precision}")
        with torch.no_grad():
            self.precision.bias.copy_((init + torch.log(-torch.expm1(-init))).expand(latent_dim))
        self.factor = nn.Linear(feature_dim, latent_dim * rank) if rank else None

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:param features: ``(..., feature_dim)``.

        :returns: ``(mean, precision)``: mean ``(..., n)``; precision ``(..., n)`` (its diagonal)
            when ``rank == 0``, else the full ``(..., n, n)`` matrix.
        """
        mean = self.mean(features)
        diagonal = softplus(self.precision(features)) + self.precision_floor
        if self.factor is None:
            return mean, diagonal
        factor = self.factor(features).unflatten(-1, (self.latent_dim, self.rank))
        return mean, torch.diag_embed(diagonal) + factor @ factor.transpose(-1, -2)


class DynamicsNet(nn.Module):
    """Transition parameters from the features of two neighbouring frames.

    Input ``concat(f_t, f_{t-1})``, a hidden ``Linear + ELU`` layer, then an offset
    ``delta_t`` (``(..., out_dim)``) and, with ``with_scale``, a positive scale
    ``softplus(.) + 1e-4`` (a Normal posterior's). The offset head starts near zero (weights
    scaled by ``init_gain``), so transitions start near their centre (the identity, "slow").

    :param int feature_dim: size of each frame's features.
    :param int out_dim: number of transition parameters per step.
    :param int hidden_dim: width of the hidden layer.
    :param bool with_scale: also emit a scale per parameter.
    :param float init_scale: the scale at initialisation (through the bias).
    :param float init_gain: factor on the offset head's initial weights.
    """

    def __init__(
        self,
        feature_dim: int,
        out_dim: int,
        hidden_dim: int = 64,
        with_scale: bool = False,
        init_scale: float = 0.1,
        init_gain: float = 0.1,
    ):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(2 * feature_dim, hidden_dim), nn.ELU())
        self.offset = nn.Linear(hidden_dim, out_dim)
        with torch.no_grad():
            self.offset.weight.mul_(init_gain)
            self.offset.bias.zero_()
        self.scale = nn.Linear(hidden_dim, out_dim) if with_scale else None
        if self.scale is not None:
            nn.init.constant_(self.scale.bias, inverse_softplus(init_scale))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:param features: per-frame features ``(..., T, feature_dim)``, ``T >= 2``.

        :returns: ``(offset, scale)`` of shape ``(..., T-1, out_dim)`` for the steps
            ``t-1 -> t``, ``t = 1..T-1``; ``scale`` is None without ``with_scale``.
        """
        pairs = torch.cat([features[..., 1:, :], features[..., :-1, :]], dim=-1)
        hidden = self.hidden(pairs)
        scale = None if self.scale is None else softplus(self.scale(hidden)) + 1e-4
        return self.offset(hidden), scale
