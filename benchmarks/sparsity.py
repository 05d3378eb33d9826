"""The cost of holding pruned weights at zero: a masked training epoch vs an unmasked one, in one process.

Both rows train the same model (VGG11 width 0.25 on digits by default, Adam, batch 64)
through the runtime's Trainer, the path `gstc run` takes. The masked row's plan prunes
`--amount` of the weights of conv2..conv8 (weight granularity, global magnitude) at
epoch 0, so every one of its training steps multiplies those convs' gradients and
weights by their 0/1 masks (gstc.runtime.units.WeightHooks); the unmasked row's plan
prunes nothing. Epochs alternate between the rows (unmasked, masked, unmasked, ...)
after one warm-up epoch each, so drift on a shared CPU falls on both; each row reports
the median epoch, and the ratio is masked / unmasked.

    python benchmarks/sparsity.py                        # CPU, 2 threads
    python benchmarks/sparsity.py --device cuda --repeats 21
"""

from __future__ import annotations

import argparse
import statistics
import sys
import textwrap
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gstc.compile import check  # noqa: E402
from gstc.load import load_text  # noqa: E402
from gstc.runtime.data import load  # noqa: E402
from gstc.runtime.train import Trainer  # noqa: E402


def spec(width: float, amount: float | None, dataset: str) -> str:
    prune = "" if amount is None else textwrap.dedent(f"""\
        prune:
          granularity: weight
          scope: global
          scoring: l1
          amount: {amount}
          schedule: {{epochs: [0]}}
          layers:
            - {{select: "conv[2-8]"}}
        """)
    return textwrap.dedent(f"""\
        gstc: 1
        name: sparsity-bench
        model: {{arch: vgg11_bn, width: {width}}}
        data: {{dataset: {dataset}}}
        train: {{epochs: 1, batch_size: 64, optimizer: {{name: adam, lr: 0.001}}}}
        """) + prune


def trainer(text: str, device: torch.device) -> Trainer:
    plan, errors = check(load_text(text, "bench.yaml"))
    assert not errors, [e.format() for e in errors]
    t = Trainer(plan.runs[:1], plan.configs[:1], load(plan.configs[0].resolved.data, device), device)
    if plan.runs[0].events:
        t.prune_epoch(0)  # the masks are in place before the timed epochs
    return t


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--amount", type=float, default=0.9, help="fraction of conv2..conv8's weights pruned")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--repeats", type=int, default=9, help="timed epochs per row (after one warm-up each)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = {"unmasked": trainer(spec(args.width, None, args.dataset), device),
            "masked": trainer(spec(args.width, args.amount, args.dataset), device)}
    seconds: dict[str, list[float]] = {name: [] for name in rows}
    for name, t in rows.items():  # warm-up
        t.train_epoch(1)
    for _ in range(args.repeats):
        for name, t in rows.items():
            sync(device)
            t0 = time.perf_counter()
            t.train_epoch(1)
            sync(device)
            seconds[name].append(time.perf_counter() - t0)
    masked = rows["masked"].members[0].pruner
    zero = masked.zeroed()
    held = sum(int(torch.count_nonzero(st.p.weight.detach() == 0)) for st in masked.weights.values())
    steps = rows["masked"].batches
    print(f"device: {device}, {torch.get_num_threads()} threads; torch {torch.__version__}; "
          f"vgg11_bn width {args.width} on {args.dataset}, {steps} steps per epoch, median of {args.repeats} epochs")
    print(f"masked: {zero:,} weights pruned ({100 * args.amount:.0f}% of conv2..conv8), {held:,} exactly zero after "
          f"the timed epochs")
    base = statistics.median(seconds["unmasked"])
    for name, values in seconds.items():
        med = statistics.median(values)
        print(f"| {name} | {1000 * med / steps:.2f} ms per step | {med / base:.3f}x |")


if __name__ == "__main__":
    main()
