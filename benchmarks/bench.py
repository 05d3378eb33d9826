"""Run-epochs per second: the reference recipe vs gstc runs and packs, measured in one process.

(a) The reference recipe (what the paper's authors ran): a torchvision-style dataset of
    PIL images with ToTensor and Normalize transforms (plus RandomCrop and
    RandomHorizontalFlip with --augment), a DataLoader with worker processes, fp32,
    one run at a time. Written here for the comparison.
(b) One gstc run: the runtime's Trainer (device-resident uint8 data, batches sliced
    from a seeded permutation, normalization and augmentation on the device).
(c) gstc packs of K runs: K members trained as one model (docs/runtime.md, "Packed runs and speed").

Every row trains the same model (runtime.models) with Adam and the same batch size on
the same images. Timings alternate between the recipes (a, b, c, a, b, c, ...) after
one warm-up epoch each, and each row reports the median over --repeats epochs: on a
shared 2-core CPU, timings drift within a process, and alternation spreads the drift
over every row. Ratios are against (a) measured in the same process. The matrix rate is
measured here too (a large matmul in fp32, and in bf16 with --precision bf16); a row's
fraction is its useful FLOP per second (torch.utils.flop_counter over one training step
of one member, times members and batches) divided by the rate of its own precision.

    # the quickstart configuration on digits
    python benchmarks/bench.py quickstart
    # ... plus a bf16-autocast gstc row (the spec's train.precision: bf16; the reference stays fp32)
    python benchmarks/bench.py quickstart --precision bf16
    # the four architectures on synthetic CIFAR-shaped data, packs of 2..32 where memory allows
    python benchmarks/bench.py packs --train-size 50000 --precision bf16                 # on a GPU
    python benchmarks/bench.py packs --train-size 512 --width 0.25 --packs 1,2,4,8 --repeats 3  # on a CPU
    # the pruning hooks of one training batch in Figure 2's packs: member by member vs one fill per packed tensor
    python benchmarks/bench.py hooks --packs 1,8,32                         # on a GPU
    python benchmarks/bench.py hooks --packs 1,8,32 --width 0.25 --repeats 5  # on a CPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gstc.compile import check, compile_file  # noqa: E402
from gstc.load import load_text  # noqa: E402
from gstc.runtime.data import CLASSES, Dataset, load  # noqa: E402
from gstc.runtime.loaders import _synthetic  # noqa: E402
from gstc.runtime.models import build_model  # noqa: E402
from gstc.runtime.prune import Pruner  # noqa: E402
from gstc.runtime.step_hooks import StepHooks  # noqa: E402
from gstc.runtime.train import Trainer  # noqa: E402

ARCHS = ["vgg11_bn", "resnet18", "resnet20", "resnet56"]


class ImageDataset(torch.utils.data.Dataset):
    """torchvision-style: PIL images in, transform per item (as torchvision.datasets.CIFAR10 does)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # HWC uint8, like CIFAR10.data
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Row:
    """One recipe: `epoch()` trains one epoch and returns when the device is idle."""

    name: str
    runs: int  # run-epochs per call of epoch()
    epoch: Callable[[], None]
    flop: float  # useful FLOP of one call (forward and backward, every member)
    precision: str = "fp32"  # its fraction is of this precision's measured matrix rate
    times: list[float] = field(default_factory=list)  # seconds per timed epoch

    def time_one(self, device: torch.device) -> None:
        t0 = time.perf_counter()
        self.epoch()
        sync(device)
        self.times.append(time.perf_counter() - t0)

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)


def reference(ds: Dataset, arch: str, width: float, batch: int, workers: int, augment: bool,
              device: torch.device) -> Callable[[], None]:
    """The reference recipe's training epoch (fp32, one run)."""
    steps = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if augment else []
    tf = transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(ds.mean.tolist(), ds.std.tolist())])
    loader = DataLoader(ImageDataset(ds.train_x.cpu(), ds.train_y.cpu(), tf), batch_size=batch, shuffle=True,
                        num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda")
    torch.manual_seed(0)
    model = build_model(arch, width, ds.classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def epoch() -> None:
        model.train()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    return epoch


def gstc_trainer(text: str, ds: Dataset, k: int, device: torch.device, compile: bool = False) -> Callable[[], None]:
    """A pack of k runs of the spec `text` (k = 1: one run); each call trains the next epoch.

    compile: the model wrapped in torch.compile (measured here only: the runtime does not
    compile, see RESULTS.md).
    """
    plan, errors = check(load_text(text, "bench"))
    assert not errors, errors
    runs = plan.runs[:k]
    assert len(runs) == k, f"the spec has {len(plan.runs)} runs, not {k}"
    trainer = Trainer(runs, [plan.config(r.config) for r in runs], ds, device)
    if compile:
        trainer.model = torch.compile(trainer.model)
    epochs = iter(range(1, 10**9))

    def epoch() -> None:
        trainer.train_epoch(next(epochs))  # ends with .tolist(): the device is synchronized

    epoch.channels_last = trainer.channels_last  # the layout it chose, for the floor row
    return epoch


def conv_floor(arch: str, width: float, classes: int, batch: int, steps: int, device: torch.device,
               channels_last: bool) -> Callable[[], None]:
    """A floor, not a recipe: an epoch of only the model's convolutions, forward and backward, at the
    shapes one training step gives them (random tensors; the first layer's input needs no gradient,
    as the data's does not). What any fp32 recipe of this model pays before BN, ReLU, pooling, the
    dense layer, the loss and the optimizer."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(arch, width, classes).to(device, memory_format=fmt)
    shapes: list[tuple[torch.nn.Conv2d, torch.Size, torch.Size]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append((m, i[0].shape, o.shape)))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.randn(batch, 3, 32, 32, device=device))
    for h in hooks:
        h.remove()
    work = [(conv, torch.randn(xs, device=device).to(memory_format=fmt).requires_grad_(j > 0),
             torch.randn(ys, device=device).to(memory_format=fmt)) for j, (conv, xs, ys) in enumerate(shapes)]

    def epoch() -> None:
        for _ in range(steps):
            for conv, x, grad_out in work:
                conv(x).backward(grad_out)

    return epoch


def step_flop(arch: str, width: float, classes: int, batch: int) -> float:
    """FLOP of one training step (forward and backward) of one run, counted by torch.utils.flop_counter."""
    model = build_model(arch, width, classes)
    x = torch.randn(batch, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), torch.zeros(batch, dtype=torch.long)).backward()
    return float(counter.get_total_flops())


def matrix_rate(device: torch.device, dtype: torch.dtype) -> float:
    """Measured FLOP/s of a large matmul in `dtype`, the best of 3 rounds (the ceiling the fractions are against).

    On a CPU the size doubles from 256 until one product takes 0.2 s or the size reaches 2048: a CPU without
    native bf16 (AVX2 only) multiplies bf16 at about 0.3 GFLOP/s at 2048, so one 2048 product took 59 s there."""
    n = 8192
    if device.type != "cuda":
        n = 256
        while n < 2048:
            a = torch.randn(n, n, dtype=dtype)
            t0 = time.perf_counter()
            a @ a
            if time.perf_counter() - t0 > 0.2:
                break
            n *= 2
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    sync(device)
    reps = 20 if device.type == "cuda" else 4
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0))
    return best


def matrix_rates(device: torch.device, precision: str) -> dict[str, float]:
    """fp32's matrix rate, and bf16's too when the gstc rows run in bf16 (the reference is always fp32)."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    return {p: matrix_rate(device, dtypes[p]) for p in dict.fromkeys(["fp32", precision])}


def spec_text(arch: str, width: float, data: str, batch: int, k: int, precision: str, augment: bool) -> str:
    return (f"gstc: 1\nname: bench\nseeds: {k}\nmodel: {{arch: {arch}, width: {width}}}\n"
            f"data: {{dataset: {data}, augment: {str(augment).lower()}}}\n"
            f"train: {{epochs: 1000, batch_size: {batch}, precision: {precision}, "
            f"optimizer: {{name: adam, lr: 0.001}}}}\n")


def measure(rows: list[Row], repeats: int, device: torch.device) -> None:
    """One warm-up epoch per row, then `repeats` rounds that time every row once, in turn."""
    for row in rows:
        row.epoch()
        sync(device)
    for _ in range(repeats):
        for row in rows:
            row.time_one(device)


def table(rows: list[Row], rates: dict[str, float], images: int) -> str:
    base = rows[0].runs / rows[0].seconds
    lines = ["| recipe | s/epoch (median) | run-epochs/s | vs reference | s/run-epoch at 50,000 images | "
             "fraction of matrix rate |", "|---|---|---|---|---|---|"]
    for row in rows:
        per = row.runs / row.seconds
        frac = f"{row.flop / row.seconds / rates[row.precision]:.1%}" if row.precision in rates else "-"
        lines.append(f"| {row.name} | {row.seconds:.3f} | {per:.3f} | {per / base:.2f}x | "
                     f"{row.seconds / row.runs * 50_000 / images:.3f} | {frac} |")
    return "\n".join(lines)


def header(device: torch.device, what: str) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    return f"device: {name}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}; {what}"


def quickstart(args: argparse.Namespace, device: torch.device) -> None:
    """One gstc run of examples/quickstart.yaml's configuration vs the reference recipe on digits."""
    plan = compile_file(str(ROOT / "examples" / "quickstart.yaml"))
    cfg = plan.configs[0].resolved
    arch, width, batch = cfg.model.arch, cfg.model.width, cfg.train.batch_size
    ds = load(cfg.data, device)
    text = spec_text(arch, width, "digits", batch, 1, "fp32", False)
    steps = -(-len(ds.train_y) // batch)
    flop = step_flop(arch, width, ds.classes, batch) * steps
    rows = [Row(f"reference (DataLoader, {w} workers, fp32)", 1,
                reference(ds, arch, width, batch, w, False, device), flop) for w in args.workers]
    trainer = gstc_trainer(text, ds, 1, device)
    rows.append(gstc := Row("gstc, one run", 1, trainer, flop))
    if args.compile:
        rows.append(Row("gstc, one run, torch.compile", 1, gstc_trainer(text, ds, 1, device, compile=True), flop))
    if args.precision == "bf16":
        rows.append(Row("gstc, one run, bf16 autocast (train.precision: bf16)", 1,
                        gstc_trainer(spec_text(arch, width, "digits", batch, 1, "bf16", False), ds, 1, device),
                        flop, "bf16"))
    rows.append(floor := Row("floor: the convolutions alone (forward and backward, as gstc lays them out)", 1,
                             conv_floor(arch, width, ds.classes, batch, steps, device, trainer.channels_last), flop))
    rates = matrix_rates(device, args.precision)
    measure(rows, args.repeats, device)
    print(header(device, f"quickstart configuration: digits ({len(ds.train_y)} training images), {arch} width {width}, "
                         f"batch {batch}, median of {args.repeats} epochs after 1 warm-up"))
    print(f"measured matrix rate: {', '.join(f'{p} {r / 1e9:.2f} GFLOP/s' for p, r in rates.items())}; "
          f"{flop / 1e9:.1f} GFLOP per epoch (forward and backward)")
    if rates.get("bf16", float("inf")) < rates["fp32"]:
        print("(bf16 matrix products are slower than fp32 here: the device has no native bf16 path, and the bf16 "
              "row's fraction is not of a ceiling)")
    print(table(rows, rates, len(ds.train_y)))
    target = rows[0].seconds / 2
    print(f"\n2x the reference ({rows[0].name}) is {target:.3f} s/epoch, {flop / target / rates['fp32']:.0%} of the "
          f"fp32 matrix rate; the convolutions alone take {floor.seconds:.3f} s, leaving {target - floor.seconds:.3f} s "
          f"for all else (gstc spends {gstc.seconds - floor.seconds:.3f} s on it)")


def packs(args: argparse.Namespace, device: torch.device) -> None:
    """(a), (b) and (c) for each architecture on synthetic CIFAR-shaped data."""
    train_x, train_y, test_x, test_y = (torch.from_numpy(a) for a in _synthetic(args.train_size, 1000))
    pixels = train_x.float().div(255).transpose(0, 1).reshape(3, -1)
    ds = Dataset(train_x, train_y, test_x, test_y, pixels.mean(1), pixels.std(1), CLASSES["synthetic"]).to(device)
    rates = matrix_rates(device, args.precision)
    print(header(device, f"synthetic CIFAR-shaped data, {args.train_size} training images, width {args.width}, "
                         f"batch {args.batch_size}, {args.precision}, augment {args.augment}, "
                         f"median of {args.repeats} epochs after 1 warm-up"))
    print(f"measured matrix rate: {', '.join(f'{p} {r / 1e12:.2f} TFLOP/s' for p, r in rates.items())} "
          f"(the reference's fraction is of fp32's, gstc's of {args.precision}'s)")
    n = len(train_y)
    for arch in args.archs.split(","):
        flop = step_flop(arch, args.width, ds.classes, args.batch_size) * -(-n // args.batch_size)
        print(f"\n### {arch} ({flop * 50_000 / n / 1e12:.1f} TFLOP per run-epoch at 50,000 images)\n")
        rows = [Row(f"reference (DataLoader, {args.workers[0]} workers, fp32)", 1,
                    reference(ds, arch, args.width, args.batch_size, args.workers[0], args.augment, device), flop)]
        for k in args.packs:
            text = spec_text(arch, args.width, "synthetic", args.batch_size, k, args.precision, args.augment)
            name = "gstc, one run" if k == 1 else f"gstc, pack of {k}"
            try:
                row = Row(name, k, gstc_trainer(text, ds, k, device), k * flop, args.precision)
                row.epoch()  # fails here if the pack does not fit
            except torch.OutOfMemoryError:
                print(f"(pack of {k}: out of memory; larger packs skipped)")
                break
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
        measure(rows, args.repeats, device)
        print(table(rows, rates, n))
        del rows
        if device.type == "cuda":
            torch.cuda.empty_cache()


def masked_fills(pruners: list[Pruner], work: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> Callable[[], None]:
    """One batch of `masked_fill_` masking over (value, gradient, bool mask) triples: the
    gradients before the optimizer step, the values after it, then each member's after_step."""

    def batch() -> None:
        for _, grad, mask in work:
            grad.masked_fill_(mask, 0)
        with torch.no_grad():
            for value, _, mask in work:
                value.masked_fill_(mask, 0)
        for pruner in pruners:
            pruner.after_step()

    batch.fills = 2 * len(work)
    return batch


def member_by_member(pruners: list[Pruner]) -> Callable[[], None]:
    """The baseline: the masking before StepHooks, each member's own device masks over its views.

    6 fills per held layer per member per batch (conv weight rows, BN scale and shift, and
    their gradients).
    """
    work = []
    for pruner in pruners:
        for layer in pruner.layers.values():
            p = layer.p
            for param, kind, _ in p.packed():  # built-in layers: every row at its filter's index
                hold = layer.holds(kind)
                if hold.any():
                    mask = hold.to(layer.device).view(-1, *[1] * (param.dim() - 1))
                    work.append((p.part(param), p.part(param.grad), mask))
    return masked_fills(pruners, work)


def pack_masks(pruners: list[Pruner]) -> Callable[[], None]:
    """The middle step: one bool mask over each packed tensor, applied with `masked_fill_`.

    As many launches as gstc's, but `masked_fill_` reads and writes the whole tensor where
    `index_fill_` writes only the held rows: the difference between this row and gstc's.
    """
    work = []
    for held in StepHooks(pruners).held:
        for param, rows in held:
            mask = torch.zeros(len(param), dtype=torch.bool, device=param.device)
            mask[rows] = True
            work.append((param, param.grad, mask.view(-1, *[1] * (param.dim() - 1))))
    return masked_fills(pruners, work)


def pack_hooks(pruners: list[Pruner]) -> Callable[[], None]:
    """What the runtime does: StepHooks, one `index_fill_` of the held rows per packed tensor of each held layer."""
    hooks = StepHooks(pruners)

    def batch() -> None:
        hooks.after_backward()
        hooks.after_step()

    batch.fills = 2 * sum(len(held) for held in hooks.held)
    # the share of the held layers' conv weight rows that are held: what index_fill_ writes
    weights = [(len(rows), len(param)) for held in hooks.held for param, rows in held if param.dim() == 4]
    batch.held = sum(n for n, _ in weights) / max(1, sum(total for _, total in weights))
    return batch


def hooks(args: argparse.Namespace, device: torch.device) -> None:
    """Host and device time per training batch of the pruning hooks, in packs of Figure 2's runs.

    The members are the first K runs of specs/paper/fig2-<arch>.yaml that prune (in plan
    order: variant by variant, seed by seed), each with all its events applied, epoch by
    epoch: the state of the rest of training (from the last event, epoch 247 or 275 in
    Figure 2's VGG11, to epoch 325),
    with the most rows held (30% of conv5-conv7, 90% of conv8 in VGG11).
    """
    print(header(device, f"pruning hooks of one training batch (after the backward and after the step), "
                         f"width {args.width}, median of {args.repeats} rounds of {args.batches} batches"))
    for arch in ("vgg11_bn", "resnet18"):
        plan = compile_file(str(ROOT / "specs" / "paper" / f"fig2-{arch.removesuffix('_bn')}.yaml"),
                            [("model.width", args.width)])  # the events' filter counts follow the width
        print(f"\n### {arch} (fig2-{arch.removesuffix('_bn')}.yaml)\n")
        print("| pack | held rows | fills per batch, member by member | fills per batch, gstc | member by member (ms/batch) "
              "| pack masks, masked_fill_ (ms/batch) | gstc, index_fill_ (ms/batch) | speed-up "
              "| gstc s/run-epoch at 391 batches |")
        print("|---|---|---|---|---|---|---|---|---|")
        for k in args.packs:
            runs = [r for r in plan.runs if r.events][:k]
            model = build_model(arch, args.width, 10, pack=k).to(device)
            pruners = [Pruner(model, plan.config(r.config), r.seed, member=i) for i, r in enumerate(runs)]
            for pruner in pruners:
                pruner.in_step = True  # activation_l1 scores: one recorded forward pass (a training step's, batch 0)
            model(torch.randn(2, 3 * k, 32, 32, device=device)).sum().backward()  # and gradients to mask
            g = torch.Generator().manual_seed(0)
            for pruner, run in zip(pruners, runs):
                pruner.in_step = False
                for epoch in sorted({e.epoch for e in run.events}):
                    pruner.apply(epoch, [e for e in run.events if e.epoch == epoch], 391, g)
            rows = {"member by member": member_by_member(pruners), "pack masks": pack_masks(pruners),
                    "gstc": pack_hooks(pruners)}
            times: dict[str, list[float]] = {name: [] for name in rows}
            for rnd in range(args.repeats + 1):  # round 0 warms up
                for name, batch in rows.items():
                    sync(device)
                    t0 = time.perf_counter()
                    for _ in range(args.batches):
                        batch()
                    sync(device)
                    if rnd:
                        times[name].append((time.perf_counter() - t0) / args.batches)
            old, middle, new = (statistics.median(times[name]) for name in rows)
            print(f"| {k} | {rows['gstc'].held:.1%} | {rows['member by member'].fills} | {rows['gstc'].fills} | {old * 1e3:.3f} | "
                  f"{middle * 1e3:.3f} | {new * 1e3:.3f} | {old / new:.2f}x | {new * 391 / k:.4f} |")
            del model, pruners, rows
            if device.type == "cuda":
                torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["quickstart", "packs", "hooks"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per row, alternating between rows")
    ap.add_argument("--workers", type=lambda s: [int(w) for w in s.split(",")], default=[2],
                    help="DataLoader workers of the reference recipe (comma list: one reference row each in quickstart)")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--packs", type=lambda s: [int(k) for k in s.split(",")], default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--train-size", type=int, default=50_000, help="synthetic training images (packs)")
    ap.add_argument("--width", type=float, default=1.0, help="model width multiplier (packs)")
    ap.add_argument("--batch-size", type=int, default=128, help="(packs)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="gstc rows (the reference is fp32)")
    ap.add_argument("--augment", action="store_true", help="random crop and flip in every recipe (packs)")
    ap.add_argument("--compile", action="store_true", help="add a torch.compile row (quickstart)")
    ap.add_argument("--batches", type=int, default=50, help="training batches per timed round (hooks)")
    args = ap.parse_args()
    device = torch.device(args.device)
    {"quickstart": quickstart, "packs": packs, "hooks": hooks}[args.what](args, device)


if __name__ == "__main__":
    main()
