import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from pyro_dynvae.data import (
    MovingMNIST,
    MovingMNISTFile,
    ShardedStream,
    load_idx_digits,
    read_idx,
)


def idx_bytes(array, type_code=0x08):
    """Encode an array as IDX by hand (big-endian header, then the data)."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_mnist_folder(folder, size=8, counts=(30, 12), gz=False):
    """Digits of each class are squares of distinct brightness; train and test differ."""
    rng = np.random.default_rng(0)
    for prefix, count, offset in zip(("train", "t10k"), counts, (0, 100), strict=True):
        labels = np.arange(count, dtype=np.uint8) % 10
        images = np.zeros((count, size, size), dtype=np.uint8)
        images[:, 2:-2, 2:-2] = (offset + 10 * labels + rng.integers(0, 5, count))[:, None, None]
        for name, array in (
            (f"{prefix}-images-idx3-ubyte", images),
            (f"{prefix}-labels-idx1-ubyte", labels),
        ):
            data = idx_bytes(array)
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    np.testing.assert_array_equal(read_idx(path), array)
    wide = np.array([[1.5, -2.0], [3.25, 1e6]], dtype=np.float32)
    (tmp_path / "f.idx").write_bytes(idx_bytes(wide.astype(">f4"), 0x0D))
    out = read_idx(tmp_path / "f.idx")
    np.testing.assert_array_equal(out, wide)
    assert out.dtype == np.float32 and out.dtype.isnative


@pytest.mark.parametrize(
    "content, match",
    [
        (b"\x00\x00", "not an IDX file"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "not an IDX file"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "not an IDX file"),
        (b"\x00\x00\x08\x00", "not an IDX file"),
        (b"\x00\x00\x08\x02" + struct.pack(">I", 3), "truncated IDX header"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 3, 4) + bytes(11), r"shape \(3, 4\)"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + bytes(3), "has 11 bytes"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path, content, match):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_and_corrupt_gzip(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here")
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(b"this is not gzip data")
    with pytest.raises(ValueError, match="cannot read IDX file .*x-idx1-ubyte.gz"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_moving_mnist_from_idx_folder(tmp_path, gz):
    write_mnist_folder(tmp_path, gz=gz)
    images, labels = load_idx_digits(tmp_path, "train")
    assert images.shape == (30, 8, 8) and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, np.arange(30) % 10)
    ds = MovingMNIST(num_sequences=4, image_size=20, num_digits=1, source=tmp_path, seed=0)
    test = MovingMNIST(num_sequences=4, image_size=20, num_digits=1, source=tmp_path, split="test")
    assert ds.digit_size == 8 and ds.max_position == 12 and len(test.digit_labels) == 12
    frames, factors = ds[1]
    assert frames.shape == (20, 1, 20, 20)
    # the drawn square's brightness identifies the image; classes come from the label file
    image = int(factors[0, 1])
    assert int(factors[0, 0]) == image % 10
    assert abs(float(frames[0].max()) - images[image].max() / 255.0) < 1e-6
    # train digits are darker than 100/255, test digits brighter: pools come from different files
    assert test[0][0].max() >= 100 / 255 and ds.get_batch(range(4))[0].max() < 100 / 255
    with pytest.raises(ValueError, match="smaller than the canvas"):
        MovingMNIST(num_sequences=1, image_size=8, source=tmp_path)


def test_idx_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST folder not found"):
        load_idx_digits(tmp_path / "absent", "train")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        MovingMNIST(num_sequences=1, source=tmp_path)
    write_mnist_folder(tmp_path)
    labels = np.arange(29, dtype=np.uint8) % 10
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(ValueError, match="expected 30 labels"):
        load_idx_digits(tmp_path, "train")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(30, 11, np.uint8)))
    with pytest.raises(ValueError, match="labels in 0..9"):
        load_idx_digits(tmp_path, "train")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((12, 64), np.uint8)))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: expected uint8 images"):
        load_idx_digits(tmp_path, "test")


def test_moving_mnist_file(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, size=(5, 3, 16, 16), dtype=np.uint8)
    path = tmp_path / "mnist_test_seq.npy"
    np.save(path, array)
    ds = MovingMNISTFile(path, num_frames=5)
    assert len(ds) == 3 and ds.factor_names == [] and ds.static_factors == []
    frames, factors = ds[2]
    assert frames.shape == (5, 1, 16, 16) and frames.dtype == torch.float32
    assert factors.shape == (5, 0)
    torch.testing.assert_close(frames[:, 0], torch.from_numpy(array[:, 2]).float() / 255)
    assert torch.equal(ds[-1][0], frames)
    assert ds.image_size == 16 and ds.channels == 1
    with pytest.raises(IndexError):
        ds[3]
    streamed = list(ShardedStream(ds, rank=1, world_size=2))
    assert len(streamed) == 1 and torch.equal(streamed[0][0], ds[1][0])


def test_moving_mnist_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.npy"):
        MovingMNISTFile(tmp_path / "absent.npy")
    cases = {
        "float.npy": np.zeros((20, 2, 64, 64), np.float32),
        "three_d.npy": np.zeros((20, 64, 64), np.uint8),
        "empty.npy": np.zeros((20, 0, 64, 64), np.uint8),
    }
    for name, array in cases.items():
        np.save(tmp_path / name, array)
        with pytest.raises(ValueError, match=f"{name}: expected a .npy array of uint8"):
            MovingMNISTFile(tmp_path / name)
    (tmp_path / "garbage.npy").write_bytes(b"definitely not numpy")
    with pytest.raises(ValueError, match="cannot read .*garbage.npy"):
        MovingMNISTFile(tmp_path / "garbage.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="cannot read .*objects.npy"):
        MovingMNISTFile(tmp_path / "objects.npy")
    (tmp_path / "pickle.npy").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="cannot read .*pickle.npy"):
        MovingMNISTFile(tmp_path / "pickle.npy")
    full = np.zeros((20, 4, 64, 64), np.uint8)
    np.save(tmp_path / "truncated.npy", full)
    raw = (tmp_path / "truncated.npy").read_bytes()
    (tmp_path / "truncated.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cannot read .*truncated.npy"):
        MovingMNISTFile(tmp_path / "truncated.npy")
