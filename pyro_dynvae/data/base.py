"""The interface every ground-truth video dataset shares.

A dataset is a fixed-length, map-style :class:`torch.utils.data.Dataset` of sequences whose
generative factors are known for every frame::

    frames, factors = dataset[i]   # (T, C, H, W) float32 in [0, 1], (T, K) float32

Sequence ``i`` is a pure function of ``(seed, split, i)``: its factor trajectory is drawn with
``numpy.random.default_rng([seed, split_code, i])`` and the frames are rendered from the factor
rows alone (:meth:`FactorDataset.render`), so any frame can be reproduced from its row. Subclasses
provide two vectorised pieces: ``_sample_trajectories(rng, n) -> (n, T, K)`` and
``render(factors (..., K)) -> (..., C, H, W)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from pyro_dynvae.validation import as_generator, check_positive_int

from .streaming import ShardedStream

SPLITS = ("train", "test")
SAMPLE_CHUNK = 4096


class FactorType(NamedTuple):
    """What kind of values a factor takes, which decides how metrics and probes compare codes
    with it (:mod:`pyro_dynvae.assessment`): class labels, angles, or points on a line.

    :param str kind: ``"categorical"``, ``"periodic"`` or ``"continuous"``.
    :param float period: for a periodic factor, the length after which its values wrap around
        (``2 pi`` for an angle in radians, 1 for a hue in [0, 1)); ``None`` otherwise.
    """

    kind: str
    period: float | None = None


@dataclass(frozen=True)
class Factor:
    """One ground-truth factor of variation.

    :param str name: column name.
    :param float low: smallest value.
    :param float high: largest value (exclusive for a periodic factor).
    :param int num_categories: number of categories for a categorical factor (values
        ``0, ..., num_categories - 1``); ``None`` for a continuous factor.
    :param bool static: constant within every sequence.
    :param bool periodic: the value wraps around from ``high`` to ``low`` (angles, hues).
    :param symmetry: for a periodic factor whose frames repeat within one period, ``(name,
        orders)``: the categorical factor ``name`` decides the order ``k = orders[c]`` of the
        symmetry (category ``c`` looks the same after ``1 / k`` of a period, e.g. a square after
        a quarter turn); see :meth:`FactorSpace.identifiable_factors`.
    """

    name: str
    low: float
    high: float
    num_categories: int | None = None
    static: bool = False
    periodic: bool = False
    symmetry: tuple[str, tuple[int, ...]] | None = None

    @property
    def factor_type(self) -> FactorType:
        """The factor's :class:`FactorType`: categorical, periodic with period ``high - low``,
        or continuous."""
        if self.num_categories is not None:
            return FactorType("categorical")
        if self.periodic:
            return FactorType("periodic", self.high - self.low)
        return FactorType("continuous")

    def codes(self, values: torch.Tensor, num_bins: int) -> torch.Tensor:
        """Integer codes: the category, or the index of one of ``num_bins`` equal-width bins."""
        if self.num_categories is not None:
            return values.round().long()
        width = self.high - self.low
        if width <= 0:
            return torch.zeros_like(values, dtype=torch.long)
        scaled = torch.floor((values.double() - self.low) / width * num_bins).long()
        return scaled.clamp(0, num_bins - 1)


def check_index(index: int, num_sequences: int) -> int:
    """Return ``index`` into ``num_sequences`` sequences as a non-negative int (negative
    indices count from the end, as for a list).

    :raises TypeError: if ``index`` is not an integer.
    :raises IndexError: naming the index as given and the valid range.
    """
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"index must be an int, got {type(index).__name__}")
    if not -num_sequences <= index < num_sequences:
        raise IndexError(
            f"index {index} out of range for {num_sequences} sequences "
            f"(valid: {-num_sequences} to {num_sequences - 1})"
        )
    return int(index) % num_sequences


def check_split(split: str) -> int:
    """Return the integer code of ``split`` (0 for ``"train"``, 1 for ``"test"``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return SPLITS.index(split)


class FactorSpace:
    """Metadata and integer coding of a list of factors (``self.factors``)."""

    factors: list[Factor]

    @property
    def factor_names(self) -> list[str]:
        """The ``K`` factor names, in column order."""
        return [factor.name for factor in self.factors]

    @property
    def static_factors(self) -> list[str]:
        """Names of the factors that are constant within every sequence."""
        return [factor.name for factor in self.factors if factor.static]

    @property
    def static_mask(self) -> torch.Tensor:
        """Boolean mask ``(K,)``: which factors are static."""
        return torch.tensor([factor.static for factor in self.factors], dtype=torch.bool)

    @property
    def factor_types(self) -> list[FactorType]:
        """The :class:`FactorType` of every factor, in column order. A periodic factor with a
        ``symmetry`` has the period of its :meth:`identifiable_factors` values (its own)."""
        return [factor.factor_type for factor in self.factors]

    def identifiable_factors(self, factors: torch.Tensor) -> torch.Tensor:
        r"""Factor rows reduced to what a frame can show: every periodic factor with a
        ``symmetry`` of order :math:`k` (read from the row's category of the factor it names) is
        wrapped :math:`k` times around its circle (a bounded, non-periodic factor is left as it
        is),

        .. math:: v \mapsto \mathrm{low} + \big(k (v - \mathrm{low})\big) \bmod P,
                  \qquad P = \mathrm{high} - \mathrm{low},

        so two values that draw the same frame (a square turned by a quarter turn) become one,
        and the result is again periodic with period :math:`P`. This is the usual treatment of
        :math:`k`-axial circular data (multiply the angles by :math:`k`; Mardia & Jupp 2000,
        "Directional Statistics", Wiley). Other columns are returned unchanged.

        :param torch.Tensor factors: rows ``(..., K)``.
        :returns: float32 rows ``(..., K)``.
        :raises ValueError: if the factor that decides a symmetry is not among these factors.
        """
        factors = self._check_rows(factors).clone()
        for k, (factor, order) in self._symmetry_orders(factors).items():
            period = factor.high - factor.low
            wrapped = torch.remainder(order * (factors[..., k].double() - factor.low), period)
            factors[..., k] = (factor.low + wrapped).float()
        return factors

    def identifiable_periods(self, factors: torch.Tensor) -> dict[str, torch.Tensor]:
        """The period modulo which each periodic factor with a ``symmetry`` can be read from a
        frame, row by row: ``P / k`` for symmetry order ``k`` (a square's full-turn rotation is
        seen modulo a quarter turn); the same declaration as :meth:`identifiable_factors`.

        :param torch.Tensor factors: rows ``(..., K)``.
        :returns: ``{name: periods (...)}`` in the rows' dtype, empty without such factors.
        """
        factors = self._check_rows(factors)
        return {
            factor.name: ((factor.high - factor.low) / order).to(factors.dtype)
            for factor, order in self._symmetry_orders(factors).values()
        }

    def _symmetry_orders(self, factors: torch.Tensor) -> dict[int, tuple[Factor, torch.Tensor]]:
        """Column -> (factor, per-row symmetry order ``k`` (float64)) of the periodic factors
        with a ``symmetry``."""
        orders = {}
        for k, factor in enumerate(self.factors):
            if factor.symmetry is None or not factor.periodic:
                continue
            name, by_category = factor.symmetry
            if name not in self.factor_names:
                raise ValueError(
                    f"factor {factor.name!r} is identifiable only given {name!r}, which is not "
                    f"among the factors {self.factor_names}; keep both"
                )
            category = factors[..., self.factor_names.index(name)].round().long()
            orders[k] = (factor, torch.tensor(by_category, dtype=torch.float64)[category])
        return orders

    def factor_index(self, name: str | int) -> int:
        """Column index of a factor given its name (or a column index, checked)."""
        if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
            if not 0 <= name < len(self.factors):
                raise ValueError(f"factor index must be in [0, {len(self.factors)}), got {name}")
            return int(name)
        if name not in self.factor_names:
            raise ValueError(f"unknown factor {name!r}; expected one of {self.factor_names}")
        return self.factor_names.index(name)

    def num_codes(self, num_bins: int = 20) -> list[int]:
        """Number of integer codes of each factor under :meth:`discretize`."""
        check_positive_int(num_bins, "num_bins")
        return [
            f.num_categories if f.num_categories is not None else num_bins for f in self.factors
        ]

    def discretize(self, factors: torch.Tensor, num_bins: int = 20) -> torch.Tensor:
        """Integer codes of factor values, for disentanglement metrics.

        Categorical factors keep their category; a continuous factor is cut into ``num_bins``
        equal-width bins over its fixed range ``[low, high]`` (a property of the dataset, not of
        the batch, so codes agree across batches).

        :param torch.Tensor factors: factor rows ``(..., K)``.
        :param int num_bins: bins per continuous factor.
        :returns: int64 codes ``(..., K)``.
        """
        check_positive_int(num_bins, "num_bins")
        factors = self._check_rows(factors)
        return torch.stack(
            [f.codes(factors[..., k], num_bins) for k, f in enumerate(self.factors)], dim=-1
        )

    def _check_rows(self, factors: torch.Tensor | np.ndarray) -> torch.Tensor:
        factors = torch.as_tensor(factors, dtype=torch.float32)
        if factors.dim() == 0 or factors.shape[-1] != len(self.factors):
            raise ValueError(
                f"factors must have shape (..., {len(self.factors)}) with columns "
                f"{self.factor_names}, got {tuple(factors.shape)}"
            )
        if not torch.isfinite(factors).all():
            raise ValueError("factors must be finite")
        return factors


class FactorDataset(Dataset, FactorSpace):
    """Base class: sequences of frames labelled, frame by frame, with their generative factors.

    :param int num_sequences: dataset length.
    :param int num_frames: frames per sequence ``T``.
    :param int seed: seed; sequence ``i`` depends only on ``(seed, split, i)``.
    :param str split: ``"train"`` or ``"test"``.
    """

    def __init__(self, num_sequences: int, num_frames: int, seed: int, split: str) -> None:
        self.num_sequences = check_positive_int(num_sequences, "num_sequences")
        self.num_frames = check_positive_int(num_frames, "num_frames")
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.split = split
        self._split_code = check_split(split)
        self.factors: list[Factor] = []

    # ----- subclass hooks -------------------------------------------------------------------
    def _sample_trajectories(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` factor trajectories, shape ``(n, T, K)``."""
        raise NotImplementedError

    def render(self, factors: torch.Tensor) -> torch.Tensor:
        """Render frames from factor rows ``(..., K)``; returns ``(..., C, H, W)`` in [0, 1]."""
        raise NotImplementedError

    def _complete_fixed(self, rows: np.ndarray, fixed: set[int], rng: np.random.Generator) -> None:
        """Make the free columns of ``rows`` consistent with the fixed ones (in place).

        Override where factors constrain each other (a digit's class and its image).
        """

    # ----- sequences ------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.num_sequences

    def sequence_factors(self, indices: Sequence[int]) -> torch.Tensor:
        """Factor trajectories ``(B, T, K)`` float32 of the sequences ``indices``."""
        trajectories = [
            self._sample_trajectories(
                np.random.default_rng(
                    [self.seed, self._split_code, check_index(i, self.num_sequences)]
                ),
                1,
            )
            for i in indices
        ]
        if not trajectories:
            return torch.zeros(0, self.num_frames, len(self.factors))
        return torch.from_numpy(np.concatenate(trajectories).astype(np.float32))

    def get_batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Render many sequences at once.

        :param indices: sequence indices.
        :returns: ``(frames (B, T, C, H, W), factors (B, T, K))``.
        """
        factors = self.sequence_factors(indices)
        return self.render(factors), factors

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        frames, factors = self.get_batch([index])
        return frames[0], factors[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batched fetch used by :class:`torch.utils.data.DataLoader` (one vectorised render)."""
        frames, factors = self.get_batch(indices)
        return list(zip(frames, factors, strict=True))

    # ----- factor-conditioned sampling ------------------------------------------------------
    @property
    def metric_factors(self) -> list[str]:
        """Factors recommended for per-frame disentanglement metrics (default: all).

        A subclass leaves out factors a single frame does not show (velocities) and nuisance
        refinements of another factor (which MNIST image of a class); see :meth:`factor_subset`.
        """
        return self.factor_names

    def _sample_rows(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` rows ``(n, K)``, each a uniformly chosen frame of a fresh random sequence."""
        rows = [np.zeros((0, self.num_frames, len(self.factors)))[:, 0]]
        for start in range(0, n, SAMPLE_CHUNK):  # bounds the (chunk, T, K) trajectory array
            count = min(SAMPLE_CHUNK, n - start)
            trajectories = self._sample_trajectories(rng, count)
            rows.append(trajectories[np.arange(count), rng.integers(self.num_frames, size=count)])
        return np.concatenate(rows)

    def sample_factors(
        self,
        n: int,
        rng: np.random.Generator | int | None = None,
        fixed: Mapping[str | int, float] | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` independent per-frame factor rows from the data distribution.

        Each row is a uniformly chosen frame of a fresh random sequence, so rows follow the
        marginal distribution of one frame. ``fixed`` sets chosen factors to one value in every
        row (the other factors are redrawn consistently), which is what intervention-based
        metrics (BetaVAE, FactorVAE scores) need: render the rows with :meth:`render`.

        :param int n: number of rows.
        :param rng: a :class:`numpy.random.Generator`, an int seed, or ``None``.
        :param dict fixed: ``{factor name or column: value}``.
        :returns: float32 rows ``(n, K)``.
        """
        n = check_positive_int(n, "n")
        rng = as_generator(rng)
        rows = self._sample_rows(n, rng)
        fixed_columns = set()
        for key, value in (fixed or {}).items():
            column = self.factor_index(key)
            factor = self.factors[column]
            # compare in float32, the precision of the rows (a row's value may round to high)
            if not np.float32(factor.low) <= np.float32(value) <= np.float32(factor.high):
                raise ValueError(
                    f"fixed value of {factor.name!r} must lie in [{factor.low}, {factor.high}], "
                    f"got {value}"
                )
            if factor.num_categories is not None and value != int(value):
                raise ValueError(f"fixed value of categorical {factor.name!r} must be an integer")
            rows[:, column] = value
            fixed_columns.add(column)
        self._complete_fixed(rows, fixed_columns, rng)
        return torch.from_numpy(rows.astype(np.float32))

    def factor_subset(self, names: Sequence[str] | None = None, seed: int = 0) -> FactorSubset:
        """A ground-truth sampler over some factors; the others become nuisance variables.

        :param names: the factors to keep (default :attr:`metric_factors`).
        :param int seed: seed of the nuisance draws made when rendering.
        """
        return FactorSubset(self, self.metric_factors if names is None else names, seed)

    def stream(self, **kwargs) -> ShardedStream:
        """A sharded streaming view of this dataset; keywords as :class:`ShardedStream`."""
        return ShardedStream(self, **kwargs)


class FactorSubset(FactorSpace):
    """A view of a dataset's factor-conditioned sampler restricted to some of its factors.

    ``sample_factors``, ``render`` and ``discretize`` work on rows of the kept factors only.
    :meth:`render` draws the left-out factors afresh for every row from the data distribution
    given the kept ones (e.g. a random image of the given digit class), so they act as nuisance
    variables, as the style of a handwritten digit does in the usual disentanglement protocol.
    The nuisance draws come from a generator seeded once at construction.

    :param FactorDataset dataset: the dataset.
    :param names: names of the kept factors.
    :param int seed: seed of the nuisance draws.
    """

    def __init__(self, dataset: FactorDataset, names: Sequence[str], seed: int = 0) -> None:
        if (
            isinstance(names, str)
            or not names
            or not all(isinstance(name, str) for name in names)
            or len(set(names)) != len(names)
        ):
            raise ValueError(f"names must be a non-empty list of distinct factor names: {names!r}")
        self.dataset = dataset
        self.columns = [dataset.factor_index(name) for name in names]
        self.factors = [dataset.factors[column] for column in self.columns]
        self._rng = np.random.default_rng(check_positive_int(seed, "seed", minimum=0))

    def sample_factors(
        self,
        n: int,
        rng: np.random.Generator | int | None = None,
        fixed: Mapping[str | int, float] | None = None,
    ) -> torch.Tensor:
        """As :meth:`FactorDataset.sample_factors`, returning the kept columns ``(n, K')``."""
        fixed = {self.columns[self.factor_index(key)]: v for key, v in (fixed or {}).items()}
        return self.dataset.sample_factors(n, rng, fixed)[:, self.columns]

    def render(self, factors: torch.Tensor) -> torch.Tensor:
        """Frames ``(..., C, H, W)`` from rows ``(..., K')`` of the kept factors."""
        factors = self._check_rows(factors)
        rows = factors.reshape(-1, factors.shape[-1]).double().numpy()
        full = self.dataset._sample_rows(len(rows), self._rng)
        full[:, self.columns] = rows
        self.dataset._complete_fixed(full, set(self.columns), self._rng)
        frames = self.dataset.render(torch.from_numpy(full.astype(np.float32)))
        return frames.reshape(*factors.shape[:-1], *frames.shape[1:])
