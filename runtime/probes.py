"""What gradient-based scorings ask of a run's model at a pruning event, left in the parameters' `.grad`.

- `gradient`: the training loss's gradient, summed over `batches` training batches (SNIP);
- `hessian`: the Hessian of that loss times its gradient, H g, over the same batches (GraSP): a first pass sums
  g over the batches, a second differentiates g_b . g (detached) for each batch b;
- `synflow`: the gradient of R = sum of the model's outputs on an input of ones, with every parameter and buffer
  replaced by its absolute value and the model in evaluation mode (SynFlow, Tanaka et al. 2020); no data.

The batches are a draw of the run's own for the event (seed, epoch, PROBE), without augmentation, in training
mode (batch statistics, as a training step sees the model). In a pack only the member's output enters the loss,
so the other members' gradients are zero. Whatever the probe changes (running statistics; SynFlow's absolute
values) is restored before it returns.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from gstc.runtime.batches import pack_input
from gstc.runtime.rng import PROBE, epoch_generator

Trainer = Member = Any  # gstc.runtime.train's (its pruning plug-in, gstc.runtime.pruning, calls this module)

KINDS = ("gradient", "hessian", "synflow")


def _losses(t: "Trainer", m: "Member", batches: int):
    """Member m's training loss on each of `batches` batches drawn for this event."""
    data, k = t.data, t.pack
    order = torch.randperm(len(data.train_y), generator=epoch_generator(m.run.seed, t.pruning.epoch_now, PROBE))
    order = order[:batches * t.batch_size].to(t.device)
    for start in range(0, len(order), t.batch_size):
        idx = order[start:start + t.batch_size]
        x, y = data.train_x[idx].permute(0, 2, 3, 1), data.train_y[idx]
        with t.autocast:
            out = t.model(pack_input(x.expand(k, *x.shape), data, t.dtype, t.channels_last)).view(len(y), k, -1)
            yield F.cross_entropy(out[:, m.k].float() if t.dtype == torch.float32 else out[:, m.k], y)


def probe(t: "Trainer", m: "Member", batches: int, kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown probe {kind!r}; known: {', '.join(KINDS)}")
    model = t.model
    saved = {name: b.detach().clone() for name, b in model.state_dict(keep_vars=True).items()}
    was_training = model.training
    t.opt.zero_grad(set_to_none=True)
    try:
        if kind == "synflow":
            _synflow(t, m)
            return
        model.train()
        for loss in _losses(t, m, batches):
            loss.backward()
        if kind == "hessian":
            params = [p for p in model.parameters() if p.grad is not None]
            g = [p.grad.detach().clone() for p in params]
            t.opt.zero_grad(set_to_none=True)
            for loss in _losses(t, m, batches):
                gb = torch.autograd.grad(loss, params, create_graph=True)
                sum((a * b).sum() for a, b in zip(gb, g)).backward()
    finally:
        with torch.no_grad():
            for name, value in model.state_dict(keep_vars=True).items():
                value.copy_(saved[name])
        model.train(was_training)


def _synflow(t: "Trainer", m: "Member") -> None:
    model, data = t.model, t.data
    with torch.no_grad():
        for value in model.state_dict(keep_vars=True).values():
            if value.is_floating_point():
                value.abs_()
    model.eval()
    x = torch.ones(1, t.pack * data.channels, *data.size, dtype=t.dtype, device=t.device)
    if t.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = model(x).view(1, t.pack, -1)
    out[:, m.k].sum().backward()
