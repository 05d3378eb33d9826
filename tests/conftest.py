"""Shared fixtures: a small valid spec used across the compiler's tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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
    path.write_text(textwrap.dedent(text))
    return path
