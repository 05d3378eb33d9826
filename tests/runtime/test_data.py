"""Datasets: the CIFAR archive format, the restricted unpickler, digits, synthetic, augmentation."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from gstc.plan import DataSpec
from gstc.runtime.data import DataError, crop_flip, crop_flip_draws, epoch_generator, load, normalize

torch = pytest.importorskip("torch")


def write_cifar(root, hundred: bool = False, per_batch: int = 6, seed: int = 0):
    """A tiny archive in exactly the layout and pickle format of the real one (bytes keys, uint8 rows)."""
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    names = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    key = b"fine_labels" if hundred else b"labels"
    written = {}
    for name in names:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 100 if hundred else 10, per_batch).tolist()
        batch = {b"batch_label": name.encode(), key: labels, b"data": data, b"filenames": [b"x.png"] * per_batch}
        if hundred:
            batch[b"coarse_labels"] = [0] * per_batch
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
        written[name] = (data, labels)
    return written


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_archives_load_in_the_standard_layout(tmp_path, hundred):
    written = write_cifar(tmp_path, hundred)
    ds = load(DataSpec(dataset="cifar100" if hundred else "cifar10", root=str(tmp_path)))
    train_names = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    expected = np.concatenate([written[n][0] for n in train_names]).reshape(-1, 3, 32, 32)
    assert ds.train_x.dtype == torch.uint8 and np.array_equal(ds.train_x.numpy(), expected)
    assert ds.train_y.tolist() == sum((written[n][1] for n in train_names), [])
    assert len(ds.test_y) == 6 and ds.classes == (100 if hundred else 10)


def test_missing_archive_names_the_folder(tmp_path):
    with pytest.raises(DataError, match=r"CIFAR-10 not found: .*cifar-10-batches-py lacks data_batch_1"):
        load(DataSpec(dataset="cifar10", root=str(tmp_path)))


def test_the_unpickler_refuses_anything_but_arrays_and_containers(tmp_path):
    write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": []}, fh, protocol=2)
    with pytest.raises(DataError, match="refusing to load"):
        load(DataSpec(dataset="cifar10", root=str(tmp_path)))


def test_digits_are_32x32_rgb_with_a_fixed_split():
    a = load(DataSpec(dataset="digits", root="unused"))
    b = load(DataSpec(dataset="digits", root="unused"))
    assert a.train_x.shape == (1437, 3, 32, 32) and a.test_x.shape == (360, 3, 32, 32)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert torch.equal(a.train_x[:, 0], a.train_x[:, 2])  # grey digits repeated over 3 channels
    assert set(a.train_y.tolist()) == set(range(10))
    x = normalize(a.train_x, a)
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01  # stats measured on train


def augment(x, generator):
    """What a training batch gets: crop_flip's draws from a seeded generator, back to (N, 3, H, W)."""
    return crop_flip(x, crop_flip_draws(len(x), generator)).permute(0, 3, 1, 2)


def test_augment_is_a_padded_crop_and_flip():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.int64).reshape(2, 3, 32, 32).to(torch.uint8)
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(2):  # each output is one of the 9x9 crops of the padded image, possibly flipped
        crops = [padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)
    again = augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # seeded


def test_epoch_generators_differ_by_seed_epoch_and_purpose():
    draws = {(s, e, p): torch.randint(0, 2**30, (1,), generator=epoch_generator(s, e, p)).item()
             for s in (0, 1) for e in (1, 2) for p in (0, 1)}
    assert len(set(draws.values())) == len(draws)
