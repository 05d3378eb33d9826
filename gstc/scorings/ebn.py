"""ebn and ebn_alt: the expected post-ReLU output of a channel's BN, E[ReLU(y)] for y ~ N(beta, gamma^2)."""

from __future__ import annotations

import math

from gstc.plugins import NoParams


def expected_relu(gamma, beta):
    """E[ReLU(y)] for y ~ N(beta, gamma^2): Z * (beta + phi(alpha) / Z * gamma), alpha = -beta/gamma."""
    import torch

    gamma = torch.where(gamma.abs() < 1e-12, torch.full_like(gamma, 1e-12), gamma)
    alpha = -beta / gamma
    z = 1 - torch.special.ndtr(alpha)
    phi = torch.exp(-0.5 * alpha**2) / math.sqrt(2 * math.pi)
    return z * beta + phi * gamma


class EBN:
    description = "ebn: expected post-ReLU BN output of the channel, with |gamma|."
    Params = NoParams
    granularities = frozenset({"filter"})
    name, signed = "ebn", False  # ebn_alt keeps gamma's sign

    @classmethod
    def check(cls, params, use):
        no_bn = [layer.name for layer in use.layers if layer.after != "bn"]
        if not no_bn:
            return []
        return [f"{cls.name} scores a filter by its BN's scale and shift, and no BatchNorm2d follows "
                f"{', '.join(no_bn[:3])}{' ...' if len(no_bn) > 3 else ''}; use a weight scoring such as l1"]

    @classmethod
    def score(cls, units, params):
        return units.summed([expected_relu(gamma if cls.signed else gamma.abs(), beta) for gamma, beta in units.norms()])


class EBNAlt(EBN):
    description = "ebn_alt: expected post-ReLU BN output of the channel, with signed gamma (the paper's Figure B2)."
    name, signed = "ebn_alt", True
