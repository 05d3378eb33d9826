"""What a scoring plugin sees of a pruned layer (`Units`), and the state of weight-granularity pruning.

`Units` is the runtime side of the scoring contract (gstc.scorings): a scoring returns one
score per unit, built from the layer's weights, BN parameters, gradients or recorded
activations that `Units` hands it. The units are the layer's filters (scores of shape
[filters]) or its single weights (scores of the conv weight's shape).

`WeightState` carries weight-granularity (unstructured) pruning: booleans per weight,
`targeted` and `held` (host memory: the event's choice is a host-side sort anyway), and a
device copy of `~held` by which `WeightHooks` multiplies the pack's gradients and weights
at every step, so that a held weight stays exactly zero (as torch.nn.utils.prune's mask
does, without reparametrizing the module); modes' windows release and restore them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from gstc.plan import LayerSchedule
from gstc.runtime.masks import Prunable, member
from gstc.runtime.modes import NEVER, ModeContext, resolve

Pruner = Any  # gstc.runtime.prune.Pruner, which imports this module: its batch count, step flag, probe and model


@dataclass(frozen=True)
class WeightsOf:
    """A dense (linear) layer's weight as weight granularity sees it (a `Prunable`'s weight side): `conv` is the
    module holding it (nn.Linear, or the pack's PackedLinear: members' rows stacked along dim 0)."""

    conv: torch.nn.Module
    member: int = 0
    pack: int = 1

    def part(self, t: torch.Tensor) -> torch.Tensor:
        return member(t, self.member, self.pack)

    @property
    def weight(self) -> torch.Tensor:
        return self.part(self.conv.weight)

    def writers(self) -> tuple["WeightsOf", ...]:
        return (self,)


class Units:
    """One pruned layer of one run, as a scoring plugin works on it."""

    def __init__(self, name: str, p: Prunable, granularity: str, pruner: "Pruner", state: dict[str, torch.Tensor]):
        self.name, self.p, self.granularity, self._pruner = name, p, granularity, pruner
        self.state = state  # the plugin's own tensors, checkpointed with the layer

    def _writers(self) -> tuple[Prunable, ...]:
        # Filters of a coupled group are written by several convs; a weight belongs to one conv.
        return self.p.writers() if self.granularity == "filter" else (self.p,)

    def weights(self) -> list[torch.Tensor]:
        """The weights of the convs whose units these are (detached): one tensor, or a coupled group's."""
        return [w.weight.detach() for w in self._writers()]

    def norms(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(BN scale, BN shift) of each writer (detached)."""
        return [(w.bn_weight.detach(), w.bn_bias.detach()) for w in self._writers()]

    def summed(self, per_writer: list[torch.Tensor]) -> torch.Tensor:
        """Per-filter values of each writer, summed over the writers."""
        total = per_writer[0]
        for t in per_writer[1:]:
            total = total + t
        return total

    def reduce(self, per_weight: list[torch.Tensor]) -> torch.Tensor:
        """Per-weight values (one tensor per writer, shaped as its weight) -> one value per unit: summed over each
        filter's weights and over the writers, or the weights' own."""
        if self.granularity == "weight":
            return per_weight[0]
        return self.summed([t.sum(dim=tuple(range(1, t.dim()))) for t in per_weight])

    def _probed(self, batches: int, kind: str) -> list[torch.Tensor]:
        grads = self._pruner.probed(batches, kind)
        return [w.part(grads[id(w.conv.weight)]) for w in self._writers()]

    def gradients(self, batches: int) -> list[torch.Tensor]:
        """The training loss's gradient with respect to each writer's weight, summed over `batches` training batches
        drawn for this event (the model's state, running statistics included, is left as it was)."""
        return self._probed(batches, "gradient")

    def hessian_gradients(self, batches: int) -> list[torch.Tensor]:
        """H g for each writer's weight: the loss's Hessian times its gradient, both over `batches` batches."""
        return self._probed(batches, "hessian")

    def synflow_gradients(self) -> list[torch.Tensor]:
        """dR/dw for each writer's weight, R = the sum of the outputs of the model with |parameters| on ones."""
        return self._probed(0, "synflow")

    def record_channels(self, record: Callable[[torch.Tensor], None]) -> None:
        """Call `record` with this layer's channels (after its mask) at every forward pass."""
        self.p.mask.recorders[self.p.member] = record

    @property
    def batch(self) -> int:
        """Training batches done so far in this run."""
        return self._pruner.batch

    @property
    def training(self) -> bool:
        """Whether the forward pass under way is a training step's (not an evaluation or a probe)."""
        return self._pruner.in_step


class WeightState:
    """Weight-granularity pruning of one conv of one run.

    `targeted`: weights some event chose (never chosen again); `held`: weights at zero now (the hooks keep them
    there): for good after `prune`, until `release_at` after `zero`. `noise_until`: gaussian windows. The window
    tensors are made on a layer's first window (most runs prune for good and need none).
    """

    _WINDOWS = ("release_at", "noise_until")

    def __init__(self, name: str, prunable: Prunable | WeightsOf, schedule: LayerSchedule):
        self.name, self.p, self.schedule = name, prunable, schedule
        self.device = prunable.conv.weight.device
        self.targeted = torch.zeros(prunable.weight.shape, dtype=torch.bool)
        self.held = torch.zeros_like(self.targeted)
        self.release_at: torch.Tensor | None = None  # batch counts (long), where a window holds weights
        self.noise_until: torch.Tensor | None = None
        self.noise_std = torch.zeros((), dtype=torch.float64)
        self.saved: torch.Tensor | None = None  # values from before a hold, for restore: trained (on the device)
        self.state: dict[str, torch.Tensor] = {}
        self.mode_plugin, self.mode_params = resolve(schedule.mode)
        self._changed()  # next_release and noise_end: none yet

    def take(self, sel: torch.Tensor, pruner: "Pruner", batches_per_epoch: int, generator: torch.Generator) -> None:
        """Target the weights of `sel` (a boolean of the weight's shape) and start the mode on them."""
        self.targeted |= sel
        self.mode_plugin.start(ModeContext(pruner, self, batches_per_epoch, generator), sel, self.mode_params)
        self._changed()

    def set_mask(self, held: torch.Tensor) -> None:
        """Hold exactly the weights of `held` (a boolean of the weight's shape) for good, targeted with them, and zero
        them: a moving mask's move, a lottery control's random mask."""
        self.held.copy_(held)
        self.targeted.copy_(held)
        with torch.no_grad():
            self.p.weight.masked_fill_(held.to(self.device), 0)
        self._changed()

    def _changed(self) -> None:
        self.changed = True
        windows = self.held & (self.release_at < NEVER) if self.release_at is not None else None
        self.next_release = int(self.release_at[windows].min()) if windows is not None and windows.any() else NEVER
        self.noise_end = int(self.noise_until.max()) if self.noise_until is not None else 0

    # --- the primitives of modes (gstc.runtime.modes) -----------------------------

    def hold(self, sel: torch.Tensor, until: int, bn: bool, restore: str, cut: bool) -> None:
        """Hold weights at zero until batch `until` (`bn` and `cut` concern filters: a weight has neither)."""
        if until != NEVER or self.release_at is not None:
            if self.release_at is None:
                self.release_at = torch.full(self.held.shape, NEVER, dtype=torch.long)
            fresh = sel & ~self.held  # a weight already held keeps its first saved value
            if restore == "trained" and fresh.any():
                if self.saved is None:
                    self.saved = torch.zeros_like(self.p.weight.detach())
                dev = fresh.to(self.device)
                self.saved[dev] = self.p.weight.detach()[dev]
            later = torch.full_like(self.release_at, until)
            self.release_at[sel] = torch.where(self.held, torch.maximum(self.release_at, later), later)[sel]
        self.held |= sel
        with torch.no_grad():
            self.p.weight.masked_fill_(sel.to(self.device), 0)
        self._changed()

    def noise(self, pruner: "Pruner", sel: torch.Tensor, until: int, std: float | str, generator: torch.Generator) -> None:
        """Noise on weights before every training batch until batch `until`, and now."""
        if self.noise_until is None:
            self.noise_until = torch.zeros(self.held.shape, dtype=torch.long)
        self.noise_std.fill_(float(self.p.weight.detach().std()) if std == "matched" else float(std))
        self.noise_until[sel] = torch.clamp(self.noise_until[sel], min=until)
        self._changed()
        self.add_noise(sel, generator)  # the post-pruning evaluation sees the noise

    def add_noise(self, sel: torch.Tensor, generator: torch.Generator) -> None:
        w = self.p.weight
        noise = torch.randn(w.shape, generator=generator, dtype=torch.float64) * float(self.noise_std)
        with torch.no_grad():
            w.add_((noise * sel).to(device=w.device, dtype=w.dtype))

    def before_batch(self, batch: int, generator: torch.Generator) -> None:
        if self.noise_end > batch:
            self.add_noise(self.noise_until > batch, generator)

    def release_due(self, batch: int) -> None:
        """End the zero windows whose release batch count has come (restoring saved values where asked)."""
        if self.next_release > batch:
            return
        done = self.held & (self.release_at <= batch)
        if self.saved is not None:
            with torch.no_grad():
                dev = done.to(self.device)
                self.p.weight[dev] = self.saved[dev]
        self.held &= ~done
        self.release_at[done] = NEVER
        self._changed()

    # --- the unit interface Pruner.apply ranks through ---------------------------

    def untargeted(self) -> int:
        return int((~self.targeted).sum())

    def unit_scores(self, scores: torch.Tensor, target: str) -> torch.Tensor:
        return scores.flatten()

    def free(self) -> torch.Tensor:
        return ~self.targeted.flatten()

    def take_units(self, pruner: "Pruner", chosen: torch.Tensor, scores: torch.Tensor, target: str,
                   batches_per_epoch: int, generator: torch.Generator) -> None:
        sel = torch.zeros(self.targeted.numel(), dtype=torch.bool)
        sel[chosen] = True
        self.take(sel.view(self.targeted.shape), pruner, batches_per_epoch, generator)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"targeted": self.targeted, "held": self.held, "noise_std": self.noise_std}
        out.update({k: getattr(self, k) for k in self._WINDOWS if getattr(self, k) is not None})
        if self.saved is not None:
            out["saved"] = self.saved
        return {**out, **self.state}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        own = {"targeted", "held", "noise_std", "saved", *self._WINDOWS}
        self.targeted.copy_(state["targeted"])
        self.held.copy_(state["held"])
        self.noise_std.copy_(state["noise_std"])
        for key in self._WINDOWS:
            setattr(self, key, state[key].clone() if key in state else None)
        self.saved = state["saved"].to(self.device, copy=True) if "saved" in state else None
        self.state.update({k: v.to(self.device, copy=True) for k, v in state.items() if k not in own})
        self._changed()


class GroupState(WeightState):
    """N:M pruning of one conv: a unit is a group of M consecutive input channels' weights at one filter and kernel
    position (the layout 2:4 sparse kernels want); taking a group prunes M - N of its weights, so it keeps N.

    Within a group the weights go by their scores as the target says (smallest: the M - N lowest, ties by input
    channel; largest: the highest; random: drawn from the event's generator); a group's own score, by which
    an event ranks the groups, is what taking it removes: the sum of those weights' scores (random: none).
    """

    def __init__(self, name: str, prunable: Prunable, schedule: LayerSchedule):
        super().__init__(name, prunable, schedule)
        self.n, self.m = schedule.nm
        out, inputs, kh, kw = self._four(self.targeted).shape
        self.groups = torch.zeros(out, kh, kw, inputs // self.m, dtype=torch.bool)

    @staticmethod
    def _four(t: torch.Tensor) -> torch.Tensor:
        """A dense layer's (out, in) weight as a conv's (out, in, 1, 1)."""
        return t[:, :, None, None] if t.dim() == 2 else t

    def _grouped(self, t: torch.Tensor) -> torch.Tensor:
        """(out, in, kh, kw) -> (out, kh, kw, in / M, M): each group's M weights along the last dimension."""
        out, inputs, kh, kw = self._four(t).shape
        return self._four(t).permute(0, 2, 3, 1).reshape(out, kh, kw, inputs // self.m, self.m)

    def _drop(self, scores: torch.Tensor, target: str, generator: torch.Generator | None) -> torch.Tensor:
        """Per group, the positions (within its M) of the M - N weights that taking it prunes."""
        g = self._grouped(scores)
        if target == "random":
            if generator is None:
                return torch.arange(self.m - self.n).expand(*g.shape[:-1], -1)
            keys = torch.rand(g.shape, generator=generator, dtype=torch.float64)
            return torch.argsort(keys, dim=-1)[..., :self.m - self.n]
        order = torch.argsort(g if target == "smallest" else -g, dim=-1, stable=True)
        return order[..., :self.m - self.n]

    def untargeted(self) -> int:
        return int((~self.groups).sum())

    def unit_scores(self, scores: torch.Tensor, target: str) -> torch.Tensor:
        if target == "random":
            return torch.zeros(self.groups.numel(), dtype=torch.float64)
        return self._grouped(scores).gather(-1, self._drop(scores, target, None)).sum(-1).flatten()

    def free(self) -> torch.Tensor:
        return ~self.groups.flatten()

    def take_units(self, pruner: "Pruner", chosen: torch.Tensor, scores: torch.Tensor, target: str,
                   batches_per_epoch: int, generator: torch.Generator) -> None:
        picked = torch.zeros(self.groups.numel(), dtype=torch.bool)
        picked[chosen] = True
        picked = picked.view(self.groups.shape)
        drop = torch.zeros(self._grouped(scores).shape, dtype=torch.bool)
        drop.scatter_(-1, self._drop(scores, target, generator), True)
        drop &= picked.unsqueeze(-1)
        out, inputs, kh, kw = self._four(self.targeted).shape
        self.groups |= picked
        sel = drop.reshape(out, kh, kw, inputs).permute(0, 3, 1, 2).reshape(self.targeted.shape)
        self.take(sel, pruner, batches_per_epoch, generator)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {**super().tensors(), "groups": self.groups}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.groups.copy_(state["groups"])
        super().load({k: v for k, v in state.items() if k != "groups"})


class WeightHooks:
    """Per training step, the pruned weights of a pack's runs held at zero: one multiply of each packed weight's
    gradient (so Adam's moments of it stay zero) and one of the weight (weight decay moves it), whatever the pack's
    size. The 0/1 multiplier is rebuilt on the device only after an event."""

    def __init__(self, states: list[tuple[int, int, WeightState]]):
        groups: dict[str, list[tuple[int, int, WeightState]]] = {}
        for k, pack, state in states:
            groups.setdefault(state.name, []).append((k, pack, state))
        self.groups = list(groups.values())
        self.keep: list[tuple[torch.nn.Parameter, torch.Tensor] | None] = [None] * len(self.groups)

    def _refresh(self) -> None:
        for i, group in enumerate(self.groups):
            if not any(state.changed for _, _, state in group):
                continue
            param = group[0][2].p.conv.weight
            keep = torch.ones(param.shape, dtype=torch.bool)
            for k, pack, state in group:
                member(keep, k, pack).copy_(~state.held)
                state.changed = False
            self.keep[i] = None if keep.all() else (param, keep.to(param.device, param.dtype))

    def after_backward(self) -> None:
        self._refresh()
        for item in self.keep:
            if item is not None and item[0].grad is not None:
                item[0].grad.mul_(item[1])

    def after_step(self) -> None:
        with torch.no_grad():
            for item in self.keep:
                if item is not None:
                    item[0].mul_(item[1])


def weight_states(pruners: list["Pruner"]) -> list[tuple[int, int, WeightState]]:
    """(member, pack size, state) of every weight-granularity layer of a pack's pruners."""
    return [(st.p.member, st.p.pack, st) for pruner in pruners for st in pruner.weights.values()]


__all__ = ["GroupState", "Units", "WeightHooks", "WeightState", "WeightsOf", "weight_states"]
