"""How `gstc plan --json` scales with a sweep's size: wall time, peak memory and the JSON's size.

The spec is the paper's Figure 3 grid (specs/paper/fig3-vgg11.yaml: 3 targets x 7 cadences plus a baseline,
22 configurations) swept over `--lrs` learning rates, with `--seeds` seeds: 22 x 50 x 20 = 22,000 runs by
default, the size of sweep Ray and Slurm users run. Each measurement is a fresh `gstc plan --json` process
(its peak resident memory from the kernel, getrusage of the child), so imports count as a user sees them.

    python benchmarks/plan_scale.py                   # 22,000 runs
    python benchmarks/plan_scale.py --lrs 50 --seeds 90   # 99,000 runs (a plan holds at most 100,000)
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def spec_text(lrs: int, seeds: int) -> str:
    text = (ROOT / "specs" / "paper" / "fig3-vgg11.yaml").read_text()
    text = text.replace("seeds: 5", f"seeds: {seeds}")
    grid = ", ".join(f"{1e-4 * (i + 1):.4g}" for i in range(lrs))
    return text.rstrip() + f"\n  train.optimizer.lr: [{grid}]\n"


def measure(lrs: int, seeds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "fig3-scale.yaml"
        spec.write_text(spec_text(lrs, seeds))
        out = Path(tmp) / "plan.json"
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        with out.open("wb") as fh:
            done = subprocess.run([sys.executable, "-m", "gstc", "plan", "--json", str(spec)], stdout=fh,
                                  stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"})
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(done.stderr.decode())
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux: the largest child so far
        import json

        runs = len(json.loads(out.read_text())["runs"])
        return {"runs": runs, "seconds": seconds, "peak_mib": peak / 1024 if peak > before else None,
                "json_mb": out.stat().st_size / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", type=int, default=50, help="learning rates swept (default 50)")
    parser.add_argument("--seeds", type=int, default=20, help="seeds (default 20)")
    args = parser.parse_args()
    r = measure(args.lrs, args.seeds)
    peak = "n/a (not above an earlier child's)" if r["peak_mib"] is None else f"{r['peak_mib']:.0f} MiB"
    print(f"{r['runs']:,} runs: {r['seconds']:.2f} s wall, peak resident memory {peak}, plan JSON {r['json_mb']:.1f} MB")


if __name__ == "__main__":
    main()
