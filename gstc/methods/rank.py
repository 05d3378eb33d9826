"""rank: an event scores its layers' units, ranks the free ones (across the layers in global scope) and takes the
target's count: the smallest, the largest or random ones. A scoring with `rounds` (SynFlow) splits the count into
rounds, each re-scored after the last one's units were taken."""

from __future__ import annotations

from gstc.plugins import NoParams


class Rank:
    description = "rank: take the event's count of the best-ranked free units by the scoring and the target."
    Params = NoParams
    granularities = frozenset({"filter", "weight"})

    @staticmethod
    def apply(event, params):
        for count in event.rounds():
            scores = event.scores()
            event.take(event.choose(scores, count), scores)
