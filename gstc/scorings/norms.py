"""l1 and l2: the magnitude of a unit's weights (a filter's row of the conv weight, summed over the convs that
write its channel; or one weight)."""

from __future__ import annotations

from gstc.plugins import NoParams


class L1:
    description = "l1: sum of |w| over the unit's weights (a weight: |w|)."
    Params = NoParams
    granularities = frozenset({"filter", "weight"})

    @staticmethod
    def score(units, params):
        return units.reduce([w.abs() for w in units.weights()])


class L2:
    description = "l2: Euclidean norm of the unit's weights (a weight: |w|)."
    Params = NoParams
    granularities = frozenset({"filter", "weight"})

    @staticmethod
    def score(units, params):
        # A coupled group's filter: one norm over every writer's row. A weight: its square root is |w|.
        return units.reduce([w.pow(2) for w in units.weights()]).sqrt()
