"""The built-in datasets' names and, where fixed, their shapes and classes, without torch."""

from __future__ import annotations

from typing import Any

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
