"""A pruned layer's per-filter state, and the primitives the modes (prune, zero, gaussian) act through.

Which filters an event targets is the pruner's decision (gstc.runtime.prune); a mode
(gstc.runtime.modes) then holds or noises them through `LayerState.hold` and
`LayerState.noise`. State is per filter:

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
"""

from __future__ import annotations

from typing import Any

import torch

from gstc.plan import LayerSchedule
from gstc.runtime.models import Prunable
from gstc.runtime.modes import NEVER, ModeContext, resolve

Pruner = Any  # gstc.runtime.prune.Pruner, which imports this module: handed on to the modes, which call back into it


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
