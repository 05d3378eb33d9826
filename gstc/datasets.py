"""The built-in datasets' names and, where fixed, their shapes and classes, without torch: the one list
that the spec language validates against and the runtime has a loader for each of."""

from __future__ import annotations

from typing import Any

from gstc.errors import did_you_mean

DATASETS = ("cifar10", "cifar100", "digits", "synthetic", "mnist", "fashion_mnist", "kmnist", "svhn", "imagefolder")
CLASSES = {"cifar10": 10, "cifar100": 100, "digits": 10, "synthetic": 10, "mnist": 10, "fashion_mnist": 10,
           "kmnist": 10, "svhn": 10}
# (channels, height, width) of the datasets whose shape is fixed
SHAPES = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "digits": (3, 32, 32), "synthetic": (3, 32, 32),
          "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "kmnist": (1, 28, 28), "svhn": (3, 32, 32)}


def known_shape(data: Any) -> tuple[int, tuple[int, int], int] | None:
    """(channels, (height, width), classes) of a data section whose dataset fixes them; None where only loading tells."""
    if data.dataset not in SHAPES:
        return None
    c, h, w = SHAPES[data.dataset]
    return c, (h, w), CLASSES[data.dataset]


def unknown_dataset(name: str) -> str:
    """What a dataset that is neither built in nor module:function is told, by the spec's check and the runtime."""
    return f"unknown dataset {name!r}{did_you_mean(name, DATASETS)}; known: {', '.join(DATASETS)}, or module:function for your own"
