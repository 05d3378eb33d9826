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
from gstc.jsonio import read_json, read_jsonl
from gstc.paths import ResultsDir
from tests.conftest import REPO
from tests.runtime.conftest import run_plan

torch = pytest.importorskip("torch")

from gstc.runtime.builders import build_external  # noqa: E402
from gstc.runtime.data import load  # noqa: E402
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
    """A spec next to a copy of own_modules.py, training `arch` on its `tiny` data, pruning `select` (a glob, or
    several separated by spaces, each an entry of its own) at epoch 1."""
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
          layers: [{", ".join(f'{{select: "{one}", amount: 0.5}}' for one in select.split())}]
        """) + textwrap.dedent(extra))
    return spec


def write_layers(spec: Path) -> None:
    out = cli("layers", str(spec), "--write")
    assert out.returncode == 0, out.stderr


def numbers(results: ResultsDir, run_id: str) -> list:
    keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "kept", "params")
    return [[r[k] for k in keys] for r in read_jsonl(results.epochs_jsonl(run_id))]


# --- which layers, and where their masks sit ---------------------------------------------


@pytest.mark.parametrize("arch, name, want", [
    ("torchvision.resnet18", "layer4.1.conv1", {"filters": 512, "after": "bn", "groups": 1}),
    # a residual sum: the convs that add into a stage's channels are one group, pruned together
    ("torchvision.resnet18", "layer4.1.conv2", {"filters": 512, "after": "bn", "groups": 1,
                                               "coupled": ["layer4.0.conv2", "layer4.0.downsample.0"]}),
    ("torchvision.mobilenet_v3_small", "features.1.block.0.0", {"filters": 16, "after": "bn", "groups": 16,
                                                                "refused": "a depthwise conv: its channels are features.0.0's"}),
    ("torchvision.mobilenet_v3_small", "features.1.block.1.fc2", {"filters": 16, "after": "conv", "groups": 1,
                                                                  "refused": "a gate (its output multiplies them)"}),
    pytest.param("torchvision.vgg11_bn", "features.25", {"filters": 512, "after": "bn", "groups": 1}, marks=SLOW),
])
def test_torchvision_models_list_every_conv_with_its_mask_point(arch, name, want):
    table = {row["name"]: row for row in layer_table(arch, {}, 1.0, 3, (32, 32), 10)}
    row = table[name]
    refused = want.pop("refused", None)
    assert {k: v for k, v in row.items() if k in ("filters", "after", "groups", "coupled")} == want
    assert (refused is None and "refused" not in row) or refused in row["refused"]
    model = build_external(arch, {}, 10, 3, (32, 32))
    assert len(table) == sum(isinstance(m, torch.nn.Conv2d) for m in model.net.modules())


def test_a_norm_with_an_activation_is_found_and_takes_its_conv_s_followers_along():
    """The issue of timm's BatchNormAct2d (a BN subclass whose forward calls batch_norm as a function): the mask sits
    after it, and the depthwise conv, its norm and the squeeze-excitation gate reading the channels go along."""
    pytest.importorskip("timm")
    model = build_external("timm:create_model", {"model_name": "efficientnet_b0"}, 10, 3, (32, 32))
    row = {r["name"]: r for r in model.table()}["blocks.1.0.conv_pw"]
    assert row["after"] == "bn" and type(model.net.get_submodule("blocks.1.0.bn1")).__name__ == "BatchNormAct2d"
    assert row["followers"] == ["blocks.1.0.conv_dw", "blocks.1.0.bn2", "blocks.1.0.se.conv_expand"]


def test_gstc_layers_prints_any_architecture():
    out = cli("layers", "torchvision.mobilenet_v3_small", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 52 and any(r["groups"] > 1 for r in rows) and any(r["after"] == "conv" for r in rows)
    assert sum(1 for r in rows if "refused" in r) == 20  # 11 depthwise convs, 9 gates
    text = cli("layers", "torchvision.mobilenet_v3_small")
    assert "32 prunable layers, 20 refused" in text.stdout and text.stdout.count("refused: ") == 20
    bad = cli("layers", "torchvision.resnet19")
    assert bad.returncode == 1 and 'did you mean "resnet18"' in bad.stderr and "Traceback" not in bad.stderr


def test_gstc_layers_finds_an_own_module_in_the_current_folder(monkeypatch):
    monkeypatch.chdir(REPO / "examples")
    out = cli("layers", "own_model:SmallVGG", "--args", "{depth: 4, width: 8}", "--channels", "1", "--size", "16", "--json")
    assert out.returncode == 0, out.output
    assert [(r["name"], r["filters"], r["after"]) for r in json.loads(out.stdout)] == [
        ("features.0", 8, "bn"), ("features.3", 8, "bn"), ("features.7", 16, "bn"), ("features.10", 16, "bn")]


def test_followers_coupled_layers_and_refusals_of_an_own_module():
    rows = {r["name"]: r for r in build_external("own_modules:BlockNet", {}, 4, 3, (8, 8)).table()}
    assert rows["stem"]["coupled"] == ["project"] and rows["project"]["coupled"] == ["stem"]  # the residual sum
    assert rows["expand"]["followers"] == ["dw", "dw_bn", "se_expand"]
    assert "a depthwise conv: its channels are expand's" in rows["dw"]["refused"]
    assert "a gate" in rows["se_expand"]["refused"]
    assert [n for n, r in rows.items() if "refused" not in r] == ["stem", "expand", "se_reduce", "project", "plain"]
    grouped = {r["name"]: r for r in build_external("own_modules:GroupedNet", {}, 4, 3, (8, 8)).table()}
    assert all("grouped is a grouped conv (groups=4)" in grouped[n]["refused"] for n in ("stem", "grouped", "depthwise"))
    functional = build_external("own_modules:FunctionalNorm", {}, 4, 3, (8, 8)).table()
    assert "these channels reach scale, a parameter used outside a module" in functional[0]["refused"]


def test_a_layer_whose_removal_would_change_the_output_is_refused():
    """No rule names a sigmoid after a BN; the model's own output does: a zeroed channel comes out as 0.5."""
    rows = {r["name"]: r for r in layer_table("own_modules:SigmoidNet", {}, 1.0, 3, (8, 8), 4)}
    assert "removing its channels changes the model's output by" in rows["a"]["refused"]
    assert "refused" not in rows["b"]


def test_a_model_torch_fx_cannot_trace_is_followed_through_a_real_forward_pass():
    model = build_external("own_modules:Untraceable", {}, 4, 3, (8, 8))
    assert [(r["name"], r["after"], r.get("refused")) for r in model.table()] == [("a", "bn", None), ("b", "conv", None)]


def test_finding_the_layers_moves_no_number_of_the_model():
    torch.manual_seed(0)
    net = __import__("own_modules").BlockNet(4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(0)
    model = build_external("own_modules:BlockNet", {}, 4, 3, (8, 8))
    assert model.net.training and all(torch.equal(before[k], v) for k, v in model.net.state_dict().items())


def test_a_grayscale_dataset_replaces_a_torchvision_models_input_conv():
    model = build_external("torchvision.resnet18", {}, 10, 1, (28, 28))
    assert model.net.conv1.in_channels == 1 and model.net.conv1.out_channels == 64
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


# --- pruning discovered layers --------------------------------------------------------------


BLOCKNET = "expand stem project plain"  # an expansion with followers, a coupled pair, a conv without BN


@pytest.mark.parametrize("arch, select", [
    ("torchvision.resnet18", "layer[34].*.conv1"),
    ("torchvision.resnet18", "layer4.*.conv2 layer4.0.downsample.0"),  # a residual sum's convs, as one group
    ("torchvision.mobilenet_v3_small", "features.[2-4].block.0.0"),  # expansions: depthwise convs, gates follow
    pytest.param("torchvision.vgg11_bn", "features.2[25]", marks=SLOW),
    ("own_modules:BlockNet", BLOCKNET),
    ("own_model:SmallVGG", "*"),
])
def test_pruned_channels_are_exactly_zero_everywhere_they_are_read(tmp_path, arch, select):
    """Rule: after training on (so that every norm's shift has moved), a pruned channel is exactly zero after its
    mask, after every follower (depthwise conv, its norm, a gate) and after every coupled conv's norm."""
    spec = spec_for(tmp_path, arch, select, epochs=2)
    write_layers(spec)
    trainer, seen = _train_and_capture(spec)
    pruner = trainer.members[0].pruner
    assert pruner.layers, "the selection matched no layer"
    checked = 0
    for name, layer in pruner.layers.items():
        targeted = layer.targeted
        assert int(targeted.sum()) == layer.schedule.pruned[0] > 0
        for w in layer.p.writers():
            out = seen[next(f.name for f in trainer.model.found if f.conv is w.conv)]
            assert (out[:, targeted] == 0).all(), f"{name}: a pruned channel is not zero after its mask"
            assert out[:, ~targeted].abs().sum() > 0, f"{name}: the kept channels went dead too"
            assert (w.weight.detach()[targeted] == 0).all()
            checked += 1
        for site in layer.p.followers:
            out = seen[site.name]
            assert (out[:, site.positions[targeted]] == 0).all(), f"{name}: not zero after its follower {site.name}"
            checked += 1
    assert checked >= len(select.split())


def _train_and_capture(spec: Path):
    """Train the spec's one pruned run; return the trainer and the output (on a few test images) of every module
    where a layer's channels come out: each listed conv's mask point, and every follower."""
    plan = compile_file(str(spec))
    sys.path.insert(0, str(spec.parent))
    run = next(r for r in plan.runs)
    config = plan.config(run.config)
    trainer = Trainer([run], [config], load(config.resolved.data), torch.device("cpu"))
    trainer.execute()
    seen: dict[str, torch.Tensor] = {}
    model = trainer.model
    sites = {f.name: f.bn if f.bn is not None else f.conv for f in model.found}
    sites.update({s.name: s.module for f in model.found for s in f.followers})
    for name, module in sites.items():
        # registered after the mask's hook: sees what flows on from the mask point (cloned: torchvision's
        # blocks add the shortcut into it in place)
        module.register_forward_hook(lambda m, i, out, name=name: seen.__setitem__(name, out.detach().clone()))
    model.eval()
    with torch.no_grad():
        model(trainer.data.test_x[:8].float() / 255)
    return trainer, seen


@pytest.mark.parametrize("scoring, mode, select", [
    ("l2", "prune", BLOCKNET),
    ("ebn", "{kind: zero, duration: {epochs: 1}, restore: trained}", "expand stem project"),
    ("activation_l1", "{kind: gaussian, duration: {batches: 2}}", "expand se_reduce plain")])
def test_scorings_and_modes_work_on_discovered_layers(tmp_path, scoring, mode, select):
    spec = spec_for(tmp_path, "own_modules:BlockNet", select, epochs=3,
                    extra=f"variants: {{v: {{prune.scoring: {scoring}, prune.mode: {mode}}}}}\n")
    write_layers(spec)
    plan = compile_file(str(spec))
    report, infos = run_plan(plan, ResultsDir(tmp_path / "results"))
    assert [i["status"] for i in infos] == ["done"], infos
    events = read_jsonl(ResultsDir(tmp_path / "results").events_jsonl(plan.runs[0].id))
    assert {l["layer"] for l in events[0]["layers"]} == set(select.split())
    assert all(l["mean_score"] is not None for l in events[0]["layers"])
    layers = {l["layer"]: l for l in events[0]["layers"]}
    if "stem" in layers:  # coupled: one choice of channels, one record each
        assert layers["stem"]["mean_score"] == layers["project"]["mean_score"]


def test_a_zero_window_restores_a_followers_trained_values(tmp_path):
    """Zero mode (restore: trained) holds the depthwise conv and the gate with the expansion, and gives them back."""
    spec = spec_for(tmp_path, "own_modules:BlockNet", "expand", epochs=3,
                    extra="variants: {v: {prune.mode: {kind: zero, duration: {batches: 0}, restore: trained, include_bn: true}}}\n")
    write_layers(spec)
    plan = compile_file(str(spec))
    sys.path.insert(0, str(tmp_path))
    run, config = plan.runs[0], plan.configs[0]
    trainer = Trainer([run], [config], load(config.resolved.data), torch.device("cpu"))
    trainer.train_epoch(1)
    net = trainer.model.net
    before = {n: t.detach().clone() for n, t in net.state_dict().items()}
    seen: dict[str, torch.Tensor] = {}  # the model as the post-pruning evaluation sees it

    def evaluate():
        seen.update({n: t.detach().clone() for n, t in net.state_dict().items()})
        return [0.0], [0.0]

    trainer.evaluate = evaluate
    trainer.prune_epoch(1)
    layer = trainer.members[0].pruner.layers["expand"]
    rows = layer.targeted.nonzero().flatten()
    for key in ("dw.weight", "dw_bn.weight", "dw_bn.bias", "se_expand.weight", "se_expand.bias", "expand_bn.bias"):
        assert (seen[key][rows] == 0).all(), key  # held during the evaluation
        assert torch.equal(net.state_dict()[key], before[key]), key  # and back afterwards


def test_ebn_on_a_layer_without_bn_is_a_spec_error(tmp_path):
    spec = spec_for(tmp_path, "own_modules:GroupedNet", "plain", extra="")
    write_layers(spec)
    spec.write_text(spec.read_text().replace("scoring: l1", "scoring: ebn"))
    out = cli("validate", str(spec))
    assert out.returncode == 1 and "no BatchNorm2d follows plain" in out.stderr


# --- the layer file -------------------------------------------------------------------------


def test_validate_needs_the_layer_file_and_run_refuses_a_stale_one(tmp_path):
    spec = spec_for(tmp_path, "own_modules:GroupedNet", "plain")
    missing = cli("validate", str(spec))
    assert missing.returncode == 1 and "own.layers.json does not exist" in missing.stderr and "--write" in missing.stderr
    write_layers(spec)
    ids = [r.id for r in compile_file(str(spec)).runs]
    # The file no longer says what the model is (12 -> 10 filters in `plain`): other ids, and refused at run time.
    table = tmp_path / "own.layers.json"
    table.write_text(table.read_text().replace('"filters": 12', '"filters": 10'))
    assert [r.id for r in compile_file(str(spec)).runs] != ids
    stale = cli("run", str(spec), "--out", str(tmp_path / "r"), "--device", "cpu")
    assert stale.returncode == 1 and "Traceback" not in stale.output
    assert "plain (10)" in stale.stderr and "gstc layers SPEC --write" in stale.stderr
    write_layers(spec)  # rewritten from the model: the ids it had
    assert [r.id for r in compile_file(str(spec)).runs] == ids


@SLOW
def test_a_changed_model_is_refused_until_its_layer_file_is_rewritten(tmp_path):
    # In processes of their own: the edited model file is imported afresh there.
    spec = spec_for(tmp_path, "own_modules:GroupedNet", "plain")
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
    spec = spec_for(tmp_path, "own_modules:GroupedNet", "plain")
    write_layers(spec)
    ids = [r.id for r in compile_file(str(spec)).runs]
    (tmp_path / "renamed.json").write_text((tmp_path / "own.layers.json").read_text())
    spec.write_text(spec.read_text().replace("layers: own.layers.json", "layers: renamed.json"))
    assert [r.id for r in compile_file(str(spec)).runs] == ids
    table = tmp_path / "renamed.json"
    table.write_text(table.read_text().replace('"groups": 4', '"groups": 2'))
    assert [r.id for r in compile_file(str(spec)).runs] != ids


def test_pack_refuses_non_built_in_architectures(tmp_path):
    spec = spec_for(tmp_path, "own_modules:GroupedNet", "plain")
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

    spec = spec_for(tmp_path, "own_modules:BlockNet", BLOCKNET, epochs=4)
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
    pytest.param("own_modules:BlockNet", BLOCKNET, marks=SLOW),
    pytest.param("own_model:SmallVGG", "features.[37]", marks=SLOW),
    pytest.param("torchvision.resnet18", "layer4.*.conv1 layer4.*.conv2 layer4.0.downsample.0", marks=SLOW),
    pytest.param("torchvision.mobilenet_v3_small", "features.[2-4].block.0.0", marks=SLOW),
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


@pytest.mark.parametrize("granularity", ["weight", pytest.param("'2:4'", marks=SLOW)])
def test_an_own_model_prunes_single_weights_and_n_m_groups_of_its_convs_and_dense_layers(tmp_path, granularity):
    """Weight and N:M granularity on a discovered model: every conv (a grouped or depthwise one too: a weight is
    its own) and the dense head, their shapes from the layer file; the pruned weights stay exactly zero through
    training and epochs.jsonl counts the nonzero parameters as the plan does."""
    spec = spec_for(tmp_path, "own_model:SmallVGG", "features.3 features.7 head", epochs=2)
    spec.write_text(spec.read_text().replace("  scoring: l1\n", f"  scoring: l1\n  granularity: {granularity}\n"))
    write_layers(spec)
    trainer, _ = _train_and_capture(spec)
    pruner = trainer.members[0].pruner
    assert set(pruner.weights) == {"features.3", "features.7", "head"}
    modules = dict(trainer.model.net.named_modules())  # the user's model, as the layer file names its modules
    for name, state in pruner.weights.items():
        w = modules[name].weight.detach()
        share = 2 if granularity == "weight" else 4  # half the weights; or half the groups, each losing 2 of 4
        assert int(state.held.sum()) == w.numel() // share and (w[state.held] == 0).all(), name
        assert (w[~state.held] != 0).all(), name
    counts = compile_file(str(spec)).configs[0].counts
    assert counts.nonzero[1] == counts.params[0] - sum(int(s.held.sum()) for s in pruner.weights.values())
    assert trainer.count(trainer.members[0])[0] - pruner.zeroed() == counts.nonzero[1]
