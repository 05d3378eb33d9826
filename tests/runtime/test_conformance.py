"""Pruning means removal: for every model gstc prunes, masking equals cutting the channels out.

Per model (benchmarks/conformance.py builds it): 50% of every layer gstc accepts is pruned at
initialization through the compiler and the pruner, after the norms' scales, shifts and
statistics were randomized. Then the masked model's output equals the physically pruned
model's (Torch-Pruning's cut for discovered models, a rebuilt model for the built-ins) in
float64; gstc's parameter count equals the exported model's `numel`, and its MAC count
torch's FlopCounterMode; and every layer gstc refuses says why.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from benchmarks.conformance import MODELS, check  # noqa: E402

# In the default run (about 1 s each): the built-in VGG11 and ResNet20 (the paper's masks), a residual sum
# (torchvision's ResNet18), timm's norm-plus-activation modules, depthwise convs and gates (EfficientNet-B0),
# LayerNorms (ConvNeXt), concatenations and an output conv (SqueezeNet), and a model Torch-Pruning cannot follow
# (ShuffleNetV2). The others are marked slow.
QUICK = {"gstc.vgg11_bn", "gstc.resnet20", "tv.resnet18", "timm.efficientnet_b0", "timm.convnext_atto",
         "tv.squeezenet1_0", "tv.shufflenet_v2_x0_5"}
# Where gstc refuses layers, and the words of why (one reason of each model, checked to be there).
REFUSED = {
    "timm.efficientnet_b0": "a depthwise conv: its channels are",
    "timm.mobilenetv3_small_100": "a gate (its output multiplies them)",
    "timm.convnext_atto": "normalizes over channels",
    "timm.regnety_002": "is a grouped conv (groups=",
    "tv.regnet_x_400mf": "is a grouped conv (groups=",
    "tv.squeezenet1_0": "its channels are the model's output",
    "tv.shufflenet_v2_x0_5": "Torch-Pruning cannot follow this model's channels",
    "tv.mobilenet_v2": "a depthwise conv",
    "tv.mobilenet_v3_small": "a gate (its output multiplies them)",
    "tv.efficientnet_b0": "a depthwise conv",
}


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in MODELS])
def test_masked_and_physically_pruned_models_agree(name, tmp_path):
    r = check(name, tmp_path)
    assert r.difference < 1e-5, f"{name}: a removed channel changes the output by {r.difference:.2e}"
    before, counted, exported = r.params
    assert counted == exported, f"{name}: gstc counts {counted:,} parameters, the exported model has {exported:,}"
    assert r.macs[1] == r.macs[2], f"{name}: gstc counts {r.macs[1]:,} MACs, FlopCounterMode {r.macs[2]:,}"
    assert all(isinstance(why, str) and len(why) > 20 for why in r.refused.values())
    if name in REFUSED:
        assert any(REFUSED[name] in why for why in r.refused.values()), sorted(set(r.refused.values()))
    else:
        assert not r.refused, r.refused
    if r.accepted:  # half of every accepted layer is gone: fewer parameters and MACs
        assert exported < before and r.macs[2] < r.macs[0]
    else:
        assert name == "tv.shufflenet_v2_x0_5"  # nothing gstc can prune exactly (see REFUSED)
