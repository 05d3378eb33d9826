"""The documentation site builds with `mkdocs build --strict` (a broken link or anchor fails it), and every page of
it loads in a real browser, headless Chromium, with nothing fetched from elsewhere and an empty console."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM, chromium

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a site build (about 5 s) and a browser


def build(site: Path, mkdocs_yml: Path = ROOT / "mkdocs.yml") -> subprocess.CompletedProcess:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(mkdocs_yml), "-d", str(site)],
                          cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # without the theme's end-of-life banner


def test_the_site_builds_strict_and_a_broken_link_fails_the_build(tmp_path):
    done = build(tmp_path / "site")
    assert done.returncode == 0, done.stderr
    # the generated references are pages of the site, reached from the navigation
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert 'id="gstc-run"' in cli and "--track" in cli
    assert 'id="prunespec"' in (tmp_path / "site" / "reference" / "spec" / "index.html").read_text()
    # the same site with one link broken: --strict fails and names it
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    (docs / "commands.md").write_text((docs / "commands.md").read_text() + "\nSee [the runtime](runtime.md#no-such-part).\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text((ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}")
                      .replace("scripts/mkdocs_hooks.py", str(ROOT / "scripts" / "mkdocs_hooks.py")))
    broken = build(tmp_path / "broken", config)
    assert broken.returncode != 0 and "runtime.md#no-such-part" in broken.stderr


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test's output stays readable
        pass


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_every_page_loads_in_headless_chromium_and_search_finds_a_page(tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    site = tmp_path / "site"
    assert build(site).returncode == 0
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    assert len(pages) >= 15 and "reference/spec/index.html" in pages
    # Served over HTTP on 127.0.0.1, as `mkdocs serve` does: the search's web worker cannot run from file://.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    messages, elsewhere, failed = [], [], []
    try:
        with sync_playwright() as p:
            browser = chromium(p)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: messages.append(f"{page.url}: {m.type}: {m.text}"))
            page.on("pageerror", lambda e: messages.append(f"{page.url}: pageerror: {e}"))
            page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.route("**/*", lambda route: (elsewhere.append(route.request.url), route.abort())
                       if not route.request.url.startswith(base) else route.continue_())
            titles = {}
            for path in pages:
                response = page.goto(base + path, wait_until="load")
                assert response.status == 200, path
                titles[path] = page.evaluate("document.querySelector('article h1')?.textContent ?? ''")
                words = page.evaluate("document.querySelector('article')?.innerText.split(/\\s+/).length ?? 0")
                assert path == "404.html" or words > 40, (path, words)
            # the search: Material's worker loads the index and lists the pages that match
            page.goto(base + "index.html", wait_until="networkidle")
            page.keyboard.press("/")  # the site's shortcut to the search box; typed as a reader types
            page.keyboard.type("rewind", delay=20)
            page.wait_for_selector(".md-search-result__item", timeout=15_000)
            hits = page.evaluate("[...document.querySelectorAll('.md-search-result__item a')].map(a => a.href)")
            browser.close()
    finally:
        server.shutdown()
    assert messages == [] and elsewhere == [] and failed == []
    assert titles["index.html"].startswith("gstc") and re.match("Spec reference", titles["reference/spec/index.html"])
    assert all(titles[p] for p in pages if p != "404.html"), titles
    assert any("pruning/" in h for h in hits), hits  # lottery tickets' rewind is on the pruning methods page
