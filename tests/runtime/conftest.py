"""Helpers for runtime tests: compile inline specs into plans without files."""

from __future__ import annotations

import textwrap

import pytest

from gstc.compile import check
from gstc.load import load_text
from gstc.plan import Plan

torch = pytest.importorskip("torch")


def compile_text(text: str) -> Plan:
    plan, errors = check(load_text(textwrap.dedent(text), "inline.yaml"))
    assert not errors, [e.format() for e in errors]
    return plan


def spec_text(arch: str = "vgg11_bn", width: float = 0.25, prune: str = "", epochs: int = 4, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        gstc: 1
        name: t
        seeds: 1
        model: {{arch: {arch}, width: {width}}}
        data: {{dataset: digits}}
        train: {{epochs: {epochs}, batch_size: 64, optimizer: {{name: adam, lr: 0.001}}}}
        """) + textwrap.dedent(prune) + textwrap.dedent(extra)


# A CUDA device as a test parameter: marked `gpu` (left out of the default run; `pytest -m gpu`
# on a machine with one) and skipped where torch sees no CUDA device.
CUDA = pytest.param("cuda", id="cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")])
DEVICES = ["cpu", CUDA]
