"""`gstc report --format html`: one self-contained file, checked as a file and in a real browser."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from gstc.cli import app
from gstc.compile import compile_file
from gstc.paths import ResultsDir
from tests.conftest import CHROMIUM, SMALL_SPEC, chromium, write
from tests.gstc.test_report import fake_run

runner = CliRunner()
# A sweep over a rate axis as well, so that every kind of figure is in the page.
SWEPT = SMALL_SPEC.replace("seeds: 2", "seeds: 3") + "sweep:\n  prune.layers[0].amount: [0.25, 0.5]\n"


def html_report(tmp_path, text: str = SMALL_SPEC):
    spec = write(tmp_path, text, "s.yaml")
    plan = compile_file(str(spec))
    results = ResultsDir(tmp_path / "r")
    for run in plan.runs:
        shift = {"baseline": 0.0}.get(run.config, -1.0 if "largest" in run.config or run.config.startswith("large") else 1.0)
        fake_run(results, run, [50.0 + i + run.seed + shift for i in range(10)], 1000, [90.0 + run.seed + shift] * 4)
    out = runner.invoke(app, ["report", str(spec), "--out", str(results.root), "--format", "html"])
    assert out.exit_code == 0, out.stderr
    return spec, results, tmp_path / "r" / "specs" / "small" / "report.html", out


def test_html_report_is_one_self_contained_file(tmp_path):
    spec, results, path, out = html_report(tmp_path)
    assert f"wrote {path}" in out.stderr
    text = path.read_text()
    # no resource from elsewhere: every src and href is inline data
    assert re.findall(r'(?:src|href)="(?!data:)', text) == []
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 3 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    for heading in ("Configurations", "Compared with baseline", "Correlations over runs", "Flatness", "Runs",
                    "Environment and code version of the runs"):
        assert f"<h2>{heading}" in text
    again = runner.invoke(app, ["report", str(spec), "--out", str(results.root), "--format", "html"])
    assert again.exit_code == 0 and path.read_text() == text  # deterministic


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_html_report_in_headless_chromium(tmp_path):
    """Opened from disk in headless Chromium with every network request refused: every image loads,
    nothing is fetched from elsewhere, the console stays empty and the page is not blank."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    from PIL import Image

    _, _, path, _ = html_report(tmp_path, SWEPT)
    messages, requests = [], []
    with sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
        page.route("**/*", lambda route: (requests.append(route.request.url), route.abort())
                   if not route.request.url.startswith(("file:", "data:")) else route.continue_())
        page.goto(path.as_uri(), wait_until="load")
        images = page.evaluate("[...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
        headings = page.evaluate("[...document.querySelectorAll('h2')].map(h => h.textContent)")
        shot = page.screenshot(full_page=True)
        browser.close()
    assert messages == [] and requests == []
    assert [alt for alt, *_ in images] == ["test accuracy", "stability vs accuracy", "sweep prune layers 0 amount",
                                           "flatness vs stability"]
    assert all(done and w > 300 and h > 200 for _, done, w, h in images), images
    assert "Compared with baseline (by seed where the seeds match)" in headings and "Sweep: prune_layers_0_amount" in headings
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
    assert pixels.shape[0] > 2000  # the full page: tables and four figures
    ink = (pixels < 200).any(axis=2).mean()  # share of pixels that are not near-white
    colors = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert ink > 0.03 and colors > 100, (ink, colors)
