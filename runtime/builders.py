"""Architectures from outside gstc: torchvision models, import paths and plugins.

An architecture that is not built in is named one of three ways (gstc.archs):

- `torchvision.NAME`: `torchvision.models.get_model(NAME, num_classes=..., **args)`,
  for any of torchvision's classification models;
- `module:attribute`: a class or function that returns an `nn.Module`, imported with
  the spec's folder first on the import path;
- a plain name that a package registers in the entry-point group `gstc.architectures`
  (`[project.entry-points."gstc.architectures"] widevgg = "mylab.nets:WideVGG"`).

A builder gets `num_classes` and the spec's `model.args` as keyword arguments, and
`in_channels` and `image_size` (height, width) when its signature names them. When the
conv that reads the images expects another channel count than the data has (a
torchvision model on grayscale images), that conv is replaced by one that reads the
data's channels: the same filters, kernel, stride, padding and bias, freshly initialized.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn

from gstc.archs import TORCHVISION_PREFIX, check_arch, classify, plugin_targets
from gstc.errors import did_you_mean
from gstc.plugins import import_target
from gstc.runtime.discover import Discovered, DiscoveryError, find

# The import itself is gstc.plugins', shared with scorings, methods and modes given as module:attribute; the plan's
# spec folder is on the import path while a worker builds and trains (`gstc.plugins.import_path`).


def resolve(arch: str) -> Callable[..., nn.Module]:
    """The builder of a non-built-in architecture."""
    problem = check_arch(arch)  # a malformed name, or a plain name that is neither built in nor a plugin's
    if problem:
        raise ValueError(problem)
    kind = classify(arch)
    if kind == "torchvision":
        import torchvision

        name = arch.removeprefix(TORCHVISION_PREFIX)
        known = torchvision.models.list_models(module=torchvision.models)  # classification models only
        if name not in known:
            raise ValueError(f"unknown torchvision classification model {name!r}{did_you_mean(name, known)}")
        return lambda **kw: torchvision.models.get_model(name, **kw)
    if kind == "import":
        builder = import_target(arch, "architecture")
    elif kind == "plugin":
        builder = import_target(plugin_targets()[arch], f"architecture {arch!r} (entry point)")
    else:
        raise ValueError(f"{arch!r} is a built-in architecture, built by gstc.runtime.models")
    if not callable(builder):
        raise ValueError(f"architecture {arch!r} is {type(builder).__name__}, not a class or function")
    return builder


def _call(builder: Callable[..., nn.Module], arch: str, args: dict, classes: int, channels: int,
          size: tuple[int, int]) -> nn.Module:
    kwargs: dict[str, Any] = {"num_classes": classes, **args}
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        params = {}
    if "in_channels" in params and "in_channels" not in args:
        kwargs["in_channels"] = channels
    if "image_size" in params and "image_size" not in args:
        kwargs["image_size"] = size
    try:
        model = builder(**kwargs)
    except TypeError as exc:
        raise ValueError(f"architecture {arch!r} could not be built with {sorted(kwargs)}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"architecture {arch!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


class _Mismatch(Exception):
    def __init__(self, name: str):
        self.name = name


def _input_mismatch(model: nn.Module, example: torch.Tensor) -> str | None:
    """The first conv that reads the images expecting another channel count (one pass, stopped there), or None."""
    def check(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if args and args[0] is example and module.in_channels != example.shape[1]:
                raise _Mismatch(name)
        return hook

    handles = [m.register_forward_pre_hook(check(n)) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    except _Mismatch as exc:
        return exc.name
    except Exception:  # noqa: BLE001 - another failure of the forward pass: finding the layers reports it
        return None
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return None


def _fit_input(model: nn.Module, arch: str, example: torch.Tensor) -> None:
    """Replace the convs that read the images where they expect another channel count, one at a time."""
    channels = example.shape[1]
    while (name := _input_mismatch(model, example)) is not None:
        conv = model.get_submodule(name)
        if conv.groups != 1:
            raise ValueError(f"{arch}: {name} reads the images with groups={conv.groups}; gstc replaces only an "
                             f"ungrouped input conv to read {channels} channels")
        _set(model, name, nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                    conv.dilation, 1, conv.bias is not None, conv.padding_mode))


def build_external(arch: str, args: dict, classes: int, channels: int, size: tuple[int, int]) -> Discovered:
    """Build a non-built-in architecture for `channels` x `size` images and wrap it for pruning."""
    net = _call(resolve(arch), arch, args, classes, channels, size)
    example = torch.zeros(2, channels, *size)
    _fit_input(net, arch, example)
    try:
        found, cost = find(net, example)
        return Discovered(net, found, cost)
    except DiscoveryError as exc:
        raise ValueError(f"{arch}: {exc}") from None

