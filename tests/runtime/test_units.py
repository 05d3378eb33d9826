"""Weight-granularity pruning, global scope and SNIP, each checked against an implementation gstc did not write
(torch.nn.utils.prune) or a computation written here, on the same weights."""

from __future__ import annotations

import copy

import pytest

from gstc.runtime.models import build_model
from gstc.runtime.prune import Pruner
from gstc.runtime.step_hooks import StepHooks
from tests.runtime.conftest import compile_text, spec_text
from tests.runtime.test_prune import train_steps

torch = pytest.importorskip("torch")
tprune = pytest.importorskip("torch.nn.utils.prune")


def pruner_for(prune: str, arch: str = "vgg11_bn", seed: int = 0, probe=None):
    plan = compile_text(spec_text(arch, 0.25, prune, epochs=4))
    torch.manual_seed(seed)
    model = build_model(arch, 0.25, 10)
    return plan, model, Pruner(model, plan.configs[0], seed, probe=probe)


def events_at(plan, epoch):
    return [e for e in plan.runs[0].events if e.epoch == epoch]


def reference(model, name):
    """A copy of the named conv, for torch.nn.utils.prune to prune on its own."""
    return copy.deepcopy(dict(model.named_modules())[name])


def test_unstructured_masks_equal_torch_l1_unstructured_event_after_event():
    """Per layer, each event's mask is torch's l1_unstructured with the same count, applied to the weights as
    they are at the event (torch prunes the k smallest |w| among the weights not pruned yet)."""
    plan, model, pruner = pruner_for("prune:\n  granularity: weight\n  scoring: l1\n  schedule: {epochs: [1, 2]}\n"
                                     "  layers:\n    - {select: conv5, amount: 0.6}\n    - {select: conv2, amount: 0.3}\n")
    refs = {name: reference(model, name) for name in ("conv2", "conv5")}
    g = torch.Generator().manual_seed(1)
    for epoch in (1, 2):
        with torch.no_grad():  # the weights move between events, as training moves them
            for name, ref in refs.items():
                conv = dict(model.named_modules())[name]
                step = torch.randn(conv.weight.shape, generator=g, dtype=conv.weight.dtype) * 0.05
                conv.weight.add_(step * ~pruner.weights[name].targeted)  # pruned weights stay zero (the hooks' job)
                if hasattr(ref, "weight_orig"):  # torch ranks `weight`, which its forward pre-hook recomputes
                    ref.weight_orig.add_(step)
                    ref.weight = ref.weight_orig * ref.weight_mask
                else:
                    ref.weight.add_(step)
        records = pruner.apply(epoch, events_at(plan, epoch), 10, torch.Generator().manual_seed(0))
        for rec in records:
            ref = refs[rec["layer"]]
            tprune.l1_unstructured(ref, "weight", amount=rec["prune"])
            state = pruner.weights[rec["layer"]]
            assert torch.equal(state.targeted, ref.weight_mask == 0), (epoch, rec["layer"])
            conv = dict(model.named_modules())[rec["layer"]]
            assert torch.equal(conv.weight.detach() == 0, ref.weight_mask == 0)  # zero exactly where torch masks
    s = {x.layer: x for x in plan.configs[0].schedules}
    assert s["conv5"].units == 128 * 64 * 9 and s["conv5"].kept[-1] == 29492  # ceil(0.4 x 73,728)


def test_global_masks_equal_torch_global_unstructured():
    """One ranking across the layers: the masks equal global_unstructured(L1Unstructured) with the plan's count,
    and how that count fell per layer is the record of each layer."""
    layers = ["conv5", "conv6", "conv7", "conv8"]
    plan, model, pruner = pruner_for("prune:\n  granularity: weight\n  scope: global\n  scoring: l1\n  amount: 0.8\n"
                                     "  schedule: {epochs: [1]}\n  layers:\n    - {select: 'conv[5-8]'}\n")
    with torch.no_grad():  # layers of different scales, so that the global ranking differs from per-layer ones
        for i, name in enumerate(layers):
            dict(model.named_modules())[name].weight.mul_(1 + i)
    refs = [reference(model, name) for name in layers]
    (event,) = events_at(plan, 1)
    assert event.group == layers and event.of == sum(r.weight.numel() for r in refs)
    records = pruner.apply(1, [event], 10, torch.Generator().manual_seed(0))
    tprune.global_unstructured([(r, "weight") for r in refs], pruning_method=tprune.L1Unstructured, amount=event.prune)
    for name, ref, rec in zip(layers, refs, records):
        assert rec["layer"] == name
        assert torch.equal(pruner.weights[name].targeted, ref.weight_mask == 0), name
        assert rec["prune"] == int((ref.weight_mask == 0).sum())
    counts = [r["prune"] for r in records]
    assert sum(counts) == event.prune and len(set(counts)) == len(counts)  # uneven: the scales differ


def test_pruned_weights_stay_exactly_zero_while_training_with_weight_decay():
    plan, model, pruner = pruner_for("prune:\n  granularity: weight\n  schedule: {epochs: [1]}\n"
                                     "  layers:\n    - {select: conv3, amount: 0.5}\n")
    pruner.apply(1, events_at(plan, 1), 10, torch.Generator().manual_seed(0))
    conv = dict(model.named_modules())["conv3"]
    pruned = pruner.weights["conv3"].targeted.clone()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    hooks, g = StepHooks([pruner]), torch.Generator().manual_seed(0)
    before = conv.weight.detach().clone()
    for _ in range(3):
        x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
        hooks.before_batch([g])
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        hooks.after_backward()
        assert torch.count_nonzero(conv.weight.grad[pruned]) == 0  # no gradient: Adam's moments stay zero
        opt.step()
        hooks.after_step()
    assert torch.count_nonzero(conv.weight.detach()[pruned]) == 0
    assert bool((conv.weight.detach()[~pruned] != before[~pruned]).all())  # the rest trains


@pytest.mark.parametrize("granularity", ["weight", "filter"])
def test_snip_scores_equal_gradient_times_weight_on_the_same_batch(granularity):
    """SNIP's score is |dL/dw * w| (summed over a filter's weights for filters), the gradient being the one the
    test computes itself on the batch it hands to the probe."""
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
    holder = {}

    def probe(batches, kind):
        assert batches == 2 and kind == "gradient"
        holder["model"].zero_grad(set_to_none=True)
        for _ in range(batches):  # summed over the batches (here the same batch twice)
            torch.nn.functional.cross_entropy(holder["model"](x), y).backward()

    plan, model, pruner = pruner_for(f"prune:\n  granularity: {granularity}\n  scoring: {{name: snip, batches: 2}}\n"
                                     "  schedule: {epochs: [0]}\n  layers:\n    - {select: conv4, amount: 0.5}\n",
                                     probe=probe)
    holder["model"] = model
    mine = copy.deepcopy(model)
    loss = 2 * torch.nn.functional.cross_entropy(mine(x), y)
    (grad,) = torch.autograd.grad(loss, [mine.conv4.weight])
    expected = (grad * mine.conv4.weight).abs()
    if granularity == "filter":
        expected = expected.sum(dim=(1, 2, 3))
    got = pruner.score("conv4")
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-8)


def test_snip_chooses_at_epoch_0_through_the_trainers_probe(tmp_path):
    """In a run, SNIP's gradients come from the trainer's probe, on batches drawn for the event: the pruned weights
    are the smallest |g * w| of the gradient the test computes on the same batch from the same initialization."""
    from gstc.runtime.batches import normalize
    from gstc.runtime.rng import PROBE, epoch_generator
    from gstc.runtime.train import Trainer
    from gstc.runtime.worker import load

    plan = compile_text(spec_text("vgg11_bn", 0.125, "prune:\n  granularity: weight\n  scoring: snip\n"
                                  "  schedule: {epochs: [0]}\n  layers:\n    - {select: conv6, amount: 0.5}\n", epochs=1))
    run, config = plan.runs[0], plan.configs[0]
    data = load(config.resolved.data)
    trainer = Trainer([run], [config], data, torch.device("cpu"), dtype=torch.float64)
    mine = copy.deepcopy(trainer.model)
    buffers = {name: b.clone() for name, b in trainer.model.named_buffers()}
    trainer.prune_epoch(0)
    idx = torch.randperm(len(data.train_y), generator=epoch_generator(run.seed, 0, PROBE))[:64]
    x = normalize(data.train_x[idx], data, torch.float64)
    loss = torch.nn.functional.cross_entropy(mine(x), data.train_y[idx])
    (grad,) = torch.autograd.grad(loss, [mine.conv6.weight])
    score = (grad * mine.conv6.weight).abs().flatten()
    k = run.events[0].prune
    expected = torch.zeros_like(score, dtype=torch.bool)
    expected[torch.argsort(score, stable=True)[:k]] = True
    assert torch.equal(trainer.members[0].pruner.weights["conv6"].targeted.flatten(), expected)
    # The probe left the running statistics as they were.
    for name, b in trainer.model.named_buffers():
        assert torch.equal(b, buffers[name]), name


def test_2_4_masks_keep_exactly_the_2_largest_magnitudes_of_every_group_of_4():
    """Every group of 4 consecutive input channels' weights (at one filter and kernel position) keeps its 2
    largest |w|, computed here with topk on the weights laid out as (out, kh, kw, in)."""
    plan, model, pruner = pruner_for("prune:\n  granularity: '2:4'\n  scoring: l1\n  schedule: {epochs: [1]}\n"
                                     "  layers:\n    - {select: 'conv[36]'}\n")
    for name in ("conv3", "conv6"):
        w = dict(model.named_modules())[name].weight.detach().clone()
        out, inputs, kh, kw = w.shape
        groups = w.permute(0, 2, 3, 1).reshape(out, kh, kw, inputs // 4, 4)
        keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, groups.abs().topk(2, dim=-1).indices, True)
        expected = ~keep.reshape(out, kh, kw, inputs).permute(0, 3, 1, 2)
        pruner.apply(1, [e for e in events_at(plan, 1) if e.layer == name], 10, torch.Generator().manual_seed(0))
        state = pruner.weights[name]
        assert torch.equal(state.targeted, expected), name
        assert int(state.targeted.sum()) == w.numel() // 2 and state.untargeted() == 0  # every group taken
        after = dict(model.named_modules())[name].weight.detach()
        nonzero = (after.permute(0, 2, 3, 1).reshape(out, kh, kw, inputs // 4, 4) != 0).sum(-1)
        assert bool((nonzero == 2).all())


def test_a_partial_n_m_event_takes_the_groups_that_lose_the_least():
    """With an amount below 1, an event takes the groups whose pruned weights have the smallest summed score (for
    2:4 and l1: the two smallest |w| of the group), exactly the plan's count of them."""
    plan, model, pruner = pruner_for("prune:\n  granularity: '2:4'\n  scoring: l1\n  schedule: {epochs: [1]}\n"
                                     "  layers:\n    - {select: conv5, amount: 0.25}\n")
    (event,) = events_at(plan, 1)
    w = model.conv5.weight.detach().clone()
    out, inputs, kh, kw = w.shape
    assert event.of == out * kh * kw * inputs // 4 and event.prune == event.of // 4
    loss = w.abs().permute(0, 2, 3, 1).reshape(out, kh, kw, inputs // 4, 4).sort(-1).values[..., :2].sum(-1).flatten()
    expected = torch.zeros_like(loss, dtype=torch.bool)
    expected[torch.argsort(loss.double(), stable=True)[:event.prune]] = True
    pruner.apply(1, [event], 10, torch.Generator().manual_seed(0))
    assert torch.equal(pruner.weights["conv5"].groups.flatten(), expected)
    assert int(pruner.weights["conv5"].targeted.sum()) == 2 * event.prune


def trainer_for(prune: str, epochs: int = 1):
    from gstc.runtime.train import Trainer
    from gstc.runtime.worker import load

    plan = compile_text(spec_text("vgg11_bn", 0.125, prune, epochs=epochs))
    run, config = plan.runs[0], plan.configs[0]
    return run, Trainer([run], [config], load(config.resolved.data), torch.device("cpu"), dtype=torch.float64)


def smallest(score: torch.Tensor, k: int, free: torch.Tensor | None = None) -> torch.Tensor:
    """The k lowest scores among `free` (all by default), ties by index: what target smallest removes."""
    flat = score.flatten().double()
    idx = torch.arange(len(flat)) if free is None else free.flatten().nonzero().flatten()
    out = torch.zeros(len(flat), dtype=torch.bool)
    out[idx[torch.argsort(flat[idx], stable=True)[:k]]] = True
    return out.view(score.shape)


def test_grasp_removes_the_smallest_w_times_hessian_gradient_computed_by_torch_func():
    """GraSP at epoch 0: the pruned weights are the smallest w * (H g), with H g computed here by forward-over-reverse
    differentiation (torch.func.jvp of torch.func.grad) on the batch the trainer's probe draws."""
    from torch.func import functional_call, grad, jvp, replace_all_batch_norm_modules_

    from gstc.runtime.batches import normalize
    from gstc.runtime.rng import PROBE, epoch_generator

    run, trainer = trainer_for("prune:\n  granularity: weight\n  scoring: grasp\n  schedule: {epochs: [0]}\n"
                               "  layers:\n    - {select: conv6, amount: 0.5}\n")
    mine = copy.deepcopy(trainer.model)
    trainer.prune_epoch(0)
    data = trainer.data
    idx = torch.randperm(len(data.train_y), generator=epoch_generator(run.seed, 0, PROBE))[:64]
    x, y = normalize(data.train_x[idx], data, torch.float64), data.train_y[idx]
    replace_all_batch_norm_modules_(mine)  # batch statistics without updating running ones (a transform's rule)
    params = {n: p.detach() for n, p in mine.named_parameters()}
    buffers = {n: b.clone() for n, b in mine.named_buffers()}

    def loss(p):
        return torch.nn.functional.cross_entropy(functional_call(mine, (p, buffers), (x,)), y)

    g = grad(loss)(params)
    _, hg = jvp(grad(loss), (params,), (g,))
    score = params["conv6.weight"] * hg["conv6.weight"]
    expected = smallest(score, run.events[0].prune)
    assert torch.equal(trainer.members[0].pruner.weights["conv6"].targeted, expected)


def synflow_scores(model: torch.nn.Module, name: str) -> torch.Tensor:
    """|dR/dw * w| of `name`'s weight, R the summed output of the all-positive model on ones, in eval mode."""
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        for v in m.state_dict(keep_vars=True).values():
            if v.is_floating_point():
                v.abs_()
    w = dict(m.named_modules())[name].weight
    (g,) = torch.autograd.grad(m(torch.ones(1, 3, 32, 32, dtype=torch.float64)).sum(), [w])
    return (g * w).abs().detach()


@pytest.mark.parametrize("iterations", [1, 4])
def test_synflow_rounds_rescore_after_each_rounds_pruning(iterations):
    """SynFlow in rounds, ranked globally over three convs: each round removes its share of the event's count
    (kept fraction (kept/before)^(1/n) per round) by the scores of the model as the previous rounds left it; the
    reference is that loop written here. Within one layer the scores do not depend on the layer's own weights, so
    it is across layers that rounds change the choice."""
    layers = ["conv5", "conv6", "conv7"]
    run, trainer = trainer_for(f"prune:\n  granularity: weight\n  scope: global\n  amount: 0.9\n"
                               f"  scoring: {{name: synflow, iterations: {iterations}}}\n"
                               "  schedule: {epochs: [0]}\n  layers:\n    - {select: 'conv[5-7]'}\n")
    mine = copy.deepcopy(trainer.model)
    pruner, calls = trainer.members[0].pruner, []
    probe = pruner.probe
    pruner.probe = lambda batches, kind: (calls.append(kind), probe(batches, kind))
    trainer.prune_epoch(0)
    assert calls == ["synflow"] * iterations  # one probe per round, shared by the group's three layers
    convs = [dict(mine.named_modules())[n] for n in layers]
    sizes = [c.weight.numel() for c in convs]
    before, prune = sum(sizes), run.events[0].prune
    after = before - prune
    kept = [before] + [max(after, round(before * (after / before) ** (j / iterations))) for j in range(1, iterations)]
    kept.append(after)

    def scores() -> torch.Tensor:
        return torch.cat([synflow_scores(mine, n).flatten() for n in layers])

    initial = scores()
    pruned = torch.zeros(before, dtype=torch.bool)
    for a, b in zip(kept, kept[1:]):
        chosen = smallest(scores(), a - b, ~pruned)
        pruned |= chosen
        with torch.no_grad():
            for conv, part in zip(convs, chosen.split(sizes)):
                conv.weight[part.view(conv.weight.shape)] = 0
    states = trainer.members[0].pruner.weights
    got = torch.cat([states[n].targeted.flatten() for n in layers])
    assert int(got.sum()) == prune
    assert torch.equal(got, pruned)
    assert torch.equal(pruned, smallest(initial, prune)) == (iterations == 1)  # rounds change the choice


def test_a_zero_window_on_weights_holds_them_then_restores_their_trained_values():
    plan, model, pruner = pruner_for("prune:\n  granularity: weight\n  scoring: l1\n  schedule: {epochs: [1]}\n"
                                     "  mode: {kind: zero, duration: {batches: 3}, restore: trained}\n"
                                     "  layers:\n    - {select: conv4, amount: 0.5}\n")
    train_steps(model, pruner, 2)
    before = model.conv4.weight.detach().clone()
    pruner.apply(1, events_at(plan, 1), 10, torch.Generator().manual_seed(0))
    state = pruner.weights["conv4"]
    held = state.held.clone()
    assert int(held.sum()) == before.numel() // 2 and torch.equal(held, state.targeted)
    train_steps(model, pruner, 2)  # inside the window: exactly zero
    assert torch.count_nonzero(model.conv4.weight.detach()[held]) == 0 and pruner.zeroed() == before.numel() // 2
    train_steps(model, pruner, 1)  # the third batch ends the window: back as they were before it
    assert not state.held.any() and pruner.zeroed() == 0
    assert torch.equal(model.conv4.weight.detach()[held], before[held])
    assert bool((model.conv4.weight.detach()[~held] != before[~held]).all())  # the others trained throughout


def test_gaussian_noise_on_weights_moves_only_the_targeted_ones_for_its_window():
    plan, model, pruner = pruner_for("prune:\n  granularity: weight\n  scoring: l1\n  schedule: {epochs: [1]}\n"
                                     "  mode: {kind: gaussian, duration: {batches: 2}, std: 0.5}\n"
                                     "  layers:\n    - {select: conv4, amount: 0.25}\n")
    before = model.conv4.weight.detach().clone()
    pruner.apply(1, events_at(plan, 1), 10, torch.Generator().manual_seed(0))
    targeted = pruner.weights["conv4"].targeted
    moved = model.conv4.weight.detach() != before
    assert torch.equal(moved, targeted)  # noise at the event, on the targeted weights only
    std = float((model.conv4.weight.detach() - before)[targeted].std())
    assert 0.45 < std < 0.55  # about the std asked for (9,216 draws)
    g = torch.Generator().manual_seed(1)
    for batch, noisy in ((0, True), (1, True), (2, False)):  # noise before batches 0 and 1 of the window
        snap = model.conv4.weight.detach().clone()
        pruner.before_batch(g)
        assert torch.equal(model.conv4.weight.detach() != snap, targeted if noisy else torch.zeros_like(targeted)), batch
        pruner.after_step()


def test_a_dense_layer_takes_single_weights_and_2_4_groups_along_its_inputs():
    """The classifier is selectable for weight and N:M granularity: its (out, in) weight loses the 2 smallest |w|
    of every 4 consecutive inputs, and l1_unstructured's choice for single weights."""
    plan, model, pruner = pruner_for("prune:\n  granularity: '2:4'\n  scoring: l1\n  schedule: {epochs: [1]}\n"
                                     "  layers:\n    - {select: fc}\n")
    w = model.fc.weight.detach().clone()
    out, inputs = w.shape
    keep = torch.zeros(out, inputs // 4, 4, dtype=torch.bool).scatter_(
        -1, w.abs().view(out, inputs // 4, 4).topk(2, dim=-1).indices, True)
    pruner.apply(1, events_at(plan, 1), 10, torch.Generator().manual_seed(0))
    assert torch.equal(pruner.weights["fc"].targeted, ~keep.view(out, inputs))
    assert torch.count_nonzero(model.fc.weight.detach()) == w.numel() // 2

    plan, model, pruner = pruner_for("prune:\n  granularity: weight\n  scoring: l1\n  schedule: {epochs: [1]}\n"
                                     "  layers:\n    - {select: fc, amount: 0.7}\n")
    ref = reference(model, "fc")
    (event,) = events_at(plan, 1)
    pruner.apply(1, [event], 10, torch.Generator().manual_seed(0))
    tprune.l1_unstructured(ref, "weight", amount=event.prune)
    assert torch.equal(pruner.weights["fc"].targeted, ref.weight_mask == 0)


def test_fpgm_scores_equal_scipys_summed_distances_between_filters():
    """FPGM's score of a filter is the sum of its Euclidean distances to the layer's filters, here by
    scipy.spatial.distance.cdist on the same weights; the event removes the smallest."""
    distance = pytest.importorskip("scipy.spatial.distance")
    plan, model, pruner = pruner_for("prune:\n  scoring: fpgm\n  schedule: {epochs: [1]}\n"
                                     "  layers:\n    - {select: conv5, amount: 0.25}\n")
    rows = model.conv5.weight.detach().double().flatten(1).numpy()
    expected = torch.from_numpy(distance.cdist(rows, rows).sum(axis=1))
    torch.testing.assert_close(pruner.score("conv5").double(), expected, rtol=1e-12, atol=0)
    (event,) = events_at(plan, 1)
    pruner.apply(1, [event], 10, torch.Generator().manual_seed(0))
    assert torch.equal(pruner.layers["conv5"].targeted, smallest(expected, event.prune))
