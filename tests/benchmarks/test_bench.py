"""benchmarks/bench.py keeps working as the runtime changes (it timed nothing here: no
timing is asserted, only that every row is measured and printed with its ratio).

Each runs the benchmark in a process of its own for 8-25 s: marked slow."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("torch")
pytest.importorskip("torchvision")

from tests.runtime.conftest import CUDA  # noqa: E402

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"


@pytest.mark.parametrize("device, precision", [("cpu", "fp32"), pytest.param("cuda", "bf16", marks=CUDA.marks)])
def test_packs_benchmark_prints_every_row_with_a_ratio(device, precision):
    proc = subprocess.run([sys.executable, str(BENCH), "packs", "--device", device, "--archs", "resnet20",
                           "--train-size", "64", "--width", "0.125", "--batch-size", "32", "--packs", "1,2",
                           "--repeats", "1", "--workers", "0", "--precision", precision],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = re.findall(r"^\| (reference[^|]*|gstc[^|]*) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \|", proc.stdout, re.M)
    assert [r[0].strip() for r in rows] == ["reference (DataLoader, 0 workers, fp32)", "gstc, one run", "gstc, pack of 2"]
    assert rows[0][3] == "1.00"  # the reference is the baseline of the ratios
    # run-epochs/s of a pack of 2 is 2 / (seconds per epoch)
    assert float(rows[2][2]) == pytest.approx(2 / float(rows[2][1]), rel=0.02)
    assert "TFLOP per run-epoch" in proc.stdout and "matrix rate" in proc.stdout


def test_quickstart_benchmark_prints_the_reference_gstc_and_the_convolution_floor():
    proc = subprocess.run([sys.executable, str(BENCH), "quickstart", "--device", "cpu", "--repeats", "1",
                           "--workers", "0", "--precision", "bf16"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = re.findall(r"^\| (reference[^|]*|gstc[^|]*|floor[^|]*) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \| [\d.]+ \| "
                      r"([\d.]+)% \|", proc.stdout, re.M)
    assert [r[0].split(":")[0].strip() for r in rows] == [
        "reference (DataLoader, 0 workers, fp32)", "gstc, one run", "gstc, one run, bf16 autocast (train.precision", "floor"]
    assert rows[0][3] == "1.00"
    # each row's fraction is of its own precision's matrix rate: the bf16 row's of bf16's (GFLOP/s)
    fp32, bf16, gflop = map(float, re.search(r"fp32 ([\d.]+) GFLOP/s, bf16 ([\d.]+) GFLOP/s; ([\d.]+) GFLOP per epoch",
                                             proc.stdout).groups())
    assert float(rows[1][4]) == pytest.approx(100 * gflop * float(rows[1][2]) / fp32, rel=0.02)
    assert float(rows[2][4]) == pytest.approx(100 * gflop * float(rows[2][2]) / bf16, rel=0.02)
    rows.pop(2)  # the closing line reads the fp32 rows
    # the closing line: the 2x target is half the reference's seconds, and what is left beside the floor
    target, floor, left = map(float, re.search(r"is ([\d.]+) s/epoch.*take ([\d.]+) s, leaving (-?[\d.]+) s",
                                               proc.stdout).groups())
    assert target == pytest.approx(float(rows[0][1]) / 2, abs=1e-3)
    assert floor == float(rows[2][1]) and left == pytest.approx(target - floor, abs=2e-3)


def test_hooks_benchmark_counts_fills_member_by_member_and_per_packed_tensor():
    proc = subprocess.run([sys.executable, str(BENCH), "hooks", "--device", "cpu", "--width", "0.125",
                           "--packs", "1,3", "--repeats", "1", "--batches", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for arch in ("vgg11_bn", "resnet18"):
        section = proc.stdout.split(f"### {arch}")[1].split("###")[0]
        rows = re.findall(r"^\| (\d+) \| [\d.]+% \| (\d+) \| (\d+) \| ([\d.]+) \| [\d.]+ \| ([\d.]+) \| ([\d.]+)x \|", section, re.M)
        assert [int(r[0]) for r in rows] == [1, 3]
        # Figure 2's members hold filters in 4 layers: 6 fills per layer per batch, times
        # the members when each masks its own rows, once for the whole pack otherwise.
        assert [(int(r[1]), int(r[2])) for r in rows] == [(24, 24), (72, 24)]
        for r in rows:
            assert float(r[5]) == pytest.approx(float(r[3]) / float(r[4]), rel=0.05, abs=0.01)


def test_sparsity_benchmark_times_a_masked_and_an_unmasked_epoch():
    proc = subprocess.run([sys.executable, str(BENCH.parent / "sparsity.py"), "--width", "0.125", "--repeats", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = re.findall(r"^\| (unmasked|masked) \| ([\d.]+) ms per step \| ([\d.]+)x \|", proc.stdout, re.M)
    assert [r[0] for r in rows] == ["unmasked", "masked"] and rows[0][2] == "1.000"
    pruned, zero = re.search(r"masked: ([\d,]+) weights pruned .*, ([\d,]+) exactly zero", proc.stdout).groups()
    assert int(zero.replace(",", "")) >= int(pruned.replace(",", "")) > 0  # the masks held through the epochs
