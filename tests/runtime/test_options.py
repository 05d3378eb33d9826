"""Runtime paths beyond the basic loop: scratch pruning, SGD, bf16, CLI selections, E[BN]."""

from __future__ import annotations

import math

import pytest
from scipy import integrate, stats
from typer.testing import CliRunner

from gstc.cli import app
from gstc.compile import compile_file
from gstc.jsonio import read_json, read_jsonl
from gstc.paths import ResultsDir
from gstc.scorings.ebn import expected_relu as _expected_relu_bn
from tests.runtime.conftest import compile_text, run_plan, spec_text

torch = pytest.importorskip("torch")
runner = CliRunner()


def test_scratch_pruning_happens_before_training(tmp_path):
    prune = "prune:\n  layers:\n    - {select: conv8, amount: 0.75, schedule: {epochs: [0]}}\n"
    plan = compile_text(spec_text("vgg11_bn", 0.125, prune, epochs=2))
    results = ResultsDir(tmp_path)
    _, (outcome,) = run_plan(plan, results)
    (event,) = read_jsonl(results.events_jsonl(plan.runs[0].id))
    assert event["epoch"] == 0 and event["layers"][0]["kept"] == 16  # 64 filters at width 0.125
    epochs = read_jsonl(results.epochs_jsonl(plan.runs[0].id))
    assert [e["kept"]["conv8"] for e in epochs] == [16, 16]
    # A run that never prunes after initialization: best over all epochs, stability 100.
    assert outcome["summary"]["mean_stability"] == 100
    assert outcome["summary"]["best_test_acc"] == max(e["test_acc"] for e in epochs)


def test_sgd_with_nesterov_trains(tmp_path):
    train = ("train: {epochs: 2, batch_size: 64, optimizer: {name: sgd, lr: 0.05, momentum: 0.9, nesterov: true, "
             "weight_decay: 1.0e-4}}")
    text = spec_text("vgg11_bn", 0.125, "prune:\n  layers:\n    - {select: conv8, amount: 0.5, schedule: {start: 1}}\n", epochs=2)
    text = text.replace("train: {epochs: 2, batch_size: 64, optimizer: {name: adam, lr: 0.001}}", train)
    text = text.replace("data: {dataset: digits}", "data: {dataset: digits, augment: true}")
    plan = compile_text(text)
    _, (outcome,) = run_plan(plan, ResultsDir(tmp_path))
    assert outcome["status"] == "done"
    # It learns: the training loss falls, below chance-level cross-entropy over 10 classes
    # (ln 10 = 2.30 nats; measured 1.54 then 0.60 nats). Test accuracy after 2 epochs is no
    # check: it swings widely with the order of float sums (memory format), through BN's
    # running statistics.
    losses = [e["train_loss"] for e in read_jsonl(ResultsDir(tmp_path).epochs_jsonl(outcome["id"]))]
    assert losses[1] < min(losses[0], math.log(10)), losses


def test_bf16_autocasts_the_forward_and_changes_the_numbers(tmp_path):
    # Two configurations that differ in precision only (so in two packs): if bf16 were ignored, their
    # numbers would be bit-identical (same seed, same data order, one process).
    text = spec_text("vgg11_bn", 0.125, "", epochs=1, extra="variants:\n  fp32: {}\n  bf16: {train.precision: bf16}\n")
    plan = compile_text(text)
    results = ResultsDir(tmp_path)
    run_plan(plan, results)
    (fp32,), (bf16,) = (read_jsonl(results.epochs_jsonl(r.id)) for r in plan.runs)
    assert fp32["train_loss"] != bf16["train_loss"] and fp32["test_loss"] != bf16["test_loss"]
    assert bf16["train_loss"] == pytest.approx(fp32["train_loss"], rel=0.2)  # the same training, rounded
    # Inside the trainer's step, convolutions compute in bfloat16 while parameters stay float32.
    from gstc.runtime.data import Dataset, load
    from gstc.runtime.train import Trainer

    run = plan.runs[1]
    d = load(plan.config(run.config).resolved.data)
    data = Dataset(d.train_x[:64], d.train_y[:64], d.test_x[:8], d.test_y[:8], d.mean, d.std, d.classes)
    trainer = Trainer([run], [plan.config(run.config)], data, torch.device("cpu"))
    seen = []
    trainer.model.conv1.register_forward_hook(lambda m, i, o: seen.append((o.dtype, m.weight.dtype)))
    trainer.train_epoch(1)
    assert seen == [(torch.bfloat16, torch.float32)]


def test_cli_selects_variants_and_seeds_and_applies_sets(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(spec_text("vgg11_bn", 0.125, "prune:\n  layers:\n    - {select: conv8, amount: 0.5, schedule: {start: 1}}\n",
                              epochs=3, extra="variants:\n  base: {prune: null}\n  pruned: {}\n").replace("seeds: 1", "seeds: 3"))
    out = tmp_path / "r"
    result = runner.invoke(app, ["run", str(spec), "--out", str(out), "--device", "cpu", "--variant", "pruned",
                                 "--seeds", "1,2", "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.stderr
    plan = compile_file(str(spec), [("train.epochs", 1)])
    done = {(r.config, r.seed) for r in plan.runs if (out / "runs" / r.id / "run.json").exists()}
    assert done == {("pruned", 1), ("pruned", 2)}
    assert all(read_json(out / "runs" / r.id / "run.json")["epochs"] == 1 for r in plan.runs if (r.config, r.seed) in done)
    status = runner.invoke(app, ["status", str(spec), "--out", str(out), "--set", "train.epochs=1"], env={"COLUMNS": "200"})
    assert status.exit_code == 0
    assert "2 done, 4 pending of 6 runs" in status.stdout
    bad = runner.invoke(app, ["run", str(spec), "--out", str(out), "--variant", "prunned"])
    assert bad.exit_code == 1 and 'did you mean "pruned"' in bad.stderr
    nodev = runner.invoke(app, ["run", str(spec), "--out", str(out), "--device", "cuda:7"])
    if not torch.cuda.is_available():
        assert nodev.exit_code == 1 and "no CUDA device" in nodev.stderr


@pytest.mark.parametrize("gamma, beta", [(1.0, 0.0), (0.5, 1.0), (2.0, -1.5), (-0.7, 0.3)])
def test_expected_relu_of_bn_matches_numerical_integration(gamma, beta):
    # E[max(0, y)] for y ~ N(beta, gamma^2), integrated numerically.
    expected, _ = integrate.quad(lambda y: y * stats.norm.pdf(y, beta, abs(gamma)), 0, math.inf)
    got = float(_expected_relu_bn(torch.tensor([abs(gamma)]), torch.tensor([beta])))
    assert got == pytest.approx(expected, rel=1e-5)


# ARPACK's Lanczos takes ~110 Hessian-vector products of 0.1 s each for this model's top eigenvalue: 11 s per
# measurement. The default run measures the rest; the eigenvalues and epsilon go with -m slow
# (tests/runtime/test_flatness.py checks them on a small model against the dense Hessian).
FLATNESS = [
    pytest.param("hessian_top: 0, trace_probes: 8, grad_covariance: true", id="traces"),
    pytest.param("hessian_top: 2, trace_probes: 8, grad_covariance: true, epsilon: {directions: 1, loss_increase: 0.1}",
                 id="all", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("options", FLATNESS)
def test_flatness_is_measured_at_the_requested_epochs(tmp_path, options):
    measure = f"measure:\n  flatness: {{at: [1, 2], samples: 32, {options}}}\n"
    plan = compile_text(spec_text("vgg11_bn", 0.125, "", epochs=2, extra=measure))
    results = ResultsDir(tmp_path)
    _, (outcome,) = run_plan(plan, results)
    assert outcome["status"] == "done"
    doc = read_json(results.flatness_json(plan.runs[0].id))
    assert sorted(doc["epochs"]) == ["1", "2"] and len(doc["subset"]) == 32
    two = doc["epochs"]["2"]
    assert two["tic"] == pytest.approx(two["grad_cov_trace"] / two["hessian_trace"]) and two["samples"] == 32
    if "epsilon" in options:
        assert len(two["hessian_top"]) == 2 and two["hessian_top"][0] >= two["hessian_top"][1]
        assert len(two["epsilon"]) == 1
    else:
        assert "hessian_top" not in two and "epsilon" not in two
