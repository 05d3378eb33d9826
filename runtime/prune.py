"""Pruning mechanics: a run's `Pruner` carries out its configuration's events on a model.

Everything is driven by the plan: which layers prune at which epoch and how many
filters come from `PlanRun.events`; this module only decides *which* units (by score or
at random, through each layer's scoring and method plugins) and starts the layer's mode
on them. What a pruned filter carries (targeted, held at zero, noised) is its layer's
`LayerState` (gstc.runtime.layer_state); weights' and N:M groups' is gstc.runtime.units'.

In a pack (gstc.runtime.models), each member has its own `Pruner` over its own views of the
packed tensors (`Prunable.member`), so members never see each other's filters. The
per-batch masking is the pack's (gstc.runtime.step_hooks).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from gstc.plan import PlanConfig, PlanEvent
from gstc.plugins import Loaded
from gstc.runtime.layer_state import LayerState
from gstc.runtime.methods import Event
from gstc.runtime.records import LayerEvent
from gstc.runtime.units import GroupState, Units, WeightState, WeightsOf
from gstc.methods import METHODS
from gstc.scorings import SCORINGS


class PluginFailed(RuntimeError):
    """A plugin raised while a run used it: that run fails (named), and the others of its pack go on."""


class Pruner:
    """Carries out a configuration's pruning events and perturbation windows on a model."""

    def __init__(self, model: torch.nn.Module, config: PlanConfig, seed: int, member: int = 0,
                 probe: Callable[[int, str], None] | None = None):
        prunable = model.prunable(member)
        self.model, self.seed = model, seed
        # Coupled layers (convs writing the same channels) share one filter state, the first one's in table order;
        # the compiler gave them one schedule. A weight belongs to one conv: weight granularity has no groups.
        order = {layer.name: k for k, layer in enumerate(config.layers)}
        filters = [s for s in config.schedules if s.granularity == "filter"]
        pruned = {s.layer for s in filters}
        self.alias = {layer.name: min([layer.name, *layer.coupled], key=order.__getitem__)
                      for layer in config.layers if layer.coupled and layer.name in pruned}
        self.layers = {s.layer: LayerState(s.layer, prunable[s.layer], s) for s in filters
                       if self.alias.get(s.layer, s.layer) == s.layer}
        dense = {name: WeightsOf(module, member, getattr(module, "pack", 1)) for name, module in model.dense().items()}
        self.weights = {s.layer: (WeightState if s.granularity == "weight" else GroupState)(
                            s.layer, prunable[s.layer] if s.layer in prunable else dense[s.layer], s)
                        for s in config.schedules if s.granularity != "filter"}
        self._states: dict[str, LayerState | WeightState] = {**self.layers, **self.weights}
        self.batch = 0  # training batches done so far in this run
        self.in_step = False  # between before_batch and after_step: a training step's forward pass
        self.probe = probe or self._no_probe  # (batches, kind): what gradient scorings ask for (gstc.runtime.probes)
        # A probe's gradients by parameter, kept until units are taken: a global group's layers share one probe.
        self.probes: dict[tuple[int, str], dict[int, torch.Tensor]] = {}
        # Each pruned layer's scoring plugin, its parameters (validated when the plan was compiled) and its view;
        # and the method that turns scores into the units an event takes.
        self.scorings: dict[str, tuple[Loaded, Units]] = {}
        self.methods: dict[str, Loaded] = {}
        for name, state in self.states().items():
            s = state.schedule
            self.methods[name] = METHODS.load(s.method)
            loaded = SCORINGS.load(s.scoring)
            self.scorings[name] = (loaded, Units(name, state.p, s.unit, self, state.state))
            setup = getattr(loaded.plugin, "setup", None)
            if setup is not None:
                setup(self.scorings[name][1], loaded.params)

    @staticmethod
    def _no_probe(batches: int, kind: str) -> None:
        raise RuntimeError("this scoring needs the training loss's gradients, which only a training run provides")

    def probed(self, batches: int, kind: str) -> dict[int, torch.Tensor]:
        """The gradients a probe leaves (by `id` of each parameter), probing once until units are taken."""
        if (batches, kind) not in self.probes:
            self.probe(batches, kind)
            self.probes[batches, kind] = {id(p): p.grad.detach().clone() for p in self.model.parameters()
                                          if p.grad is not None}
            self.model.zero_grad(set_to_none=True)
        return self.probes[batches, kind]

    def states(self) -> dict[str, LayerState | WeightState]:
        """Every pruned layer's state: filters' first, then weights' (fixed when the pruner is made)."""
        return self._states

    def score(self, name: str) -> torch.Tensor:
        """The scores of a pruned layer's units, by its scoring plugin."""
        loaded, units = self.scorings[name]
        try:
            scores = loaded.plugin.score(units, loaded.params)
        except Exception as exc:
            raise PluginFailed(f"scoring {units.name!r} failed: the scoring {loaded.name!r} raised "
                               f"{type(exc).__name__}: {exc}") from exc
        expected = tuple(self.states()[name].targeted.shape)
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != expected:
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise PluginFailed(f"scoring {units.name!r} failed: the scoring {loaded.name!r} returned {got}, "
                               f"expected a tensor of shape {expected} (one score per unit)")
        return scores

    # --- hooks of the training step -----------------------------------------------

    def before_batch(self, noise: torch.Generator) -> None:
        self.in_step = True
        for state in self.states().values():  # filters first, then weights: the noise generator's order
            state.before_batch(self.batch, noise)

    def after_step(self) -> None:
        """After the optimizer step and StepHooks' re-zeroing: count the batch, end the windows due."""
        self.batch += 1
        self.in_step = False
        self.after_post_eval()

    def after_post_eval(self) -> None:
        """End the windows due (after an event: zero windows of 0 batches, which only the post-pruning evaluation
        saw)."""
        for state in self.states().values():
            state.release_due(self.batch)

    # --- events ---------------------------------------------------------------------

    def apply(self, epoch: int, events: list[PlanEvent], batches_per_epoch: int,
              generator: torch.Generator) -> list[LayerEvent]:
        """Target the planned number of units of each event's layer (or, in global scope, of its group of layers,
        ranked together); returns per-layer records."""
        records: list[LayerEvent] = []
        done: dict[str, LayerEvent] = {}  # a coupled group's record, for its other layers' events
        self.probes.clear()  # the model trained since the last event
        for ev in events:
            first = self.alias.get(ev.layer, ev.layer)
            if first in done and not ev.group:
                records.append({**done[first], "layer": ev.layer})
                continue
            names = list(dict.fromkeys(self.alias.get(n, n) for n in (ev.group or [ev.layer])))
            event = Event(self, names, ev.prune, batches_per_epoch, generator)
            method = self.methods[names[0]]
            try:
                method.plugin.apply(event, method.params)
            except PluginFailed:
                raise
            except Exception as exc:
                raise PluginFailed(f"the method {method.name!r} failed on {ev.layer!r}: "
                                   f"{type(exc).__name__}: {exc}") from exc
            states = event.states
            for name, state in zip(names, states):
                chosen = torch.cat(event.taken[name]) if event.taken[name] else torch.zeros(0, dtype=torch.float64)
                mean = float(chosen.mean()) if len(chosen) else None
                records.append(done.setdefault(name, {"layer": name if ev.group else ev.layer,
                                                      "prune": len(chosen), "kept": state.untargeted(),
                                                      "mean_score": mean}))
            kept = sum(st.untargeted() for st in states)
            if kept != ev.kept:
                raise PluginFailed(f"{ev.layer} at epoch {epoch}: {kept} units left, the plan says {ev.kept} (the "
                                   f"method {method.name!r} took the wrong count)")
        return records

    # --- measurements and checkpoints -----------------------------------------------

    def kept(self, table: list[tuple[str, int]]) -> dict[str, int]:
        """Untargeted units (filters or weights) per pruned layer (the plan's kept after each event)."""
        states = self.states()
        out = {name: states[self.alias.get(name, name)].untargeted() for name, _ in table
               if self.alias.get(name, name) in states}
        return {**out, **{name: st.untargeted() for name, st in self.weights.items() if name not in out}}  # dense

    def zeroed(self) -> int:
        """Weights held at zero now by weight-granularity pruning (all of this run's layers)."""
        return sum(int(st.held.sum()) for st in self.weights.values())

    def removed(self) -> dict[str, int]:
        """Removed filters per pruned layer: those whose channel is masked to exactly zero (pruned with its BN).

        A filter pruned with `include_bn: false` is not removed: its BN's shift still reaches the readers.
        """
        out = {name: int((layer.p.mask_values == 0).sum()) for name, layer in self.layers.items()}
        return {**out, **{name: out[first] for name, first in self.alias.items() if first in out}}

    def state_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "layers": {name: layer.tensors() for name, layer in self.states().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch = int(state["batch"])
        states = self.states()
        for name, tensors in state["layers"].items():
            states[name].load(tensors)
            if name in self.weights:
                continue
            layer = self.layers[name]
            # The mask is shared by a pack's members: any member's pruned filter turns it on.
            for w in layer.p.writers():
                w.mask.active = w.mask.active or bool((w.mask_values == 0).any())
