import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pyro_dynvae.data import MovingMNIST, ShardedStream, save_gif, save_strip


@pytest.fixture(scope="module")
def dataset():
    return MovingMNIST(num_sequences=23, num_frames=4, seed=5)


def identify(dataset, factors):
    """Recover the sequence index of a factor trajectory by matching against every sequence."""
    _, all_factors = dataset.get_batch(range(len(dataset)))
    matches = [i for i in range(len(dataset)) if torch.equal(all_factors[i], factors)]
    assert len(matches) == 1
    return matches[0]


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("num_workers", [1, 2, 4])
@pytest.mark.parametrize("shuffle", [False, True])
def test_shards_cover_every_index_exactly_once(dataset, world_size, num_workers, shuffle):
    counts = Counter()
    per_rank = []
    for rank in range(world_size):
        stream = ShardedStream(dataset, rank=rank, world_size=world_size, shuffle=shuffle, seed=1)
        stream.set_epoch(2)
        shards = [stream.shard_indices(w, num_workers).tolist() for w in range(num_workers)]
        per_rank.append(sum(len(s) for s in shards))
        assert per_rank[-1] == len(stream)
        for shard in shards:
            counts.update(shard)
    assert sorted(counts) == list(range(23)) and set(counts.values()) == {1}
    assert max(per_rank) - min(per_rank) <= 1


def test_rank_share_does_not_depend_on_workers():
    ds = MovingMNIST(num_sequences=6, num_frames=1)
    for num_workers in (1, 2, 4):
        shares = []
        for rank in range(2):
            stream = ShardedStream(ds, rank=rank, world_size=2)
            shares.append(
                sorted(
                    np.concatenate(
                        [stream.shard_indices(w, num_workers) for w in range(num_workers)]
                    ).tolist()
                )
            )
        assert shares == [[0, 2, 4], [1, 3, 5]]


def test_shuffle_is_shared_across_ranks_and_changes_with_epoch(dataset):
    first = ShardedStream(dataset, rank=0, world_size=1, shuffle=True, seed=3)
    order0 = first.shard_indices().tolist()
    assert sorted(order0) == list(range(23)) and order0 != list(range(23))
    first.set_epoch(1)
    assert first.shard_indices().tolist() != order0
    ranks = [ShardedStream(dataset, rank=r, world_size=2, shuffle=True, seed=3) for r in (0, 1)]
    interleaved = [None] * 23
    interleaved[0::2], interleaved[1::2] = (r.shard_indices().tolist() for r in ranks)
    assert interleaved == order0


def test_drop_last_equalises_ranks(dataset):
    streams = [ShardedStream(dataset, rank=r, world_size=3, drop_last=True) for r in range(3)]
    assert [len(s) for s in streams] == [7, 7, 7]
    indices = np.concatenate([s.shard_indices() for s in streams])
    assert len(set(indices.tolist())) == 21


def test_rank_defaults_to_torch_distributed(dataset, monkeypatch):
    assert ShardedStream(dataset).shard_indices().tolist() == list(range(23))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 4)
    assert ShardedStream(dataset).shard_indices().tolist() == [1, 5, 9, 13, 17, 21]


def test_dataloader_workers_stream_every_item_once(dataset):
    stream = dataset.stream(rank=1, world_size=2, chunk_size=3)
    loader = DataLoader(stream, batch_size=4, num_workers=2)
    seen = []
    for frames, factors in loader:
        assert frames.shape[1:] == (4, 1, 64, 64)
        for b in range(len(factors)):
            index = identify(dataset, factors[b])
            assert torch.equal(frames[b], dataset[index][0])
            seen.append(index)
    assert sorted(seen) == list(range(1, 23, 2))


def test_map_style_loader_uses_batched_fetch(dataset):
    loader = DataLoader(dataset, batch_size=5, shuffle=False)
    frames, factors = next(iter(loader))
    expected = [dataset[i] for i in range(5)]
    assert torch.equal(frames, torch.stack([f for f, _ in expected]))
    assert torch.equal(factors, torch.stack([z for _, z in expected]))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"rank": 0}, ValueError, "rank and world_size"),
        ({"rank": 2, "world_size": 2}, ValueError, "rank must be < world_size"),
        ({"rank": 0, "world_size": 0}, ValueError, "world_size"),
        ({"rank": -1, "world_size": 2}, ValueError, "rank"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_stream_bad_arguments(dataset, kwargs, error, match):
    with pytest.raises(error, match=match):
        ShardedStream(dataset, **kwargs)


def test_no_network_access_is_attempted():
    """Import, build every dataset and read items in a fresh process with sockets disabled."""
    script = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise RuntimeError("network access attempted")

        class RefusingSocket(socket.socket):
            __init__ = refuse

        socket.socket = RefusingSocket
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        try:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raise SystemExit("sockets are not blocked")
        except RuntimeError:
            pass

        from pyro_dynvae import data

        datasets = [
            data.MovingMNIST(num_sequences=3, split="train"),
            data.MovingMNIST(num_sequences=3, split="test", background="texture"),
            data.DynamicSprites(num_sequences=3, channels=3, background="brightness"),
        ]
        for ds in datasets:
            frames, factors = ds[2]
            assert frames.shape[0] == factors.shape[0]
            ds.render(ds.sample_factors(4, rng=0))
        print("offline ok", len(datasets))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "offline ok 3" in result.stdout


def test_save_strip_layout_and_pixels(dataset, tmp_path):
    frames, _ = dataset.get_batch([0, 1, 2])
    path = save_strip(frames, tmp_path / "figs" / "strip.png", scale=2, border=1)
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (2 * (3 * 65 + 1), 2 * (4 * 65 + 1), 3)
    # sequence 1, frame 2 sits in row 1, column 2 (after the borders), upscaled by 2
    top, left = 2 * (1 + 65), 2 * (1 + 2 * 65)
    tile = image[top : top + 128 : 2, left : left + 128 : 2, 0]
    expected = (frames[1, 2, 0] * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(tile, expected)
    assert (image[0] == 128).all()  # border
    colour = torch.rand(2, 3, 8, 8)
    rgb = np.asarray(Image.open(save_strip(colour, tmp_path / "rgb.png", scale=1)).convert("RGB"))
    np.testing.assert_array_equal(rgb[1:9, 1:9], (colour[0] * 255).round().byte().permute(1, 2, 0))


def test_save_gif_frames(dataset, tmp_path):
    frames, _ = dataset.get_batch([0, 1])
    path = save_gif(frames, tmp_path / "anim.gif", fps=4, scale=1)
    with Image.open(path) as gif:
        assert gif.n_frames == 4 and gif.size == (2 * 65 + 1, 65 + 1)
        gif.seek(3)
        last = np.asarray(gif.convert("L"))
    np.testing.assert_allclose(last[1:65, 1:65], frames[0, 3, 0].numpy() * 255, atol=1)


@pytest.mark.parametrize(
    "frames, path, match",
    [
        (torch.zeros(2, 2, 8, 8), "a.png", "C in"),
        (torch.zeros(8, 8), "a.png", "shape"),
        (torch.zeros(2, 0, 1, 8, 8), "a.png", "empty"),
        (torch.full((2, 1, 8, 8), 1.5), "a.png", r"\[0, 1\]"),
        (torch.full((2, 1, 8, 8), float("nan")), "a.png", "finite"),
        (torch.zeros(2, 1, 8, 8), "a.jpg", r"\.png"),
    ],
)
def test_visualize_errors(tmp_path, frames, path, match):
    with pytest.raises(ValueError, match=match):
        save_strip(frames, tmp_path / path)
    with pytest.raises(ValueError, match="fps"):
        save_gif(torch.zeros(2, 1, 8, 8), tmp_path / "a.gif", fps=0)


def test_example_figures(tmp_path):
    from pyro_dynvae.data.__main__ import write_example_figures

    paths = write_example_figures(tmp_path, num_sequences=2)
    names = sorted(path.name for path in paths)
    assert names == [
        "data_moving_mnist.gif",
        "data_moving_mnist.png",
        "data_sprites.gif",
        "data_sprites.png",
        "data_sprites_rgb.png",
    ]
    with Image.open(tmp_path / "data_sprites.png") as strip:  # 4 shapes x 10 frames
        assert strip.size == (2 * (10 * 65 + 1), 2 * (4 * 65 + 1))
    with Image.open(tmp_path / "data_moving_mnist.gif") as gif:
        assert gif.n_frames == 20
