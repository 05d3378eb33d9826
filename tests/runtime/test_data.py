"""Datasets: the CIFAR archive format, the restricted unpickler, digits, synthetic, augmentation."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from gstc.plan import DataSpec
from gstc.runtime.batches import crop_flip, crop_flip_draws, normalize
from gstc.runtime.data import DataError, load
from gstc.runtime.rng import epoch_generator

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


# --- torchvision's formats, image folders and own datasets --------------------------------


def write_idx(path, array: np.ndarray) -> None:
    """An IDX file as MNIST ships it: magic (0, 0, type 0x08 = uint8, dims), big-endian sizes, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root, folder: str = "MNIST", train: int = 12, test: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", train), ("t10k", test)):
        x, y = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        out[prefix] = (x, y)
    return out


def test_the_runtime_loads_every_dataset_the_spec_language_names():
    from gstc.runtime.loaders import LOADERS
    from gstc.datasets import DATASETS

    assert set(LOADERS) == set(DATASETS)


@pytest.mark.parametrize("dataset, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_mnist_family_loads_torchvisions_raw_idx_files(tmp_path, dataset, folder):
    written = write_mnist(tmp_path, folder)
    ds = load(DataSpec(dataset=dataset, root=str(tmp_path)))
    assert ds.train_x.shape == (12, 1, 28, 28) and ds.test_x.shape == (6, 1, 28, 28) and ds.classes == 10
    assert np.array_equal(ds.train_x[:, 0].numpy(), written["train"][0])
    assert np.array_equal(ds.test_y.numpy(), written["t10k"][1].astype(np.int64))
    assert ds.mean.shape == (1,) and abs(float(ds.mean[0]) - written["train"][0].mean() / 255) < 1e-5  # measured


def test_mnist_missing_or_malformed_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"MNIST/raw lacks train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                       r"t10k-labels-idx1-ubyte "):
        load(DataSpec(dataset="mnist", root=str(tmp_path)))
    write_mnist(tmp_path)
    labels = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    kept = labels.read_bytes()
    labels.unlink()  # only this one missing: the message names it, and only it
    with pytest.raises(DataError, match=r"MNIST/raw lacks t10k-labels-idx1-ubyte \(torchvision"):
        load(DataSpec(dataset="mnist", root=str(tmp_path)))
    labels.write_bytes(kept)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x99\x03garbage")
    with pytest.raises(DataError, match="not in the IDX format of MNIST"):
        load(DataSpec(dataset="mnist", root=str(tmp_path)))


def write_svhn(root, n: int = 10, seed: int = 0):
    import scipy.io

    rng = np.random.default_rng(seed)
    out = {}
    for split in ("train", "test"):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # (H, W, C, N), as SVHN's .mat files hold it
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # 1..10, where 10 is the digit 0
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
    return out


def test_svhn_loads_the_mat_files_with_the_digit_0_relabelled(tmp_path):
    written = write_svhn(tmp_path)
    ds = load(DataSpec(dataset="svhn", root=str(tmp_path)))
    x, y = written["train"]
    assert ds.train_x.shape == (10, 3, 32, 32)
    assert np.array_equal(ds.train_x.numpy(), x.transpose(3, 2, 0, 1))
    assert np.array_equal(ds.train_y.numpy(), np.where(y[:, 0] == 10, 0, y[:, 0]))
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="test_32x32.mat is not an SVHN .mat file"):
        load(DataSpec(dataset="svhn", root=str(tmp_path)))
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match="test_32x32.mat does not exist"):
        load(DataSpec(dataset="svhn", root=str(tmp_path)))


def write_folder(root, classes=("cat", "dog", "owl"), per_class: int = 3, size=(20, 14), seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for i, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(per_class):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                ext = "png" if k % 2 == 0 else "jpg"
                Image.fromarray(pixels).save(folder / f"{k}.{ext}")


@pytest.mark.parametrize("channels", [None, 1])
def test_imagefolder_resizes_every_image_once_and_names_classes_by_folder(tmp_path, channels):
    write_folder(tmp_path)
    ds = load(DataSpec(dataset="imagefolder", root=str(tmp_path), image_size=16, channels=channels))
    c = channels or 3
    assert ds.train_x.shape == (9, c, 16, 16) and ds.test_x.shape == (9, c, 16, 16) and ds.classes == 3
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # cat, dog, owl: sorted folder names
    assert ds.mean.shape == (c,)


def test_imagefolder_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(DataError, match="train is not a folder"):
        load(DataSpec(dataset="imagefolder", root=str(tmp_path), image_size=16))
    write_folder(tmp_path)
    (tmp_path / "test" / "emu").mkdir()
    with pytest.raises(DataError, match="has classes that .* lacks: emu"):
        load(DataSpec(dataset="imagefolder", root=str(tmp_path), image_size=16))
    (tmp_path / "test" / "emu").rmdir()
    (tmp_path / "train" / "cat" / "9.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"cat/9.png is not a readable image"):
        load(DataSpec(dataset="imagefolder", root=str(tmp_path), image_size=16))


def test_a_dataset_too_large_for_the_device_says_how_large(tmp_path, monkeypatch):
    from gstc.runtime import loaders

    write_folder(tmp_path)
    monkeypatch.setattr(loaders, "_free_bytes", lambda device: 4096)
    with pytest.raises(DataError, match=r"take 0.00 GiB as uint8, and cpu has 0.00 GiB free"):
        load(DataSpec(dataset="imagefolder", root=str(tmp_path), image_size=16))


def own_data(root: str, n: int = 8, bad: str = ""):
    x = np.zeros((n, 10, 12), dtype=np.float32 if bad == "dtype" else np.uint8)  # (N, H, W): one channel
    y = np.arange(n) % (3 if bad != "labels" else 99)
    if bad == "missing":
        return {"train_x": x}
    return {"train_x": x, "train_y": y, "test_x": x[:4], "test_y": y[:4]}


def test_an_own_dataset_by_import_path(tmp_path):
    ds = load(DataSpec(dataset="tests.runtime.test_data:own_data", args={"n": 9}))
    assert ds.train_x.shape == (9, 1, 10, 12) and ds.classes == 3 and ds.size == (10, 12) and ds.channels == 1
    with pytest.raises(DataError, match="train_x is float32; expected uint8"):
        load(DataSpec(dataset="tests.runtime.test_data:own_data", args={"bad": "dtype"}))
    with pytest.raises(DataError, match="without train_y, test_x, test_y"):
        load(DataSpec(dataset="tests.runtime.test_data:own_data", args={"bad": "missing"}))
    with pytest.raises(DataError, match="no module named 'nowhere'"):
        load(DataSpec(dataset="nowhere.data:images"))
    with pytest.raises(DataError, match="has no attribute 'own_dat'"):
        load(DataSpec(dataset="tests.runtime.test_data:own_dat"))


def test_grayscale_28x28_images_train_a_built_in_resnet(tmp_path):
    # The model gets the data's channel count: ResNet20's stem reads 1 channel, its pooling any size.
    from gstc.jsonio import read_jsonl
    from gstc.paths import ResultsDir
    from tests.runtime.conftest import compile_text, run_plan

    write_mnist(tmp_path, train=40, test=10)
    plan = compile_text(f"""\
        gstc: 1
        name: gray
        model: {{arch: resnet20, width: 0.25}}
        data: {{dataset: mnist, root: {tmp_path}}}
        train: {{epochs: 2, batch_size: 20, optimizer: {{name: sgd, lr: 0.01}}}}
        prune: {{schedule: {{start: 1}}, layers: [{{select: "layer3.*.conv1", amount: 0.5}}]}}
        """)
    results = ResultsDir(tmp_path / "r")
    _, infos = run_plan(plan, results)
    assert infos[0]["status"] == "done"
    assert [r["kept"] for r in read_jsonl(results.epochs_jsonl(plan.runs[0].id))][-1] == {
        f"layer3.{b}.conv1": 8 for b in range(3)}


def test_free_cuda_memory_is_asked_of_the_device_by_its_index(monkeypatch):
    """torch.cuda.mem_get_info took only an int before torch 2.5 (pyproject allows 2.4): gstc passes the index."""
    from gstc.runtime import loaders

    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: asked.append(index) or (7 << 30, 80 << 30))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert loaders._free_bytes(torch.device("cuda")) == 7 << 30 and loaders._free_bytes(torch.device("cuda:1")) == 7 << 30
    assert asked == [3, 1] and all(type(i) is int for i in asked)
