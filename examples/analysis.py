"""Notebook-style analysis of a spec's results with pandas: stability against accuracy, from `gstc.results`.

Question: do the quickstart's runs that keep more accuracy across their pruning events (higher stability) end
with lower test accuracy, as the paper's generalization-stability tradeoff says?

    gstc run examples/quickstart.yaml
    python examples/analysis.py examples/quickstart.yaml results    # writes results/stability_vs_accuracy.png

Needs the results extra: pip install 'gstc[results]'.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import gstc  # noqa: E402


def main(spec: str, out: str) -> Path:
    r = gstc.results(spec, out=out)
    done = r.runs[r.runs["status"] == "done"]
    # One row per configuration: mean and spread over seeds.
    print(done.groupby("config", observed=True)[["best_test_acc", "mean_stability", "gen_gap"]].agg(["mean", "std"]))
    # Per pruning event: how much accuracy each event cost, by configuration.
    events = r.events[r.events["kind"] == "prune"].drop_duplicates(["run", "epoch"])
    print(events.groupby("config", observed=True)["stability"].describe())
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for config, group in done.groupby("config", observed=True):
        ax.scatter(group["mean_stability"], group["best_test_acc"], label=config)
    ax.set_xlabel("mean stability over pruning epochs (%)")
    ax.set_ylabel("best test accuracy (%)")
    ax.legend()
    path = Path(out) / "stability_vs_accuracy.png"
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main(*(sys.argv[1:3] if len(sys.argv) > 2 else ("examples/quickstart.yaml", "results")))
