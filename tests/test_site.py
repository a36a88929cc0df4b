"""The documentation site as a reader sees it (``make docs-check`` runs the same check).

The site is built once (strictly); the generated pages are checked for what the docs build
must put there, and every page is loaded in headless Chromium by ``docs/check_site.py``
(console errors, failed resources, images, internal links, overflow of the main column).
Without Chromium the browser test skips, saying so; ``.ci/run`` installs it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def check_site_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_site", ROOT / "docs" / "check_site.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    out = tmp_path_factory.mktemp("site") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_docs_build_strict(site: Path):
    """The site builds with warnings as errors (``make docs``)."""
    assert (site / "index.html").exists()


def test_benchmarks_page_shows_every_result(site: Path):
    page = (site / "benchmarks" / "index.html").read_text()
    for md in sorted(RESULTS.glob("*.md")):
        assert f'id="{md.stem.replace("_", "-")}"' in page, f"{md.name} is not on the page"
        if md.with_suffix(".png").exists():
            assert f"assets/results/{md.stem}.png" in page, f"{md.stem}.png is not shown"
            assert (site / "assets" / "results" / f"{md.stem}.png").exists()
    # Plot first, then the tables: in each section the image comes before the first table.
    for section in re.split(r"<h2 ", page)[1:]:
        if "<img" in section and "<table" in section:
            assert section.index("<img") < section.index("<table")


def test_gallery_shows_every_example(site: Path):
    page = (site / "examples" / "index.html").read_text()
    sections = {}
    for section in re.split(r"<h2 ", page)[1:]:
        ident = re.match(r'id="([^"]+)"', section)
        if ident:
            sections[ident.group(1)] = section
    for example in sorted((ROOT / "examples").glob("*.py")):
        section = sections.get(example.stem.replace("_", "-"))
        assert section is not None, f"{example.name} is not in the gallery"
        assert "Run time" in section, f"{example.name} has no recorded run"


def test_math_is_left_for_katex(site: Path):
    page = (site / "theory" / "index.html").read_text()
    assert page.count('class="arithmatex"') > 20
    assert "assets/katex/katex.min.js" in page


def test_site_in_headless_chromium(site: Path):
    check = check_site_module()
    chromium = check.find_chromium()
    if chromium is None:
        pytest.skip(
            "Chromium not found, so the docs were not checked in a browser: install Debian's "
            "chromium package (make chromium) or set CHROMIUM=/path/to/chrome"
        )
    problems = check.check_site(site, chromium)
    assert not problems, "\n".join(problems)


BAD_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="margin:0"><div class="md-content" style="width:300px">
<p><a href="../missing/">a broken link</a> <a href="#nowhere">a missing anchor</a></p>
<img src="missing.png" alt="an image that does not load">
<div style="width:900px">a box wider than the column</div>
<div style="overflow-x:auto;scrollbar-width:none"><div style="width:900px">hidden</div></div>
<script>console.error("boom")</script>
</div></body></html>"""


def test_the_check_finds_problems(tmp_path: Path):
    """The browser check is not vacuous: a page with one of each problem fails it."""
    check = check_site_module()
    chromium = check.find_chromium()
    if chromium is None:
        pytest.skip("Chromium not found (make chromium)")
    (tmp_path / "index.html").write_text(BAD_PAGE)
    problems = "\n".join(check.check_site(tmp_path, chromium, widths=(1300,)))
    for expected in (
        "console error",
        "image does not load",
        "broken link /missing/",
        "missing anchor /#nowhere",
        "sticks out of the main column",
        "no scrollbar or scroll shadow",
    ):
        assert expected in problems, f"{expected!r} not reported:\n{problems}"
