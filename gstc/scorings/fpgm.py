"""fpgm: filter pruning via geometric median (He et al. 2019): a filter close to all the others is the most
replaceable. A filter's score is the sum of the Euclidean distances from its weights to every other filter's of
the layer (all writers' rows together for a coupled group), so `target: smallest` removes those nearest the
geometric median."""

from __future__ import annotations

from gstc.plugins import NoParams


class FPGM:
    description = "fpgm: sum of the distances from a filter to the layer's other filters (He et al. 2019)."
    Params = NoParams
    granularities = frozenset({"filter"})

    @staticmethod
    def score(units, params):
        import torch

        rows = torch.cat([w.flatten(1) for w in units.weights()], dim=1).double()  # one row per filter
        return torch.cdist(rows, rows, compute_mode="donot_use_mm_for_euclid_dist").sum(dim=1)  # exact differences
