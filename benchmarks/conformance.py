"""Conformance of gstc's pruning with physically pruned models, architecture by architecture.

For each model: which convs gstc accepts as prunable layers and why it refuses the others;
then, with 50% of every accepted layer pruned at initialization (at random, through the
compiler and the pruner, as `gstc run` does) after its norms' scales, shifts and
statistics were randomized (so that a norm a pruned channel reaches cannot hide behind
its initial zero shift):

- the largest difference between the masked model's output and the exported model's
  (channels removed by gstc.runtime.export), in float64, eval mode;
- parameters and MACs per image as gstc counts them (gstc.costs) and as the exported
  model has them (`numel`, torch's FlopCounterMode), before and after;
- with --latency, the median CPU time of a forward pass of the exported model against
  the unpruned one, measured alternately in this process (float32).

    python benchmarks/conformance.py                      # every model, markdown table
    python benchmarks/conformance.py --models tv.resnet18 gstc.vgg11_bn --latency

tests/runtime/test_conformance.py asserts the equalities for every model listed here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gstc import archs  # noqa: E402
from gstc.compile import compile_file  # noqa: E402
from gstc.runtime.export import dense, latency, macs, physical, randomize_norms  # noqa: E402
from gstc.runtime.layer_files import layer_model  # noqa: E402
from gstc.runtime.models import build_model  # noqa: E402
from gstc.runtime.prune import Pruner  # noqa: E402

TIMM = ["resnet18", "resnet10t", "efficientnet_b0", "mobilenetv3_small_100", "regnety_002", "convnext_atto", "densenet121"]
TORCHVISION = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "regnet_x_400mf",
               "densenet121", "shufflenet_v2_x0_5", "squeezenet1_0", "vgg11_bn"]
# name -> (model.arch, model.args)
MODELS = {**{f"timm.{m}": ("timm:create_model", {"model_name": m}) for m in TIMM},
          **{f"tv.{m}": (f"torchvision.{m}", {}) for m in TORCHVISION},
          **{f"gstc.{m}": (m, {}) for m in archs.ARCHS}}
SHAPE, CLASSES = (3, 32, 32), 10  # the `synthetic` dataset's
KINDS = ("a depthwise conv", "a gate", "normalizes over channels", "grouped conv", "the model's output",
         "Torch-Pruning cannot follow", "a parameter used outside")  # how refusals are summed up


@dataclass
class Result:
    name: str
    accepted: int
    refused: dict[str, str]  # layer -> reason
    difference: float  # largest |masked - exported| output, float64
    params: tuple[int, int, int]  # unpruned, after as counted, exported
    macs: tuple[int, int, int]  # unpruned, after as counted, exported (FlopCounterMode)
    latency: tuple[float, float] | None = None  # seconds: unpruned, exported


def _spec(folder: Path, arch: str, args: dict, accepted: list[str]) -> Path:
    layers = "".join(f'\n    - {{select: "{name}", amount: 0.5}}' for name in accepted)
    prune = f"prune:\n  scoring: l1\n  target: random\n  schedule: {{epochs: [0]}}\n  layers:{layers}\n" if accepted else ""
    own = arch not in archs.ARCHS  # built-in architectures have their tables in gstc; others a layer file
    model = f"{{arch: {json.dumps(arch)}" + (f", args: {json.dumps(args)}, layers: m.layers.json}}" if own else "}")
    spec = folder / "m.yaml"
    spec.write_text(textwrap.dedent(f"""\
        gstc: 1
        name: conformance
        seeds: 1
        model: {model}
        data: {{dataset: synthetic}}
        train: {{epochs: 1, batch_size: 8, optimizer: {{name: sgd, lr: 0.1}}}}
        """) + prune)
    return spec


def half_pruned(name: str, folder: Path, seed: int = 0) -> tuple[nn.Module, list[dict]]:
    """Model `name` with 50% of every accepted layer pruned at initialization; its layer table."""
    arch, args = MODELS[name]
    if arch in archs.ARCHS:
        rows = [{"name": l.name, "filters": l.filters} for l in archs.layers(arch)]
    else:
        rows, cost = layer_model(arch, args, SHAPE[0], SHAPE[1:], CLASSES)
        entry = {"arch": arch, "args": args, "input": list(SHAPE), "classes": CLASSES, "layers": rows, "cost": cost}
        (folder / "m.layers.json").write_text(archs.layer_file_text([entry]))
    plan = compile_file(str(_spec(folder, arch, args, [r["name"] for r in rows if not r.get("refused")])))
    config, run = plan.configs[0], plan.runs[0]
    torch.manual_seed(seed)
    model = build_model(arch, 1.0, CLASSES, layers=config.layers, channels=SHAPE[0], size=SHAPE[1:], args=args)
    randomize_norms(model, torch.Generator().manual_seed(seed))
    Pruner(model, config, seed).apply(0, run.events, 1, torch.Generator().manual_seed(seed))
    return model.eval(), rows


def check(name: str, folder: Path, timing: bool = False, batch: int = 32, repeats: int = 20) -> Result:
    model, rows = half_pruned(name, folder)
    model = model.double()
    example = torch.randn(4, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exported = physical(model, example)
    with torch.no_grad():
        difference = float((model(example) - exported(example)).abs().max())
    full = {n: p.channels for n, p in model.prunable().items()}
    live = {n: p.channels - int((p.mask_values == 0).sum()) for n, p in model.prunable().items()}
    (p0, m0), (p1, m1) = model.cost.count(full), model.cost.count(live)
    result = Result(name, sum(1 for r in rows if not r.get("refused")), {r["name"]: r["refused"] for r in rows if r.get("refused")},
                    difference, (p0, p1, sum(p.numel() for p in exported.parameters())), (m0, m1, macs(exported, example)))
    if timing:
        x = torch.randn(batch, *SHAPE, generator=torch.Generator().manual_seed(2))
        unpruned, small = dense(model).float().eval(), exported.float().eval()
        times = [(latency(unpruned, x, 1), latency(small, x, 1)) for _ in range(repeats)]  # alternating
        result.latency = (sorted(t[0] for t in times)[repeats // 2], sorted(t[1] for t in times)[repeats // 2])
    return result


def markdown(results: list[Result]) -> str:
    def short(n: int) -> str:
        return f"{n / 1e6:.2f}M"
    lines = ["| model | layers accepted / refused | largest difference | params before -> after | MACs before -> after"
             " | CPU latency, exported / unpruned |", "|---|---|---|---|---|---|"]
    for r in results:
        lat = f"{1e3 * r.latency[1]:.1f} / {1e3 * r.latency[0]:.1f} ms ({r.latency[1] / r.latency[0]:.2f}x)" if r.latency else "-"
        lines.append(f"| {r.name} | {r.accepted} / {len(r.refused)} | {r.difference:.1e} | {short(r.params[0])} -> "
                     f"{short(r.params[2])} | {short(r.macs[0])} -> {short(r.macs[2])} | {lat} |")
    lines += ["", "Refused layers, by kind of reason (one reason in full):", ""]
    for r in results:
        kinds: dict[str, list[str]] = {}
        for layer, why in r.refused.items():
            kinds.setdefault(next((k for k in KINDS if k in why), why), []).append(why)
        for kind, whys in kinds.items():
            lines.append(f"- {r.name}, {len(whys)} x {kind}: \"{whys[0]}\"")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--latency", action="store_true", help="also time the exported and the unpruned model")
    parser.add_argument("--batch", type=int, default=32, help="images per timed forward pass")
    parser.add_argument("--repeats", type=int, default=20, help="timed passes of each model")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, input {SHAPE}, batch {args.batch}")
    results = []
    for name in args.models:
        with tempfile.TemporaryDirectory() as folder:
            results.append(check(name, Path(folder), args.latency, args.batch, args.repeats))
        r = results[-1]
        print(f"{name}: {r.accepted} accepted, {len(r.refused)} refused, difference {r.difference:.1e}, params "
              f"{r.params}, MACs {r.macs}" + (f", latency {r.latency}" if r.latency else ""), file=sys.stderr)
    print(markdown(results))


if __name__ == "__main__":
    main()
