"""The environment a run trained in, for its run.json: gstc's code (`gstc.provenance`) and torch's side."""

from __future__ import annotations

import platform
from typing import Any

import torch

from gstc.provenance import environment as code_environment


def environment(device: torch.device) -> dict[str, Any]:
    """gstc's version and source, Python, host, torch, CUDA and cuDNN versions, the device and torch's threads."""
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine())
    out = {**code_environment(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "device": f"{device.type}: {name}", "threads": torch.get_num_threads()}
    if cuda:  # whether convolutions or matrix products may round to TF32 (gstc turns both off: fp32 is fp32)
        out["tf32"] = bool(torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
    return out
