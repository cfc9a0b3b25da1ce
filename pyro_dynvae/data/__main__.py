"""Write example strips and animations of the datasets: ``python -m pyro_dynvae.data FOLDER``.

Produces ``data_moving_mnist.png``/``.gif``, ``data_sprites.png``/``.gif`` and
``data_sprites_rgb.png`` (3 channels over a drifting texture) in ``FOLDER``; rows are sequences
(for the sprites, the first test sequence of each shape), columns every second frame of 20.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .moving_mnist import MovingMNIST
from .sprites import DynamicSprites
from .visualize import save_gif, save_strip


def write_example_figures(folder: str | Path, num_sequences: int = 4) -> list[Path]:
    """Render test sequences of each dataset and write PNG strips and GIFs.

    :param folder: output folder (created if missing).
    :param int num_sequences: Moving MNIST sequences (rows); the sprite figures show the first
        sequence of each shape.
    :returns: the paths written.
    """
    folder = Path(folder)
    datasets = {
        "moving_mnist": MovingMNIST(num_sequences=num_sequences, split="test"),
        "sprites": DynamicSprites(num_sequences=100, split="test"),
        "sprites_rgb": DynamicSprites(
            num_sequences=100, split="test", seed=1, channels=3, background="texture"
        ),
    }
    written = []
    for name, dataset in datasets.items():
        indices = list(range(num_sequences))
        if isinstance(dataset, DynamicSprites):  # show one sequence of each shape
            shapes = dataset.sequence_factors(range(len(dataset)))[:, 0, 0].tolist()
            indices = [shapes.index(code) for code in sorted(set(shapes))]
        frames, _ = dataset.get_batch(indices)
        written.append(save_strip(frames[:, ::2], folder / f"data_{name}.png"))
        if name != "sprites_rgb":
            written.append(save_gif(frames, folder / f"data_{name}.gif", scale=1))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="output folder")
    parser.add_argument("--num-sequences", type=int, default=4)
    arguments = parser.parse_args()
    for path in write_example_figures(arguments.folder, arguments.num_sequences):
        print(path)


if __name__ == "__main__":
    main()
