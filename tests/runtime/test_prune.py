"""Pruning mechanics on small models: exact zeros, targets, windows, noise, no re-targeting."""

from __future__ import annotations

import pytest

from gstc.runtime.models import build_model
from gstc.runtime.methods import choose
from gstc.runtime.prune import Pruner
from gstc.runtime.step_hooks import StepHooks
from tests.runtime.conftest import compile_text, spec_text

torch = pytest.importorskip("torch")


def pruner_for(arch: str, prune: str, width: float = 0.25, epochs: int = 4, seed: int = 0):
    plan = compile_text(spec_text(arch, width, prune, epochs))
    torch.manual_seed(seed)
    model = build_model(arch, width, 10)
    config = plan.configs[0]
    return plan, model, Pruner(model, config, seed)


def events_at(plan, epoch):
    return [e for e in plan.runs[0].events if e.epoch == epoch]


def capture(model, names):
    """Outputs of each named layer's ChannelMask (after BN, or BN + shortcut), copied: the ReLU after the
    mask works in place."""
    seen, hooks = {}, []
    for name, p in model.prunable().items():
        if name in names:
            hooks.append(p.mask.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.detach().clone())))
    return seen, hooks


def train_steps(model, pruner, steps, lr=0.01):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    hooks = StepHooks([pruner])
    for _ in range(steps):
        x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
        hooks.before_batch([g])
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        hooks.after_backward()
        opt.step()
        hooks.after_step()
    return opt


@pytest.mark.parametrize("arch, layers", [("vgg11_bn", ["conv3", "conv8"]),
                                          ("resnet20", ["layer2.0.conv1", "layer2.0.conv2", "layer3.2.conv2"])])
def test_pruned_channels_are_exactly_zero_after_bn_and_after_the_residual_add(arch, layers):
    selects = "".join(f"    - {{select: {name}, amount: 0.5}}\n" for name in layers)
    plan, model, pruner = pruner_for(arch, f"prune:\n  schedule: {{start: 1}}\n  layers:\n{selects}")
    train_steps(model, pruner, 3)  # BN statistics and weights move away from init
    pruner.apply(1, events_at(plan, 1), 10, torch.Generator().manual_seed(0))
    train_steps(model, pruner, 3)  # and pruned channels stay zero while training continues
    seen, hooks = capture(model, layers)
    x = torch.randn(16, 3, 32, 32)
    for mode in (model.train, model.eval):
        mode()
        model(x)
        for name in layers:
            pruned = pruner.layers[name].targeted
            assert pruned.sum() > 0
            assert torch.count_nonzero(seen[name][:, pruned]) == 0, name
            assert torch.count_nonzero(seen[name][:, ~pruned]) > 0, name
    for h in hooks:
        h.remove()
    for name in layers:  # the pruned filters' weights and BN parameters are zero too
        p, t = model.prunable()[name], pruner.layers[name].targeted
        assert torch.count_nonzero(p.conv.weight[t]) == 0 and torch.count_nonzero(p.bn.weight[t]) == 0


@pytest.mark.parametrize("target", ["smallest", "largest"])
def test_targets_choose_the_lowest_or_highest_scores(target):
    plan, model, pruner = pruner_for("vgg11_bn", f"prune:\n  target: {target}\n  scoring: l1\n  layers:\n"
                                                 "    - {select: conv2, amount: 0.25, schedule: {start: 1}}\n")
    conv = model.prunable()["conv2"].conv
    with torch.no_grad():
        conv.weight.copy_(torch.randn_like(conv.weight))
    scores = conv.weight.detach().abs().sum(dim=(1, 2, 3))
    (record,) = pruner.apply(1, events_at(plan, 1), 10, torch.Generator().manual_seed(0))
    chosen = pruner.layers["conv2"].targeted
    assert record["prune"] == int(chosen.sum()) == 8  # 32 filters at width 0.25, a quarter
    if target == "smallest":
        assert scores[chosen].max() < scores[~chosen].min()
    else:
        assert scores[chosen].min() > scores[~chosen].max()
    assert record["mean_score"] == pytest.approx(float(scores[chosen].mean()))


def test_ties_are_broken_by_index_and_random_is_seeded():
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    everyone = torch.ones(5, dtype=torch.bool)
    g = torch.Generator()
    assert choose(scores, everyone, 2, "smallest", g).tolist() == [1, 2]
    assert choose(scores, everyone, 1, "largest", g).tolist() == [0]
    a = choose(scores, everyone, 3, "random", torch.Generator().manual_seed(4))
    b = choose(scores, everyone, 3, "random", torch.Generator().manual_seed(4))
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 3


def test_a_filter_is_never_targeted_twice():
    prune = ("prune:\n  target: random\n  mode: {kind: zero, duration: {batches: 1}}\n  layers:\n"
             "    - {select: conv4, amount: 0.9, schedule: {start: 1, end: 4, every: 1}}\n")
    plan, model, pruner = pruner_for("vgg11_bn", prune)
    seen: set[int] = set()
    for epoch in (1, 2, 3, 4):
        before = pruner.layers["conv4"].targeted.clone()
        (record,) = pruner.apply(epoch, events_at(plan, epoch), 10, torch.Generator().manual_seed(epoch))
        new = set((pruner.layers["conv4"].targeted & ~before).nonzero().flatten().tolist())
        assert len(new) == record["prune"] and not new & seen
        seen |= new
        train_steps(model, pruner, 2)  # windows end; the filters return but stay targeted
    assert len(seen) == 64 - plan.runs[0].events[-1].kept


def test_zero_window_with_restore_trained_gives_back_bit_equal_weights_and_bn_state():
    prune = ("prune:\n  target: largest\n  mode: {kind: zero, duration: {batches: 3}, targets: newest, restore: trained,"
             " include_bn: true}\n  layers:\n    - {select: conv6, amount: 0.5, schedule: {start: 1}}\n")
    plan, model, pruner = pruner_for("vgg11_bn", prune)
    train_steps(model, pruner, 2)
    p = model.prunable()["conv6"]
    before = {k: t.detach().clone() for k, t in [("w", p.conv.weight), ("g", p.bn.weight), ("b", p.bn.bias),
                                                  ("m", p.bn.running_mean), ("v", p.bn.running_var)]}
    pruner.apply(1, events_at(plan, 1), 10, torch.Generator().manual_seed(0))
    t = pruner.layers["conv6"].targeted
    assert torch.count_nonzero(p.conv.weight[t]) == 0 and torch.count_nonzero(p.bn.weight[t]) == 0
    train_steps(model, pruner, 2)
    assert torch.count_nonzero(p.conv.weight[t]) == 0  # still inside the 3-batch window
    train_steps(model, pruner, 1)  # the window's last batch: released with the saved values
    now = {"w": p.conv.weight, "g": p.bn.weight, "b": p.bn.bias, "m": p.bn.running_mean, "v": p.bn.running_var}
    for key, value in now.items():
        assert torch.equal(value.detach()[t], before[key][t]), key
    train_steps(model, pruner, 1)  # and they train again afterwards
    assert not torch.equal(p.conv.weight.detach()[t], before["w"][t])


def test_zero_window_of_zero_batches_is_seen_only_by_the_post_pruning_evaluation():
    prune = ("prune:\n  mode: {kind: zero, duration: {batches: 0}, restore: trained}\n  layers:\n"
             "    - {select: conv6, amount: 0.5, schedule: {start: 1}}\n")
    plan, model, pruner = pruner_for("vgg11_bn", prune)
    w = model.prunable()["conv6"].conv.weight
    before = w.detach().clone()
    pruner.apply(1, events_at(plan, 1), 10, torch.Generator().manual_seed(0))
    assert torch.count_nonzero(w[pruner.layers["conv6"].targeted]) == 0
    pruner.after_post_eval()
    assert torch.equal(w.detach(), before)


def test_zero_restore_zero_returns_from_zero():
    prune = ("prune:\n  mode: {kind: zero, duration: {batches: 1}}\n  layers:\n"
             "    - {select: conv6, amount: 0.5, schedule: {start: 1}}\n")
    plan, model, pruner = pruner_for("vgg11_bn", prune)
    # Train first: a zeroed channel whose BN shift is still 0 outputs ReLU(0) and gets no gradient.
    train_steps(model, pruner, 3)
    pruner.apply(1, events_at(plan, 1), 10, torch.Generator().manual_seed(0))
    t = pruner.layers["conv6"].targeted
    w = model.prunable()["conv6"].conv.weight
    train_steps(model, pruner, 1)
    assert torch.count_nonzero(w[t]) == 0  # released after the batch, still zero
    train_steps(model, pruner, 2)
    assert torch.count_nonzero(w[t]) > 0  # now it trains from zero


@pytest.mark.parametrize("std", ["matched", 0.05])
def test_gaussian_noise_has_the_requested_std(std):
    prune = (f"prune:\n  mode: {{kind: gaussian, duration: {{batches: 2}}, std: {std}}}\n  layers:\n"
             "    - {select: conv8, amount: 0.5, schedule: {start: 1}}\n")
    plan, model, pruner = pruner_for("vgg11_bn", prune, width=1.0)
    w = model.prunable()["conv8"].conv.weight
    expected = float(w.detach().std()) if std == "matched" else std
    before = w.detach().clone()
    pruner.apply(1, events_at(plan, 1), 10, torch.Generator().manual_seed(0))
    t = pruner.layers["conv8"].targeted
    delta = (w.detach() - before)
    assert torch.count_nonzero(delta[~t]) == 0  # only the targeted filters
    # 256 filters x 512 x 9 draws: the sample std is within 1% of the requested one.
    assert float(delta[t].std()) == pytest.approx(expected, rel=0.01)
    assert float(delta[t].mean()) == pytest.approx(0.0, abs=0.01 * expected)
    # noise again at each training batch of the window, then none
    g = torch.Generator().manual_seed(1)
    for batch, noisy in [(0, True), (1, True), (2, False)]:
        snap = w.detach().clone()
        pruner.before_batch(g)
        assert bool(torch.count_nonzero(w.detach()[t] - snap[t])) is noisy, batch
        pruner.after_step()


def test_activation_l1_scores_are_a_moving_average_of_channel_activations():
    prune = ("prune:\n  scoring: activation_l1\n  layers:\n    - {select: layer3.2.conv2, amount: 0.5, schedule: {start: 1}}\n")
    plan, model, pruner = pruner_for("resnet20", prune)
    seen, hooks = capture(model, ["layer3.2.conv2"])
    x = torch.randn(4, 3, 32, 32)
    pruner.batch = 0
    pruner.in_step = True  # within a training step, on batch 0 (every 10th batch records)
    model(x)
    first = seen["layer3.2.conv2"].abs().sum(dim=(0, 2, 3))
    assert torch.allclose(pruner.layers["layer3.2.conv2"].state["ema"], first)
    model(x * 2)
    second = seen["layer3.2.conv2"].abs().sum(dim=(0, 2, 3))
    assert torch.allclose(pruner.layers["layer3.2.conv2"].state["ema"], 0.9 * first + 0.1 * second)
    pruner.batch = 1  # not a 10th batch: no record
    model(x * 3)
    assert torch.allclose(pruner.layers["layer3.2.conv2"].state["ema"], 0.9 * first + 0.1 * second)
    pruner.batch, pruner.in_step = 0, False  # an evaluation's forward pass: no record
    model(x * 3)
    assert torch.allclose(pruner.layers["layer3.2.conv2"].state["ema"], 0.9 * first + 0.1 * second)
    for h in hooks:
        h.remove()


def test_step_hooks_hold_each_members_filters_with_one_fill_per_packed_tensor(monkeypatch):
    # Three members in one pack: two hold conv3 (zero windows with BN), one of them also
    # conv8, the third prunes nothing. Masking member by member would cost 6 fills per
    # held layer per member per batch (18 here); the pack's held rows cost 6 per held layer (12).
    text = spec_text("vgg11_bn", 0.25, """\
        prune:
          mode: {kind: zero, duration: {batches: 50}, include_bn: true}
          layers:
            - {select: conv3, amount: 0.5, schedule: {epochs: [1]}}
            - {select: conv8, amount: 0.5, schedule: {epochs: [1]}}
        variants:
          both: {}
          conv3: {prune.layers: [{select: conv3, amount: 0.5, schedule: {epochs: [1]}}]}
          none: {prune: null}
        """)
    plan = compile_text(text)
    torch.manual_seed(0)
    model = build_model("vgg11_bn", 0.25, 10, pack=3)
    pruners = [Pruner(model, config, 0, member=i) for i, config in enumerate(plan.configs)]
    hooks = StepHooks(pruners)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    fills = []
    real = torch.Tensor.index_fill_
    monkeypatch.setattr(torch.Tensor, "index_fill_", lambda t, *a: fills.append(t.shape) or real(t, *a))

    def step():
        x, y = torch.randn(8, 9, 32, 32, generator=g), torch.randint(0, 10, (8, 3), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).view(8, 3, -1).flatten(0, 1), y.flatten()).backward()
        hooks.after_backward()
        opt.step()
        hooks.after_step()

    # Train first, so that Adam's moments would move the held filters if nothing re-zeroed them.
    step(), step()
    assert fills == []  # nothing held yet
    for pruner, run in zip(pruners, plan.runs):
        pruner.apply(1, [e for e in run.events if e.epoch == 1], 10, torch.Generator().manual_seed(0))
    before = {name: p.conv.weight.detach().clone() for name, p in model.prunable().items()}
    fills.clear()
    for n in range(1, 4):
        step()
        assert len(fills) == 12 * n
    assert {len(s) for s in fills} == {1, 4}  # whole packed tensors: BN vectors and conv weights
    for i, pruner in enumerate(pruners):
        for name in ("conv3", "conv8"):
            p = model.prunable(i)[name]
            w = p.weight.detach()
            held = pruner.layers[name].targeted if name in pruner.layers else torch.zeros(len(w), dtype=torch.bool)
            for tensor in (w, p.bn_weight.detach(), p.bn_bias.detach()):
                assert torch.count_nonzero(tensor[held]) == 0, (i, name)
            # every filter not held trained on (Adam moves each weight it has moments of)
            assert not (w[~held] == p.part(before[name])[~held]).all(dim=(1, 2, 3)).any(), (i, name)
        assert pruner.batch == 5
