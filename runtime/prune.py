"""Pruning mechanics: scoring, targeting, and the modes (prune, zero, gaussian).

Everything is driven by the plan: which layers prune at which epoch and how many
filters come from `PlanRun.events`; this module only decides *which* filters (by
score or at random) and carries out the mode. State is per filter:

- `targeted`: filters chosen by some event; never chosen again (every mode).
- `hold_w` / `hold_bn`: conv weight rows / BN scale and shift held at zero (gradients
  zeroed before the optimizer step, values re-zeroed after it, by `StepHooks`). Permanent
  for pruned filters, until `release_at` (a global training-batch count) for zero windows.
- `noise_until`: gaussian windows; noise is added before each training batch.
- `mask` of the layer's ChannelMask: pruned filters' outputs are exactly zero after
  BN (and after the shortcut add in a ResNet block's second conv).

The per-filter state lives on the host (it is a few hundred booleans and counters):
the checks of every training batch (is anything held? does a window end now?) then
read no device memory, and the held rows are zeroed through device copies of their
indices, so a CUDA step never waits for the GPU (no per-batch host sync).

In a pack (gstc.runtime.models), each member has its own `Pruner` over its own views of the
packed tensors (`Prunable.member`), so members never see each other's filters. The
per-batch masking is the pack's (`StepHooks`): one `index_fill_` of the held rows of each
packed tensor, so the kernel launches per batch do not grow with the pack size.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from gstc.plan import LayerSchedule, PlanConfig, PlanEvent
from gstc.plugins import Loaded
from gstc.runtime.models import Prunable
from gstc.runtime.methods import Event, choose  # noqa: F401  (choose: the targets' rule, tested with the pruner)
from gstc.runtime.modes import NEVER, ModeContext, resolve
from gstc.runtime.units import GroupState, Units, WeightHooks, WeightState, WeightsOf, weight_states
from gstc.methods import METHODS
from gstc.scorings import SCORINGS



class PluginFailed(RuntimeError):
    """A plugin raised while a run used it: that run fails (named), and the others of its pack go on."""


# --- per-layer state -----------------------------------------------------------------


class LayerState:
    def __init__(self, name: str, prunable: Prunable, schedule: LayerSchedule):
        self.name, self.p, self.schedule = name, prunable, schedule
        c = prunable.channels
        self.device = prunable.conv.weight.device
        self.targeted = torch.zeros(c, dtype=torch.bool)
        self.hold_w = torch.zeros(c, dtype=torch.bool)
        self.hold_bn = torch.zeros(c, dtype=torch.bool)
        self.release_at = torch.full((c,), NEVER, dtype=torch.long)
        self.noise_until = torch.zeros(c, dtype=torch.long)
        self.noise_std = torch.zeros(())
        self.changed = True  # the holds changed since StepHooks last read them
        self.state_changed()
        self.saved: dict[str, torch.Tensor] = {}  # values to restore (zero mode, restore: trained)
        self.state: dict[str, torch.Tensor] = {}  # the scoring's own tensors (activation_l1: "ema")
        self.mode_plugin, self.mode_params = resolve(schedule.mode)

    _OWN = ("targeted", "hold_w", "hold_bn", "release_at", "noise_until", "noise_std")

    def tensors(self) -> dict[str, torch.Tensor]:
        return {**{key: getattr(self, key) for key in self._OWN}, **{f"saved.{k}": v for k, v in self.saved.items()},
                **self.state}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for key in self._OWN:
            getattr(self, key).copy_(state[key])
        self.saved = {k.removeprefix("saved."): v.to(self.device, copy=True) for k, v in state.items() if k.startswith("saved.")}
        self.state.clear()
        self.state.update({k: v.to(self.device, copy=True) for k, v in state.items()
                           if k not in self._OWN and not k.startswith("saved.")})
        self.state_changed()

    def untargeted(self) -> int:
        return int((~self.targeted).sum())

    # The unit interface Pruner.apply ranks through (the same for weights and N:M groups, gstc.runtime.units).
    def unit_scores(self, scores: torch.Tensor, target: str) -> torch.Tensor:
        return scores.flatten()

    def free(self) -> torch.Tensor:
        return ~self.targeted

    def take_units(self, pruner: "Pruner", chosen: torch.Tensor, scores: torch.Tensor, target: str,
                   batches_per_epoch: int, generator: torch.Generator) -> None:
        sel = torch.zeros_like(self.targeted)
        sel[chosen] = True
        self.take(pruner, sel, batches_per_epoch, generator)

    def take(self, pruner: "Pruner", sel: torch.Tensor, batches_per_epoch: int, generator: torch.Generator) -> None:
        """Target the filters of `sel` (a boolean per filter) and start the mode on them."""
        self.targeted |= sel
        self.mode_plugin.start(ModeContext(pruner, self, batches_per_epoch, generator), sel, self.mode_params)
        self.state_changed()
        self.zero_held()

    # --- the primitives of modes (gstc.runtime.modes) -----------------------------

    def hold(self, sel: torch.Tensor, until: int, bn: bool, restore: str, cut: bool) -> None:
        """Hold filters' conv rows (and with `bn` their BN scale and shift) at zero until batch `until`."""
        if until == NEVER:
            self.hold_w |= sel
            self.release_at[sel] = NEVER
            if bn:
                self.hold_bn |= sel
            if cut:
                for w in self.p.writers():
                    w.mask_values[sel] = 0
                    w.mask.active = True
            return
        fresh = sel & ~(self.hold_w | self.hold_bn)  # a filter already held keeps its first saved values
        if restore == "trained" and fresh.any():
            index = fresh.nonzero().flatten()  # on the host: copied once per device, not indexed by a host mask
            on: dict[torch.device, torch.Tensor] = {}
            for key, tensor, positions in self.p.slots():
                rows = tensor.detach() if positions is None else tensor.detach()[positions.to(tensor.device)]
                store = self.saved.setdefault(key, torch.zeros_like(rows))
                at = on.setdefault(rows.device, index.to(rows.device))
                store.index_copy_(0, at, rows.index_select(0, at))
        # A filter already in a window keeps the later of its two release times.
        later = torch.full_like(self.release_at, until)
        held = self.hold_w | self.hold_bn
        self.release_at[sel] = torch.where(held, torch.maximum(self.release_at, later), later)[sel]
        self.hold_w |= sel
        if bn:
            self.hold_bn |= sel

    def noise(self, pruner: "Pruner", sel: torch.Tensor, until: int, std: float | str, generator: torch.Generator) -> None:
        """Noise on filters' conv rows before every training batch until batch `until`, and now."""
        w = self.p.weight.detach()
        self.noise_std.fill_(float(w.std()) if std == "matched" else float(std))
        self.noise_until[sel] = torch.maximum(self.noise_until[sel], torch.full_like(self.noise_until[sel], until))
        self.add_noise(sel, generator)  # the post-pruning evaluation sees the noise

    def before_batch(self, batch: int, generator: torch.Generator) -> None:
        """Noise on the filters in a gaussian window, before a training batch."""
        if self.noise_end > batch:
            self.add_noise(self.noise_until > batch, generator)

    def add_noise(self, sel: torch.Tensor, generator: torch.Generator) -> None:
        w = self.p.weight
        rows = sel.nonzero().flatten()
        if w.device.type == "cuda":
            # Drawn on the device in the weights' dtype, from a generator seeded by the run's noise generator (so
            # still a function of seed and epoch): no float64 draw on the host and copy per batch. The rows are
            # copied from pinned memory without waiting (a pageable copy syncs the stream).
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            device_generator = torch.Generator(device=w.device).manual_seed(seed)
            step = torch.randn((len(rows), *w.shape[1:]), generator=device_generator, device=w.device, dtype=w.dtype)
            step.mul_(float(self.noise_std))
            rows = rows.pin_memory().to(w.device, non_blocking=True)
        else:  # float64 draws, as every CPU run so far: the same numbers
            step = (torch.randn((len(rows), *w.shape[1:]), generator=generator, dtype=torch.float64)
                    * float(self.noise_std)).to(w.dtype)
        with torch.no_grad():
            w.index_add_(0, rows, step)

    def release_due(self, batch: int) -> None:
        """End the zero windows whose release batch count has come (restoring saved values where asked)."""
        if self.next_release > batch:
            return
        done = (self.release_at <= batch) & (self.hold_w | self.hold_bn)
        if self.saved:  # held with restore: trained
            index = done.nonzero().flatten()  # on the host: copied once per device, not indexed by a host mask
            on: dict[torch.device, torch.Tensor] = {}
            with torch.no_grad():
                for key, tensor, positions in self.p.slots():
                    at = on.setdefault(tensor.device, index.to(tensor.device))
                    into = at if positions is None else positions.to(tensor.device).index_select(0, at)
                    tensor.index_copy_(0, into, self.saved[key].index_select(0, at))
        self.hold_w &= ~done
        self.hold_bn &= ~done
        self.release_at[done] = NEVER
        self.state_changed()

    def state_changed(self) -> None:
        """After every change of the state: what the training step reads, as host values.

        next_release: the first batch count at which a held filter's window ends (NEVER if none);
        noise_end: noise is added before every batch below it; changed: StepHooks rebuilds its held rows.
        """
        held = self.hold_w | self.hold_bn
        self.next_release = int(self.release_at[held].min()) if held.any() else NEVER
        self.noise_end = int(self.noise_until.max())
        self.changed = True

    def zero_held(self) -> None:
        """This member's held values to zero now (after an event; each batch, StepHooks does the pack's at once)."""
        with torch.no_grad():
            for param, kind, positions in self.p.packed():
                hold = self.holds(kind)
                if not hold.any():
                    continue
                if positions is None:
                    self.p.part(param).masked_fill_(hold.to(self.device).view(-1, *[1] * (param.dim() - 1)), 0)
                else:
                    param.index_fill_(0, positions[hold].to(param.device), 0)

    def holds(self, kind: str) -> torch.Tensor:
        """The filters held at zero for a kind of `Prunable.packed`: 'w' (conv weight rows) or 'bn'."""
        return self.hold_w if kind == "w" else self.hold_bn


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

    def apply(self, epoch: int, events: list[PlanEvent], batches_per_epoch: int, generator: torch.Generator) -> list[dict]:
        """Target the planned number of units of each event's layer (or, in global scope, of its group of layers,
        ranked together); returns per-layer records."""
        records = []
        done: dict[str, dict] = {}  # a coupled group's record, for its other layers' events
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


class StepHooks:
    """The per-batch hooks of a pack's pruners, with the holds zeroed once per packed tensor.

    Masking member by member cost 6 kernel launches per pruned layer per member per batch
    (conv weight rows, BN scale and shift, and their gradients): 768 per step for a pack
    of 32 VGG11 runs pruning 4 layers, each a launch's host time on CUDA.
    Members' filters are disjoint rows of the packed tensors, so one list of held rows per
    packed tensor covers every member: at most 6 launches per pruned layer, whatever the
    pack size. `index_fill_` writes only the held rows, where `masked_fill_` reads and
    writes the whole tensor (1.7-2.6x slower per batch on the CPU in Figure 2's packs,
    `benchmarks/bench.py hooks`; benchmarks/RESULTS.md). The rows are rebuilt (host to
    device) only after a member's state changed, so no batch waits for the device.
    """

    def __init__(self, pruners: list[Pruner]):
        self.pruners = pruners
        groups: dict[str, list[LayerState]] = {}
        for pruner in pruners:
            for name, layer in pruner.layers.items():
                groups.setdefault(name, []).append(layer)
        self.groups = list(groups.values())
        # per group: the packed parameters with the indices of their held rows, kept only where something is held
        self.held: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in self.groups]
        self.weights = WeightHooks(weight_states(pruners))  # weight granularity: a 0/1 multiply per packed weight
        self._refresh(everything=True)  # another StepHooks may have read the changes already

    def _refresh(self, everything: bool = False) -> None:
        for i, layers in enumerate(self.groups):
            if not everything and not any(layer.changed for layer in layers):
                continue
            p = layers[0].p
            masks = {kind: torch.zeros(p.pack, p.channels, dtype=torch.bool) for kind in ("w", "bn")}
            for layer in layers:  # members are stacked along dim 0 of the packed tensors (models.member)
                for kind, mask in masks.items():
                    mask[layer.p.member] = layer.holds(kind)
                layer.changed = False
            rows = {kind: m.flatten().nonzero().flatten().to(layers[0].device) for kind, m in masks.items() if m.any()}
            # a follower's rows are the held filters' positions there (discovered models: packs of one)
            self.held[i] = [(param, rows[kind] if positions is None else positions[masks[kind][0]].to(param.device))
                            for param, kind, positions in p.packed() if kind in rows]

    def before_batch(self, noise: list[torch.Generator]) -> None:
        for pruner, g in zip(self.pruners, noise):
            pruner.before_batch(g)

    def after_backward(self) -> None:
        """Held filters get no gradient (so Adam's moments of them stay zero).

        The held rows are refreshed here, the step's first masking: holds change only at
        events and window ends (each member's after_step), never within a step.
        """
        self._refresh()
        for held in self.held:
            for param, rows in held:
                if param.grad is not None:
                    param.grad.index_fill_(0, rows, 0)
        self.weights.after_backward()

    def after_step(self) -> None:
        """Held values back to zero (weight decay and Adam's momentum move them), then each member's releases."""
        with torch.no_grad():
            for held in self.held:
                for param, rows in held:
                    param.index_fill_(0, rows, 0)
        self.weights.after_step()
        for pruner in self.pruners:
            pruner.after_step()
