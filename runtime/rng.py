"""Derived random generators: every random draw of a run comes from its own (seed, epoch, purpose).

A generator is made afresh from those three numbers wherever it is needed, so resuming
at an epoch needs no saved generator state, and two runs with the same seed draw the same
numbers for the same purpose whatever else differs between them.
"""

from __future__ import annotations

import torch

# The purposes, in order: data order, augmentation, random targets, noise, probes; a lottery control's fresh
# initialization and random mask; the weights a SET move grows (drawn from (seed, batch): the `epoch` argument is the
# batch there). A purpose's number is part of every draw made for it: changing one changes runs' numbers.
ORDER, AUGMENT, TARGETS, NOISE, PROBE, REINIT, SHUFFLE, GROW = 0, 1, 2, 3, 4, 5, 6, 7


def epoch_generator(seed: int, epoch: int, purpose: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator derived from (seed, epoch, purpose): resuming at an epoch needs no saved state."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + epoch) * 101 + purpose)
    return g
