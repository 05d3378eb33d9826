"""A dataset as device-resident uint8 tensors: the one a plan's `data` section names, loaded, checked and measured.

`load` reads the files (gstc.runtime.loaders), checks the labels and, on CUDA, that the
images fit in the device's free memory, and moves them there once. Images stay uint8
(N, C, H, W) on the device; `gstc.runtime.batches` normalizes and augments batches
there, so no DataLoader or host copy is involved. Normalization statistics are CIFAR's
published ones for CIFAR, and measured on the training images for every other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gstc.datasets import CLASSES, SHAPES, known_shape, unknown_dataset  # noqa: F401 (SHAPES: for importers)
from gstc.plan import DataSpec
from gstc.runtime.loaders import LOADERS, STATS, DataError, check_memory, folder_classes, own


@dataclass
class Dataset:
    train_x: torch.Tensor  # uint8 (N, C, H, W)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor  # float (C,), [0, 1] units
    std: torch.Tensor
    classes: int

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.train_x.shape[2:])

    def to(self, device: torch.device) -> "Dataset":
        return Dataset(*(t.to(device) for t in (self.train_x, self.train_y, self.test_x, self.test_y, self.mean, self.std)),
                       classes=self.classes)


def load(data: DataSpec, device: torch.device | str = "cpu") -> Dataset:
    """Load the dataset a plan's resolved `data` section names, onto `device`."""
    name = data.dataset
    loader = LOADERS.get(name) or (own if ":" in name else None)
    if loader is None:
        raise DataError(unknown_dataset(name))
    train_x, train_y, test_x, test_y = (torch.from_numpy(np.ascontiguousarray(a)) for a in loader(data))
    if len(train_y) == 0 or len(test_y) == 0:
        raise DataError(f"dataset {name}: {len(train_y)} training and {len(test_y)} test images; both must be some")
    if name == "imagefolder":  # a class folder may hold no test image: counted by folders, not labels
        classes = len(folder_classes(Path(data.root)))
    else:
        classes = CLASSES.get(name) or int(max(train_y.max(), test_y.max())) + 1
    if int(min(train_y.min(), test_y.min())) < 0 or int(max(train_y.max(), test_y.max())) >= classes:
        raise DataError(f"dataset {name}: labels must lie in 0..{classes - 1}")
    if name in STATS:
        mean, std = (torch.tensor(s) for s in STATS[name])
    else:  # measured on the training images
        pixels = train_x.float().div(255).transpose(0, 1).reshape(train_x.shape[1], -1)
        mean, std = pixels.mean(1), pixels.std(1)
    if torch.device(device).type == "cuda":
        check_memory(sum(t.numel() * t.element_size() for t in (train_x, train_y, test_x, test_y)), device, "images")
    return Dataset(train_x, train_y, test_x, test_y, mean, std, classes).to(torch.device(device))


def describe(data: DataSpec) -> tuple[int, tuple[int, int], int]:
    """(channels, (height, width), classes) of a dataset, loading it only where they are not known beforehand."""
    known = known_shape(data)
    if known is not None:
        return known
    if data.dataset == "imagefolder":
        return data.channels or 3, (data.image_size, data.image_size), len(folder_classes(Path(data.root)))
    ds = load(data)
    return ds.channels, ds.size, ds.classes
