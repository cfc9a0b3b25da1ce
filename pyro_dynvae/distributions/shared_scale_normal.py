r"""A Gaussian over whole frames with one standard deviation shared by every pixel."""

from __future__ import annotations

import math

import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch import Tensor
from torch.distributions import constraints

__all__ = ["SharedScaleNormal"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class SharedScaleNormal(TorchDistribution):
    r"""Independent normals ``N(mu_i, sigma^2)`` over the last ``event_dim`` dims of ``loc``,
    with one standard deviation ``sigma`` (a scalar tensor) shared by every coordinate:

    .. math::

        \log p(x) = -\frac{\lVert x - \mu \rVert^2}{2 \sigma^2} - N \log \sigma
        - \frac N2 \log 2\pi,

    ``N`` the number of coordinates in the event. This is the density of
    ``Normal(loc, scale).to_event(event_dim)``, computed with one reduction over the event: the
    elementwise :class:`~pyro.distributions.Normal` broadcasts ``sigma`` to every pixel and
    materialises ``sigma^2`` and ``log sigma`` there, forward and backward, which for a
    batch of frames costs several times the squared error itself (issue 13; the frames'
    likelihood of a model with a learned observation scale, Rybkin et al. 2021).

    :param torch.Tensor loc: ``mu``, ``batch_shape + event_shape``.
    :param torch.Tensor scale: ``sigma > 0``, a 0-dim tensor.
    :param int event_dim: how many trailing dims of ``loc`` form the event (>= 1).
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = True

    def __init__(
        self, loc: Tensor, scale: Tensor, event_dim: int, validate_args: bool | None = None
    ) -> None:
        if not (torch.is_tensor(scale) and scale.dim() == 0):
            raise ValueError(f"scale must be a 0-dim tensor, got {scale!r:.80}")
        if not (isinstance(event_dim, int) and 1 <= event_dim <= loc.dim()):
            raise ValueError(
                f"event_dim must be an int in [1, loc.dim()] = [1, {loc.dim()}], got {event_dim!r}"
            )
        self.loc, self.scale = loc, scale
        batch_shape, event_shape = loc.shape[:-event_dim], loc.shape[-event_dim:]
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, len(self.event_shape))

    def expand(self, batch_shape, _instance=None) -> SharedScaleNormal:
        new = self._get_checked_instance(SharedScaleNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.scale = self.scale
        super(SharedScaleNormal, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return self.scale.square().expand(self.loc.shape)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + self.scale * noise

    def _event_size(self) -> int:
        return math.prod(self.event_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        event_dims = tuple(range(-len(self.event_shape), 0))
        squared_error = (value - self.loc).square().sum(event_dims)
        normaliser = self._event_size() * (self.scale.log() + _HALF_LOG_2PI)
        return -0.5 * squared_error / self.scale.square() - normaliser

    def entropy(self) -> Tensor:
        entropy = self._event_size() * (0.5 + _HALF_LOG_2PI + self.scale.log())
        return entropy.expand(self.batch_shape)
