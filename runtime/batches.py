"""A training or test batch made on the device: uint8 images normalized, cropped and flipped, and packed.

Images stay uint8 (N, C, H, W) on the device (gstc.runtime.data); these functions turn a
batch of them into the model's float input there, so no DataLoader or host copy is
involved. The augmentation's draws come from a generator the caller derives from (seed,
epoch, purpose) (gstc.runtime.rng), so a resumed run crops and flips as an uninterrupted one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gstc.runtime.data import Dataset


def normalize(x: torch.Tensor, ds: Dataset, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> normalized floats."""
    return ((x.to(dtype) / 255) - ds.mean.to(dtype).view(1, -1, 1, 1)) / ds.std.to(dtype).view(1, -1, 1, 1)


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
    """K members' uint8 batches (K, B, H, W, C) -> one normalized input (B, K x C, H, W).

    Member k's image is channels Ck..Ck+C-1, as the pack's grouped first convolution expects.
    """
    k, b, h, w, c = x.shape
    x = (x.to(dtype) / 255 - ds.mean.to(dtype)) / ds.std.to(dtype)  # same arithmetic as `normalize`
    x = x.permute(1, 2, 3, 0, 4).reshape(b, h, w, k * c).permute(0, 3, 1, 2)  # channels-last strides
    return x if channels_last else x.contiguous()
