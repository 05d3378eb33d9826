"""Run-epochs per second: the reference recipe vs one gstc run, measured in one process.

Reference recipe (what the paper's authors ran): a torchvision-style dataset of PIL
images with ToTensor and Normalize transforms, a DataLoader with worker processes,
fp32, one run at a time. gstc: the runtime's Trainer (device-resident uint8 data,
batches sliced from a seeded permutation, normalization on the device).

Both train the same model (runtime.models) with the same optimizer and batch size on
the same images; each is timed over `--epochs` epochs after one warm-up epoch, and the
ratio is printed. Packs (issue 5) will add rows here.

    python benchmarks/bench.py --dataset digits --arch vgg11_bn --width 0.25 --batch-size 64

Status (issue 5, not done): on the 2-core CPU, timings of the same recipe varied 2-4x
within one process (gstc: 3.4 s/epoch measured first, 1.9 s after the reference ran;
reference: 25 s/epoch with 2 workers, 0.9-3.4 s with none), so no ratio from this
script is recorded yet. Before trusting one: more warm-up, alternating repeats, and a
look at thread oversubscription (DataLoader workers plus 2 intra-op threads on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gstc.compile import check  # noqa: E402
from gstc.load import load_text  # noqa: E402
from gstc.manifest import ResultsDir  # noqa: E402
from runtime.data import load  # noqa: E402
from runtime.models import build_model  # noqa: E402
from runtime.train import Trainer  # noqa: E402


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


def reference_epochs(ds, arch: str, width: float, batch: int, epochs: int, workers: int, device: torch.device) -> float:
    """Seconds per epoch of the reference recipe (mean over `epochs` after one warm-up)."""
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(ds.mean.tolist(), ds.std.tolist())])
    loader = DataLoader(ImageDataset(ds.train_x.cpu(), ds.train_y.cpu(), tf), batch_size=batch, shuffle=True,
                        num_workers=workers, persistent_workers=workers > 0)
    torch.manual_seed(0)
    model = build_model(arch, width, ds.classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / epochs


def gstc_epochs(ds, data: str, arch: str, width: float, batch: int, epochs: int, device: torch.device) -> float:
    """Seconds per epoch of one gstc run (the runtime's own training epoch)."""
    text = (f"gstc: 1\nname: bench\nmodel: {{arch: {arch}, width: {width}}}\ndata: {{dataset: {data}}}\n"
            f"train: {{epochs: {epochs + 1}, batch_size: {batch}, optimizer: {{name: adam, lr: 0.001}}}}\n")
    plan, errors = check(load_text(text, "bench"))
    assert not errors, errors
    trainer = Trainer(plan.runs[0], plan.configs[0], ds, ResultsDir(tempfile.mkdtemp()), device)
    times = []
    for epoch in range(1, epochs + 2):
        t0 = time.perf_counter()
        trainer.train_epoch(epoch)  # ends with .item(): the device is synchronized
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="digits", choices=["digits", "synthetic"])
    ap.add_argument("--arch", default="vgg11_bn")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs, after one warm-up epoch")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference recipe")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    ds = load({"dataset": args.dataset, "root": "data", "download": False}, device)
    ref = reference_epochs(ds, args.arch, args.width, args.batch_size, args.epochs, args.workers, device)
    ours = gstc_epochs(ds, args.dataset, args.arch, args.width, args.batch_size, args.epochs, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; {args.dataset} ({len(ds.train_y)} training images), "
          f"{args.arch} width {args.width}, batch {args.batch_size}, {args.epochs} timed epochs after 1 warm-up")
    print("| recipe | s/epoch | run-epochs/s | ratio |\n|---|---|---|---|")
    print(f"| reference (DataLoader, {args.workers} workers, fp32) | {ref:.3f} | {1 / ref:.3f} | 1.00 |")
    print(f"| gstc, one run | {ours:.3f} | {1 / ours:.3f} | {ref / ours:.2f} |")


if __name__ == "__main__":
    main()
