"""Shared fixtures: a small valid spec used across the compiler's tests."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Debian's Chromium, which the browser tests drive through Playwright (the dev extra installs Playwright, not a
# browser); they are skipped without it.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(playwright):
    """Headless Chromium: as root it needs --no-sandbox; the rest keep it from calling home on a closed network."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"])
# Every spec the project ships: the paper's and the examples.
SHIPPED = sorted([*REPO.joinpath("specs").rglob("*.yaml"), *REPO.joinpath("examples").glob("*.yaml")])

SMALL_SPEC = textwrap.dedent(
    """\
    gstc: 1
    name: small
    description: a small VGG spec for tests
    seeds: 2
    model: {arch: vgg11_bn, width: 0.25}
    data: {dataset: digits}
    train:
      epochs: 10
      batch_size: 64
      optimizer: {name: adam, lr: 0.001}
      lr_schedule: {milestones: [8]}
    prune:
      scoring: l2
      target: smallest
      schedule: {every: 2}
      layers:
        - {select: conv5, amount: 0.5, schedule: {start: 1, end: 7}}
        - {select: "conv[78]", amount: 0.3, schedule: {start: 2, end: 6}}
    variants:
      baseline: {prune: null}
      small: {}
      large: {prune.target: largest}
    """
)


@pytest.fixture
def small_spec(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL_SPEC)
    return path


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path
