"""Each dataset's files read into host arrays: uint8 images (N, C, H, W) and int64 labels, train then test.

- cifar10/cifar100: the standard python archives (`cifar-10-batches-py/`,
  `cifar-100-python/`) under `root`, read with an unpickler that builds only what the
  format holds (dicts, lists, strings, bytes, numpy arrays).
- digits: scikit-learn's 1,797 8x8 digits, resized to 32x32 and repeated to 3
  channels, split 80/20 by a fixed permutation. Real data, no download.
- synthetic: learnable class-conditional images of CIFAR shape, for tests/benchmarks.
- mnist, fashion_mnist, kmnist: torchvision's dataset classes over their own file layout
  (`root/MNIST/raw/train-images-idx3-ubyte`, ...): 28x28 grayscale, one channel.
- svhn: torchvision's files `root/train_32x32.mat` and `root/test_32x32.mat`, read with
  scipy.io.loadmat as torchvision's SVHN class reads them (that class also checks each
  file's MD5 sum, which only the published files pass; gstc checks their shapes instead).
- imagefolder: `root/train/CLASS/*.png|jpg|...` and `root/test/CLASS/...` (the layout of
  torchvision's ImageFolder), each image converted to RGB or grayscale and resized once.
- `module:function`: the user's own, returning uint8 images (N, C, H, W) and labels.

A file that is missing or unreadable, or images that would not fit in memory
(`check_memory`), raise a `DataError` that says where gstc looked and what to do.
`gstc.runtime.data.load` turns these arrays into a device-resident `Dataset`.
"""

from __future__ import annotations

import inspect
import io
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from gstc.plan import DataSpec

# Per-channel mean and std of the training images, in [0, 1] units.
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


class DataError(Exception):
    """A dataset that cannot be loaded; the message says where it looked and what to do."""


# --- CIFAR archives ------------------------------------------------------------------

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles: encodes a str, nothing more
}


class _ArchiveUnpickler(pickle.Unpickler):
    """Builds plain containers and numpy arrays only; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR archive holds only arrays and lists")


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        data = _ArchiveUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a CIFAR batch (expected a dict, found {type(data).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _images(batch: dict, path: Path) -> np.ndarray:
    data = np.asarray(batch.get("data"))
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: expected 'data' of shape (N, 3072), found {data.shape}")
    return data.reshape(-1, 3, 32, 32).astype(np.uint8)


def _cifar(root: str, hundred: bool, download: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = Path(root) / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    train_files = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    test_files = ["test"] if hundred else ["test_batch"]
    label_key = "fine_labels" if hundred else "labels"
    if not all((folder / f).is_file() for f in train_files + test_files) and download:
        import torchvision

        cls = torchvision.datasets.CIFAR100 if hundred else torchvision.datasets.CIFAR10
        try:
            cls(root, download=True)
        except Exception as exc:  # no network, a proxy, a full disk: say so plainly
            raise DataError(f"could not download {'CIFAR-100' if hundred else 'CIFAR-10'} into {root}: {exc}") from None
    missing = [f for f in train_files + test_files if not (folder / f).is_file()]
    if missing:
        name = "CIFAR-100" if hundred else "CIFAR-10"
        raise DataError(
            f"{name} not found: {folder.resolve()} lacks {', '.join(missing)}. Put the python version of the archive "
            f"there (the folder that torchvision's {name.replace('-', '')}(root, download=True) makes, e.g. by "
            f"extracting cifar-{'100' if hundred else '10'}-python.tar.gz into {root}), or set data.download: true "
            "on a machine with a network"
        )
    parts = {}
    for split, files in (("train", train_files), ("test", test_files)):
        xs, ys = [], []
        for f in files:
            try:
                batch = _unpickle(folder / f)
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
                raise DataError(f"{folder / f} is not a readable CIFAR batch: {exc}") from None
            xs.append(_images(batch, folder / f))
            ys.append(np.asarray(batch.get(label_key), dtype=np.int64))
        parts[split] = (np.concatenate(xs), np.concatenate(ys))
    return (*parts["train"], *parts["test"])


# --- digits and synthetic ------------------------------------------------------------


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # (1797, 1, 8, 8) in [0, 1]
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1).numpy()
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))  # the fixed train/test split
    cut = int(0.8 * len(labels))
    return images[order[:cut]], labels[order[:cut]], images[order[cut:]], labels[order[cut:]]


def _synthetic(train: int = 50_000, test: int = 10_000, classes: int = 10) -> tuple[np.ndarray, ...]:
    """Class templates (smooth 4x4 colour patterns upsampled to 32x32) plus pixel noise."""
    g = torch.Generator().manual_seed(0)
    templates = F.interpolate(torch.rand(classes, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear", align_corners=False)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = torch.randint(0, classes, (n,), generator=g)
        x = 0.6 * templates[y] + 0.4 * torch.rand(n, 3, 32, 32, generator=g)
        return (x * 255).round().to(torch.uint8).numpy(), y.numpy().astype(np.int64)

    return (*make(train), *make(test))


# --- torchvision's datasets ------------------------------------------------------------

_MNIST_LIKE = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}


def _mnist(d: DataSpec) -> tuple[np.ndarray, ...]:
    import torchvision

    cls = getattr(torchvision.datasets, _MNIST_LIKE[d.dataset])
    folder = Path(d.root) / cls.__name__ / "raw"
    parts = []
    for train in (True, False):
        try:
            ds = cls(d.root, train=train, download=d.download)
        except RuntimeError as exc:
            # torchvision looks for the four files whichever split it loads: name those not there
            names = [f"{p}-{kind}" for p in ("train", "t10k") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
            missing = [n for n in names if not (folder / n).is_file()] or names
            raise DataError(f"{cls.__name__} not found: {folder.resolve()} lacks {', '.join(missing)} "
                            f"(torchvision's layout; {exc}). Put the unzipped files there, "
                            "or set data.download: true on a machine with a network") from None
        except (AssertionError, ValueError, TypeError, KeyError) as exc:
            raise DataError(f"{folder}: a file is not in the IDX format of {cls.__name__} ({type(exc).__name__}: {exc})") from None
        if ds.data.dim() != 3 or len(ds.data) != len(ds.targets):
            raise DataError(f"{folder}: expected N images of HxW and N labels, found {tuple(ds.data.shape)} and "
                            f"{tuple(ds.targets.shape)}")
        parts += [ds.data.unsqueeze(1).numpy(), ds.targets.numpy().astype(np.int64)]
    return tuple(parts)


def _svhn(d: DataSpec) -> tuple[np.ndarray, ...]:
    import scipy.io

    parts = []
    for split in ("train", "test"):
        path = Path(d.root) / f"{split}_32x32.mat"
        if not path.is_file() and d.download:
            import torchvision

            try:
                torchvision.datasets.SVHN(d.root, split=split, download=True)
            except Exception as exc:
                raise DataError(f"could not download SVHN into {d.root}: {exc}") from None
        if not path.is_file():
            raise DataError(f"SVHN not found: {path.resolve()} does not exist (torchvision's layout: train_32x32.mat "
                            "and test_32x32.mat under data.root); set data.download: true on a machine with a network")
        try:
            mat = scipy.io.loadmat(path)
            x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).astype(np.int64).reshape(-1)
        except (KeyError, ValueError, TypeError, OSError, scipy.io.matlab.MatReadError) as exc:
            raise DataError(f"{path} is not an SVHN .mat file with X and y ({type(exc).__name__}: {exc})") from None
        if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y) or x.dtype != np.uint8:
            raise DataError(f"{path}: expected X of shape (H, W, 3, N) uint8 and N labels, found {x.shape} {x.dtype} "
                            f"and {len(y)} labels")
        y[y == 10] = 0  # SVHN labels the digit 0 as 10 (as torchvision's SVHN class maps it)
        parts += [np.transpose(x, (3, 2, 0, 1)), y]
    return tuple(parts)


def folder_classes(root: Path, split: str = "train") -> list[str]:
    """An image folder's class names: the sorted subfolders of root/split (torchvision's find_classes)."""
    from torchvision.datasets.folder import find_classes

    folder = root / split
    if not folder.is_dir():
        raise DataError(f"imagefolder: {folder.resolve()} is not a folder; expected {root}/train/CLASS/*.png "
                        f"and {root}/test/CLASS/*.png")
    try:
        return find_classes(str(folder))[0]
    except FileNotFoundError as exc:
        raise DataError(f"imagefolder: {exc}") from None


def _imagefolder(d: DataSpec) -> tuple[np.ndarray, ...]:
    from PIL import Image, UnidentifiedImageError
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    root = Path(d.root)
    splits = {split: folder_classes(root, split) for split in ("train", "test")}
    classes = splits["train"]
    extra = sorted(set(splits["test"]) - set(classes))
    if extra:
        raise DataError(f"imagefolder: {root / 'test'} has classes that {root / 'train'} lacks: {', '.join(extra)}")
    index = {c: i for i, c in enumerate(classes)}
    mode, channels, side = ("L", 1, d.image_size) if d.channels == 1 else ("RGB", 3, d.image_size)
    files = {}
    for split in ("train", "test"):
        try:
            files[split] = make_dataset(str(root / split), index, IMG_EXTENSIONS, allow_empty=True)
        except FileNotFoundError as exc:
            raise DataError(f"imagefolder: {exc}") from None
        if not files[split]:
            raise DataError(f"imagefolder: {root / split} holds no image ({', '.join(IMG_EXTENSIONS)})")
    check_memory(sum(len(f) for f in files.values()) * channels * side * side, "cpu", "imagefolder images")
    parts = []
    for split in ("train", "test"):
        x = np.empty((len(files[split]), side, side, channels), dtype=np.uint8)
        for i, (path, _) in enumerate(files[split]):
            try:
                with Image.open(path) as img:
                    pixels = img.convert(mode).resize((side, side), Image.BILINEAR)
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"imagefolder: {path} is not a readable image ({exc})") from None
            x[i] = np.asarray(pixels).reshape(side, side, channels)
        parts += [x.transpose(0, 3, 1, 2), np.array([label for _, label in files[split]], dtype=np.int64)]
    return tuple(parts)


def own(d: DataSpec) -> tuple[np.ndarray, ...]:
    """A module:function dataset: called with `root` (if it takes one) and `args`; returns
    {train_x, train_y, test_x, test_y} or that 4-tuple: uint8 images (N, C, H, W) or (N, H, W), integer labels."""
    from gstc.runtime.builders import import_target

    try:
        fn = import_target(d.dataset, "dataset")
    except ValueError as exc:
        raise DataError(str(exc)) from None
    kwargs = dict(d.args)
    try:
        if "root" in inspect.signature(fn).parameters and "root" not in kwargs:
            kwargs["root"] = d.root
    except (TypeError, ValueError):
        pass
    out = fn(**kwargs)
    names = ("train_x", "train_y", "test_x", "test_y")
    if isinstance(out, dict):
        missing = [n for n in names if n not in out]
        if missing:
            raise DataError(f"dataset {d.dataset} returned a mapping without {', '.join(missing)}")
        out = tuple(out[n] for n in names)
    if not isinstance(out, (tuple, list)) or len(out) != 4:
        raise DataError(f"dataset {d.dataset} returned {type(out).__name__}; expected (train_x, train_y, test_x, test_y) "
                        "or a mapping with those keys")
    arrays = []
    for name, a in zip(names, out):
        a = a.cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        if name.endswith("_x"):
            if a.dtype != np.uint8:
                raise DataError(f"dataset {d.dataset}: {name} is {a.dtype}; expected uint8 images (0-255)")
            if a.ndim == 3:
                a = a[:, None]
            if a.ndim != 4:
                raise DataError(f"dataset {d.dataset}: {name} has shape {a.shape}; expected (N, C, H, W) or (N, H, W)")
        else:
            if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
                raise DataError(f"dataset {d.dataset}: {name} has shape {a.shape} and dtype {a.dtype}; expected N integer labels")
            a = a.astype(np.int64)
        arrays.append(a)
    if arrays[0].shape[1:] != arrays[2].shape[1:]:
        raise DataError(f"dataset {d.dataset}: train and test images differ in shape: {arrays[0].shape[1:]} and "
                        f"{arrays[2].shape[1:]}")
    for x, y, split in ((arrays[0], arrays[1], "train"), (arrays[2], arrays[3], "test")):
        if len(x) != len(y):
            raise DataError(f"dataset {d.dataset}: {len(x)} {split} images but {len(y)} labels")
    return tuple(arrays)


LOADERS: dict[str, Callable[[DataSpec], tuple[np.ndarray, ...]]] = {
    "cifar10": lambda d: _cifar(d.root, False, d.download),
    "cifar100": lambda d: _cifar(d.root, True, d.download),
    "digits": lambda d: _digits(),
    "synthetic": lambda d: _synthetic(),
    "mnist": _mnist,
    "fashion_mnist": _mnist,
    "kmnist": _mnist,
    "svhn": _svhn,
    "imagefolder": _imagefolder,
}
STATS = {"cifar10": CIFAR10_STATS, "cifar100": CIFAR100_STATS}


# --- device memory -------------------------------------------------------------------


def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        # an int: torch before 2.5 takes no torch.device here
        return torch.cuda.mem_get_info(device.index if device.index is not None else torch.cuda.current_device())[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(nbytes: int, device: torch.device | str, what: str) -> None:
    """DataError when `nbytes` would not fit in the device's free memory (with room left for training)."""
    device = torch.device(device)
    free = _free_bytes(device)
    if nbytes > 0.8 * free:
        gib = 2**30
        raise DataError(f"the dataset's {what} take {nbytes / gib:.2f} GiB as uint8, and {device} has {free / gib:.2f} GiB "
                        "free: gstc keeps the whole dataset in device memory; use a smaller image_size or fewer "
                        "images, or a device with more memory")
