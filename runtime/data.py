"""Datasets as device-resident uint8 tensors; batches are slices of a seeded permutation.

- cifar10/cifar100: the standard python archives (`cifar-10-batches-py/`,
  `cifar-100-python/`) under `root`, read with an unpickler that builds only what the
  format holds (dicts, lists, strings, bytes, numpy arrays).
- digits: scikit-learn's 1,797 8x8 digits, resized to 32x32 and repeated to 3
  channels, split 80/20 by a fixed permutation. Real data, no download.
- synthetic: learnable class-conditional images of CIFAR shape, for tests/benchmarks.

Images stay uint8 (N, 3, 32, 32) on the device; `normalize` and `crop_flip` work on
batches there, so no DataLoader or host copy is involved.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
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


@dataclass
class Dataset:
    train_x: torch.Tensor  # uint8 (N, 3, 32, 32)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor  # float (3,), [0, 1] units
    std: torch.Tensor
    classes: int

    def to(self, device: torch.device) -> "Dataset":
        return Dataset(*(t.to(device) for t in (self.train_x, self.train_y, self.test_x, self.test_y, self.mean, self.std)),
                       classes=self.classes)


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


LOADERS: dict[str, Callable[[DataSpec], tuple[np.ndarray, ...]]] = {
    "cifar10": lambda d: _cifar(d.root, False, d.download),
    "cifar100": lambda d: _cifar(d.root, True, d.download),
    "digits": lambda d: _digits(),
    "synthetic": lambda d: _synthetic(),
}
CLASSES = {"cifar10": 10, "cifar100": 100, "digits": 10, "synthetic": 10}
STATS = {"cifar10": CIFAR10_STATS, "cifar100": CIFAR100_STATS}


def load(data: DataSpec, device: torch.device | str = "cpu") -> Dataset:
    """Load the dataset a plan's resolved `data` section names, onto `device`."""
    name = data.dataset
    try:
        loader = LOADERS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(LOADERS)}") from None
    train_x, train_y, test_x, test_y = (torch.from_numpy(np.ascontiguousarray(a)) for a in loader(data))
    if name in STATS:
        mean, std = (torch.tensor(s) for s in STATS[name])
    else:  # measured on the training images
        pixels = train_x.float().div(255).transpose(0, 1).reshape(3, -1)
        mean, std = pixels.mean(1), pixels.std(1)
    return Dataset(train_x, train_y, test_x, test_y, mean, std, CLASSES[name]).to(torch.device(device))


# --- batches -------------------------------------------------------------------------


def normalize(x: torch.Tensor, ds: Dataset, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> normalized floats."""
    return ((x.to(dtype) / 255) - ds.mean.to(dtype).view(1, 3, 1, 1)) / ds.std.to(dtype).view(1, 3, 1, 1)


def crop_flip_draws(n: int, generator: torch.Generator) -> torch.Tensor:
    """Augmentation draws for `n` images: rows (dy, dx, flip), dy and dx in 0..8, flip 0 or 1."""
    dy = torch.randint(0, 9, (n,), generator=generator, device=generator.device)
    dx = torch.randint(0, 9, (n,), generator=generator, device=generator.device)
    flip = (torch.rand(n, generator=generator, device=generator.device) < 0.5).long()
    return torch.stack([dy, dx, flip])


def crop_flip(x: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """Crop 32x32 out of the 4-pixel zero-padded image at (dy, dx), flipped where flip = 1.

    x: (N, 3, H, W); draws: (3, N) on x's device. Returns (N, H, W, 3): channels last,
    which is the layout `pack_input` wants anyway.
    """
    n, _, h, w = x.shape
    dy, dx, flip = draws
    padded = F.pad(x, (4, 4, 4, 4))
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (n, h)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (n, w)
    cols = torch.where(flip[:, None].bool(), cols.flip(1), cols)
    idx = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]]


def pack_input(x: torch.Tensor, ds: Dataset, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    """K members' uint8 batches (K, B, H, W, 3) -> one normalized input (B, K x 3, H, W).

    Member k's image is channels 3k..3k+2, as the pack's grouped first convolution expects.
    """
    k, b, h, w, c = x.shape
    x = (x.to(dtype) / 255 - ds.mean.to(dtype)) / ds.std.to(dtype)  # same arithmetic as `normalize`
    x = x.permute(1, 2, 3, 0, 4).reshape(b, h, w, k * c).permute(0, 3, 1, 2)  # channels-last strides
    return x if channels_last else x.contiguous()


def epoch_generator(seed: int, epoch: int, purpose: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator derived from (seed, epoch, purpose): resuming at an epoch needs no saved state."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + epoch) * 101 + purpose)
    return g
