"""Architectures from outside gstc: their prunable layers are found, masked where the table says, and
trained through the same driver as the built-in ones; their layer files keep the compiler torch-free."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from typer.testing import CliRunner

from gstc.cli import app
from gstc.compile import compile_file
from gstc.manifest import ResultsDir, read_json, read_jsonl
from tests.conftest import REPO
from tests.runtime.conftest import run_plan

torch = pytest.importorskip("torch")

from gstc.runtime.builders import build_external  # noqa: E402
from gstc.runtime.data import load  # noqa: E402
from gstc.runtime.discover import _by_fx, _by_hooks  # noqa: E402
from gstc.runtime.layer_files import layer_table  # noqa: E402
from gstc.runtime.train import Trainer  # noqa: E402

OWN = Path(__file__).with_name("own_modules.py")
EXAMPLE = REPO / "examples" / "own_model.py"  # the example's own module
SLOW = pytest.mark.slow  # torchvision's vgg11_bn has 129M parameters: seconds per CPU step


def gstc(*args: str) -> subprocess.CompletedProcess:
    """`gstc ARGS` in a fresh process (a model file edited by the test is imported afresh there)."""
    return subprocess.run([sys.executable, "-m", "gstc", *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))


def cli(*args: str):
    """`gstc ARGS` in this process (no second torch import: seconds less per call); .returncode as gstc's."""
    out = CliRunner().invoke(app, list(args))
    out.returncode = out.exit_code
    return out


def spec_for(tmp_path: Path, arch: str, select: str, args: str = "{}", epochs: int = 3, extra: str = "") -> Path:
    """A spec next to a copy of own_modules.py, training `arch` on its `tiny` data, pruning `select` at epoch 1."""
    shutil.copy(OWN, tmp_path / "own_modules.py")
    shutil.copy(EXAMPLE, tmp_path / "own_model.py")
    spec = tmp_path / "own.yaml"
    spec.write_text(textwrap.dedent(f"""\
        gstc: 1
        name: own
        seeds: 1
        model: {{arch: "{arch}", args: {args}, layers: own.layers.json}}
        data: {{dataset: "own_modules:tiny"}}
        train: {{epochs: {epochs}, batch_size: 16, optimizer: {{name: sgd, lr: 0.01, momentum: 0.9}}}}
        prune:
          scoring: l1
          schedule: {{start: 1}}
          layers: [{{select: "{select}", amount: 0.5}}]
        """) + textwrap.dedent(extra))
    return spec


def write_layers(spec: Path) -> None:
    out = cli("layers", str(spec), "--write")
    assert out.returncode == 0, out.stderr


def numbers(results: ResultsDir, run_id: str) -> list:
    keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "kept", "params")
    return [[r[k] for k in keys] for r in read_jsonl(results.epochs_jsonl(run_id))]


# --- which layers, and where their masks sit ---------------------------------------------


@pytest.mark.parametrize("arch, name, filters, after, groups", [
    ("torchvision.resnet18", "layer4.1.conv2", 512, "bn", 1),
    ("torchvision.resnet18", "layer2.0.downsample.0", 128, "bn", 1),
    ("torchvision.mobilenet_v3_small", "features.1.block.0.0", 16, "bn", 16),  # depthwise
    ("torchvision.mobilenet_v3_small", "features.1.block.1.fc2", 16, "conv", 1),  # squeeze-excitation: no BN
    pytest.param("torchvision.vgg11_bn", "features.25", 512, "bn", 1, marks=SLOW),
])
def test_torchvision_models_list_every_conv_with_its_mask_point(arch, name, filters, after, groups):
    table = {row["name"]: row for row in layer_table(arch, {}, 1.0, 3, (32, 32), 10)}
    assert table[name] == {"name": name, "filters": filters, "after": after, "groups": groups}
    model = build_external(arch, {}, 10, 3, (32, 32))
    assert len(table) == sum(isinstance(m, torch.nn.Conv2d) for m in model.net.modules())


def test_gstc_layers_prints_any_architecture():
    out = cli("layers", "torchvision.mobilenet_v3_small", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 52 and any(r["groups"] > 1 for r in rows) and any(r["after"] == "conv" for r in rows)
    bad = cli("layers", "torchvision.resnet19")
    assert bad.returncode == 1 and 'did you mean "resnet18"' in bad.stderr and "Traceback" not in bad.stderr


def test_gstc_layers_finds_an_own_module_in_the_current_folder(monkeypatch):
    monkeypatch.chdir(REPO / "examples")
    out = cli("layers", "own_model:SmallVGG", "--args", "{depth: 4, width: 8}", "--channels", "1", "--size", "16", "--json")
    assert out.returncode == 0, out.output
    assert [(r["name"], r["filters"], r["after"]) for r in json.loads(out.stdout)] == [
        ("features.0", 8, "bn"), ("features.3", 8, "bn"), ("features.7", 16, "bn"), ("features.10", 16, "bn")]


def test_fx_and_hooks_find_the_same_layers_and_untraceable_models_use_hooks():
    sys.path.insert(0, str(OWN.parent))
    import own_modules

    net = own_modules.GroupedNet(4)
    example = torch.zeros(2, 3, 8, 8)
    assert _by_fx(net) == _by_hooks(net, example)
    assert _by_fx(net)[0] == {"stem": "stem_bn", "grouped": "grouped_bn", "depthwise": "depthwise_bn", "plain": None}
    untraceable = own_modules.Untraceable(4)
    with pytest.raises(Exception):
        _by_fx(untraceable)
    model = build_external("own_modules:Untraceable", {}, 4, 3, (8, 8))
    assert [(r["name"], r["after"]) for r in model.table()] == [("a", "bn"), ("b", "conv")]


def test_a_grayscale_dataset_replaces_a_torchvision_models_input_conv():
    model = build_external("torchvision.resnet18", {}, 10, 1, (28, 28))
    assert model.net.conv1.in_channels == 1 and model.net.conv1.out_channels == 64
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


# --- pruning discovered layers --------------------------------------------------------------


def _train_and_capture(spec: Path, scoring: str = "l1", mode: str | None = None):
    """Train the spec's one pruned run; return the trainer and, per pruned layer, its output at the mask point."""
    plan = compile_file(str(spec))
    sys.path.insert(0, str(spec.parent))
    run = next(r for r in plan.runs)
    config = plan.config(run.config)
    trainer = Trainer([run], [config], load(config.resolved.data), torch.device("cpu"))
    trainer.execute()
    seen: dict[str, torch.Tensor] = {}
    model = trainer.model
    for f in model.found:
        site = f.bn if f.bn is not None else f.conv
        # registered after the mask's hook: sees what flows on from the mask point (cloned: torchvision's
        # blocks add the shortcut into it in place)
        site.register_forward_hook(lambda m, i, out, name=f.name: seen.__setitem__(name, out.detach().clone()))
    model.eval()
    with torch.no_grad():
        model(trainer.data.test_x[:8].float() / 255)
    return trainer, seen


@pytest.mark.parametrize("arch, select", [
    ("torchvision.resnet18", "layer[34].*.conv*"),
    ("torchvision.mobilenet_v3_small", "features.[1-4].*"),  # depthwise, SE (no BN) and 1x1 convs
    pytest.param("torchvision.vgg11_bn", "features.2[25]", marks=SLOW),
    ("own_modules:GroupedNet", "*"),
    ("own_model:SmallVGG", "*"),
])
def test_pruned_channels_are_exactly_zero_after_their_mask_point(tmp_path, arch, select):
    spec = spec_for(tmp_path, arch, select, epochs=2)
    write_layers(spec)
    trainer, seen = _train_and_capture(spec)
    pruner = trainer.members[0].pruner
    assert pruner.layers, "the glob selected no layer"
    for name, layer in pruner.layers.items():
        out = seen[name]
        targeted = layer.targeted
        assert int(targeted.sum()) == layer.schedule.pruned[0] > 0
        assert (out[:, targeted] == 0).all(), f"{name}: a pruned channel is not zero after its {'BN' if layer.p.bn is not None else 'conv'}"
        assert out[:, ~targeted].abs().sum() > 0, f"{name}: the kept channels went dead too"
        assert (layer.p.weight.detach()[targeted] == 0).all()


def test_grouped_and_depthwise_filters_are_masked_one_channel_at_a_time(tmp_path):
    spec = spec_for(tmp_path, "own_modules:GroupedNet", "*", epochs=2)
    write_layers(spec)
    trainer, seen = _train_and_capture(spec)
    for name in ("grouped", "depthwise"):
        layer = trainer.members[0].pruner.layers[name]
        assert layer.p.conv.groups > 1
        assert int(layer.targeted.sum()) == 8  # half of 16 filters, whatever groups they are in
        out = seen[name]
        assert (out[:, layer.targeted] == 0).all() and (out[:, ~layer.targeted] != 0).any(dim=(0, 2, 3)).all()


@pytest.mark.parametrize("scoring, mode", [("l2", "prune"), ("ebn", "{kind: zero, duration: {epochs: 1}, restore: trained}"),
                                           ("activation_l1", "{kind: gaussian, duration: {batches: 2}}")])
def test_scorings_and_modes_work_on_discovered_layers(tmp_path, scoring, mode):
    spec = spec_for(tmp_path, "own_modules:GroupedNet", "[sgd]*", epochs=3,
                    extra=f"variants: {{v: {{prune.scoring: {scoring}, prune.mode: {mode}}}}}\n")
    write_layers(spec)
    plan = compile_file(str(spec))
    report, infos = run_plan(plan, ResultsDir(tmp_path / "results"))
    assert [i["status"] for i in infos] == ["done"], infos
    events = read_jsonl(ResultsDir(tmp_path / "results").events_jsonl(plan.runs[0].id))
    assert {l["layer"] for l in events[0]["layers"]} == {"stem", "grouped", "depthwise"}
    assert all(l["mean_score"] is not None for l in events[0]["layers"])


def test_ebn_on_a_layer_without_bn_is_a_spec_error(tmp_path):
    spec = spec_for(tmp_path, "own_modules:GroupedNet", "plain", extra="")
    write_layers(spec)
    spec.write_text(spec.read_text().replace("scoring: l1", "scoring: ebn"))
    out = cli("validate", str(spec))
    assert out.returncode == 1 and "no BatchNorm2d follows plain" in out.stderr


# --- the layer file -------------------------------------------------------------------------


def test_validate_needs_the_layer_file_and_run_refuses_a_stale_one(tmp_path):
    spec = spec_for(tmp_path, "own_modules:GroupedNet", "grouped")
    missing = cli("validate", str(spec))
    assert missing.returncode == 1
    assert "own.layers.json does not exist" in missing.stderr and "gstc layers" in missing.stderr and "--write" in missing.stderr
    write_layers(spec)
    assert cli("validate", str(spec)).returncode == 0
    ids = [r.id for r in compile_file(str(spec)).runs]
    # The model changes (12 -> 10 filters in `plain`) but the file is not rewritten: refused at run time.
    own = tmp_path / "own_modules.py"
    own.write_text(own.read_text().replace("nn.Conv2d(16, 12, 1)", "nn.Conv2d(16, 10, 1)").replace("nn.Linear(12,", "nn.Linear(10,"))
    stale = gstc("run", str(spec), "--out", str(tmp_path / "r"), "--device", "cpu")
    assert stale.returncode == 1 and "Traceback" not in stale.stderr
    assert "plain (12)" in stale.stderr and "gstc layers SPEC --write" in stale.stderr
    assert gstc("layers", str(spec), "--write").returncode == 0  # refreshed: the table is in the run ids, so they move
    assert [r.id for r in compile_file(str(spec)).runs] != ids


def test_the_layer_files_content_is_in_the_run_id_and_its_name_is_not(tmp_path):
    spec = spec_for(tmp_path, "own_modules:GroupedNet", "grouped")
    write_layers(spec)
    ids = [r.id for r in compile_file(str(spec)).runs]
    (tmp_path / "renamed.json").write_text((tmp_path / "own.layers.json").read_text())
    spec.write_text(spec.read_text().replace("layers: own.layers.json", "layers: renamed.json"))
    assert [r.id for r in compile_file(str(spec)).runs] == ids
    table = tmp_path / "renamed.json"
    table.write_text(table.read_text().replace('"groups": 4', '"groups": 2'))
    assert [r.id for r in compile_file(str(spec)).runs] != ids


def test_pack_refuses_non_built_in_architectures(tmp_path):
    spec = spec_for(tmp_path, "own_modules:GroupedNet", "grouped")
    write_layers(spec)
    out = cli("run", str(spec), "--out", str(tmp_path / "r"), "--pack", "2")
    assert out.returncode == 1 and "packs are built for the built-in architectures" in out.stderr


def test_a_plugin_registers_an_architecture_by_entry_point(tmp_path, monkeypatch):
    dist = tmp_path / "site" / "widevgg_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: widevgg-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[gstc.architectures]\nwidevgg = own_modules:widevgg\n")
    shutil.copy(OWN, tmp_path / "site" / "own_modules.py")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = build_external("widevgg", {"depth": 3}, 4, 3, (16, 16))
    assert [r["name"] for r in model.table()] == ["0", "3", "6"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(REPO)]))
    out = subprocess.run([sys.executable, "-m", "gstc", "layers", "widevgg", "--json"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and len(json.loads(out.stdout)) == 2, out.stderr
    unknown = subprocess.run([sys.executable, "-m", "gstc", "layers", "widevgh"], capture_output=True, text=True, env=env)
    assert unknown.returncode == 1 and 'did you mean "widevgg"' in unknown.stderr


# --- resuming --------------------------------------------------------------------------------


def test_an_interrupted_run_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path, monkeypatch):
    # In-process and quick (the kill -9 version below is slow): the checkpoint of a discovered model (its
    # wrapped net and masks) and its pruner state restore exactly.
    import gstc.runtime.train as train

    spec = spec_for(tmp_path, "own_modules:GroupedNet", "*", epochs=4)
    spec.write_text(spec.read_text().replace("start: 1", "start: 2"))
    write_layers(spec)
    plan = compile_file(str(spec))
    reference = ResultsDir(tmp_path / "reference")
    run_plan(plan, reference)
    real = train.Trainer.run_epoch

    def interrupted(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt  # as Ctrl-C during epoch 3
        return real(self, epoch)

    results = ResultsDir(tmp_path / "interrupted")
    monkeypatch.setattr(train.Trainer, "run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, results)
    monkeypatch.setattr(train.Trainer, "run_epoch", real)
    run_plan(plan, results)
    assert read_json(results.run_json(plan.runs[0].id))["resumed_from"] == 2
    assert numbers(results, plan.runs[0].id) == numbers(reference, plan.runs[0].id)


@pytest.mark.parametrize("arch, select", [
    pytest.param("own_modules:GroupedNet", "*", marks=SLOW),
    pytest.param("own_model:SmallVGG", "features.[37]", marks=SLOW),
    pytest.param("torchvision.resnet18", "layer4.*.conv*", marks=SLOW),
    pytest.param("torchvision.mobilenet_v3_small", "features.[1-4].*", marks=SLOW),
    pytest.param("torchvision.vgg11_bn", "features.2[25]", marks=SLOW),
])
def test_kill_9_then_resume_gives_the_numbers_of_an_uninterrupted_run(tmp_path, arch, select):
    spec = spec_for(tmp_path, arch, select, epochs=4, extra="")
    spec.write_text(spec.read_text().replace("start: 1", "start: 2"))
    write_layers(spec)
    plan = compile_file(str(spec))
    run = plan.runs[0]
    reference = ResultsDir(tmp_path / "reference")
    assert gstc("run", str(spec), "--out", str(reference.root), "--device", "cpu").returncode == 0
    results = ResultsDir(tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, "-m", "gstc", "run", str(spec), "--out", str(results.root), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))
    deadline = time.time() + 300
    while time.time() < deadline:  # epoch 2 (with its pruning event) written: kill during epoch 3
        if results.epochs_jsonl(run.id).exists() and len(read_jsonl(results.epochs_jsonl(run.id))) >= 2:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_json(results.run_json(run.id))["status"] == "running"
    assert gstc("run", str(spec), "--out", str(results.root), "--device", "cpu").returncode == 0
    assert read_json(results.run_json(run.id))["resumed_from"] in (1, 2)
    assert numbers(results, run.id) == numbers(reference, run.id)
