"""The HTML report: built from real run directories, checked as text and in a real browser.

The browser tests drive Debian's Chromium (``/usr/bin/chromium``, or the path in
``NBA_PIPELINE_CHROMIUM``) through Playwright without downloading a browser; they skip with
the reason when either is missing.  Everything else runs without a browser.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nba_pipeline.errors import InputDataError
from nba_pipeline.html_report import write_html_report

_SCRIPT = Path(sys.executable).with_name("nba-pipeline")
NBA_PIPELINE = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "nba_pipeline.cli"]
TIMEOUT_S = 300

# A full run kept small: two repetitions and a 2 x 1 x 1 sweep on the packaged sample.
SMALL_TEMPLATE = {
    "benchmark_runs": 2,
    "max_compute_units": 1.0,
    "sweep_chunk_sizes": [64, 128],
    "sweep_memory_limits_mb": [4096],
    "sweep_compute_limits": [1.0],
    "data_size_fractions": [1.0],
    "spill_to_disk": True,
}
SECTION_IDS = ("dataset", "modes", "sweep", "tradeoffs", "operators", "memory", "quality")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def run_pipeline(out: Path, *args: str) -> Path:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    env.pop("NBA_PIPELINE_REAL_DATA", None)
    done = subprocess.run(
        [*NBA_PIPELINE, "run", "--output-dir", str(out), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    """A ``--mode all`` run on the packaged sample with the small template."""
    base = tmp_path_factory.mktemp("html_full")
    template = base / "template.json"
    template.write_text(json.dumps(SMALL_TEMPLATE), encoding="utf-8")
    return run_pipeline(base / "out", "--mode", "all", "--config", str(template))


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory) -> Path:
    """A ``--mode batch`` run: no streaming, benchmark, sweep or quality artifacts."""
    return run_pipeline(tmp_path_factory.mktemp("html_batch") / "out", "--mode", "batch")


def page_text(run_dir: Path) -> str:
    path = write_html_report(run_dir)
    assert path == run_dir / "reports" / "report.html"
    return path.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------ no browser


def test_page_has_every_section_and_fetches_nothing(full_run):
    text = page_text(full_run)
    assert text.startswith("<!DOCTYPE html>")
    for anchor in SECTION_IDS:
        assert f'<section id="{anchor}">' in text
    for needle in (
        "Dataset fingerprint",
        "Configuration",
        "Permutation tests",
        "Smallest attainable p",
        "95% CI low",
        'id="sweep-table"',
        "Time of the four operators",
        "Training rows vs held-out rows",
        "Missing ratio per raw column",
        "Outlier rates",
    ):
        assert needle in text, needle
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "@import" not in text and "url(" not in text
    sources = re.findall(r'\bsrc="([^"]*)"', text)
    assert len(sources) == 5  # three trade-off plots, operator profile, chunk memory
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert "<script src" not in text


def test_page_shows_the_report_values(full_run):
    text = page_text(full_run)
    report = json.loads((full_run / "reports" / "pipeline_report.json").read_text("utf-8"))
    assert report["dataset_fingerprint"]["sha256"] in text
    significance = report["benchmark"]["significance"]
    assert html.escape(significance["note"]) in text
    assert html.escape(report["benchmark"]["batch"]["latency_ci"]["note"]) in text
    sweep_rows = text.split('id="sweep-table"', 1)[1].split("</table>", 1)[0].count("<tr ")
    assert sweep_rows == len(report["constraint_experiment"]["settings"]) == 2


def test_same_artifacts_give_the_same_bytes(full_run):
    first = write_html_report(full_run).read_bytes()
    second = write_html_report(full_run).read_bytes()
    assert first == second
    # The atomic write leaves no temporary file behind.
    assert not [path for path in (full_run / "reports").iterdir() if path.name.startswith(".")]


def test_batch_only_run_renders(batch_run):
    text = page_text(batch_run)
    for anchor in SECTION_IDS:
        assert f'<section id="{anchor}">' in text
    assert "No streaming run in this directory" in text
    assert "No benchmark in this directory" in text
    assert "No constraint sweep in this directory" in text
    assert "No quality checks in this directory" in text
    assert "<img" not in text


def test_streaming_only_run_marks_chunks_over_the_budget(tmp_path):
    out = run_pipeline(tmp_path / "out", "--mode", "streaming", "--chunk-size", "64")
    text = page_text(out)
    assert "No benchmark in this directory" in text
    assert "No constraint sweep in this directory" in text
    assert text.count("<img") == 2  # operator profile and chunk memory

    # Mark two chunks as over the budget, as a tight budget would, and render again.
    path = out / "benchmarks" / "streaming_chunks.csv"
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) >= 3
    for row in rows[1:3]:
        row["memory_exceeded"] = "True"
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    marked = page_text(out)
    assert f"2 of {len(rows)} chunks over the budget" in marked
    memory = marked.split('<section id="memory">', 1)[1].split("</section>", 1)[0]
    assert memory.count(' class="flag">') == 2
    assert marked != text  # the plot and the table changed


def test_text_values_are_escaped(full_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(full_run, copy, ignore=shutil.ignore_patterns("intermediate"))
    path = copy / "reports" / "pipeline_report.json"
    report = json.loads(path.read_text("utf-8"))
    report["reproducibility"]["config"]["output_dir"] = "<script>alert('x')</script>&"
    report["quality"]["schema_issues"] = ["<b>bad</b> salary"]
    path.write_text(json.dumps(report), encoding="utf-8")
    text = page_text(copy)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;" in text
    assert "&lt;b&gt;bad&lt;/b&gt; salary" in text
    assert "<b>bad</b>" not in text and "alert('x')" not in text


def test_missing_run_directory_is_an_input_error(tmp_path):
    with pytest.raises(InputDataError, match="does not exist"):
        write_html_report(tmp_path / "nowhere")


# ------------------------------------------------------------------------------ browser


def chromium_path() -> str:
    candidates = [os.environ.get("NBA_PIPELINE_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip(
        "no Chromium on this machine (install Debian's package: apt-get install chromium); "
        "the browser test is skipped"
    )


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Visit:
    """A page opened from a file:// URL with every console error and request recorded."""

    def __init__(self, browser, path: Path) -> None:
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.requests: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        # Anything that is not the file itself or inline data is recorded and never sent.
        self.context.route(re.compile(r"^(?!file:|data:)"), self._block)
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("requestfailed", lambda request: self.failed.append(request.url))
        self.page.goto(path.resolve().as_uri(), wait_until="load")

    def _block(self, route) -> None:
        self.requests.append(route.request.url)
        route.abort()

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def assert_clean(self) -> None:
        assert self.errors == []
        assert self.failed == []
        offsite = [url for url in self.requests if not url.startswith(("file:", "data:"))]
        assert offsite == []

    def close(self) -> None:
        self.context.close()


def column_values(page, index: int) -> list[str]:
    return page.eval_on_selector_all(
        "#sweep-table tbody tr",
        "(rows, index) => rows.map(row => row.cells[index].getAttribute('data-sort'))",
        index,
    )


def row_texts(page) -> list[str]:
    return page.eval_on_selector_all(
        "#sweep-table tbody tr", "rows => rows.map(row => row.textContent)"
    )


def test_page_in_headless_chromium(browser, full_run):
    visit = Visit(browser, write_html_report(full_run))
    page = visit.page
    try:
        # Every image decodes to a real picture.
        widths = page.evaluate(
            "Promise.all(Array.from(document.images).map("
            "image => image.decode().then(() => image.naturalWidth)))"
        )
        assert len(widths) == 5
        assert all(width > 0 for width in widths)

        # Clicking a header sorts the sweep rows by that column, a second click reverses.
        headers = page.eval_on_selector_all(
            "#sweep-table thead th", "cells => cells.map(cell => cell.textContent)"
        )
        index = headers.index("preprocessing_latency_s")
        before_rows = sorted(row_texts(page))
        before = [float(value) for value in column_values(page, index)]
        assert len(set(before)) == len(before) > 1
        header = page.locator("#sweep-table thead th").nth(index)
        header.click()
        ascending = [float(value) for value in column_values(page, index)]
        assert ascending == sorted(before)
        assert header.get_attribute("aria-sort") == "ascending"
        header.click()
        descending = [float(value) for value in column_values(page, index)]
        assert descending == sorted(before, reverse=True)
        assert header.get_attribute("aria-sort") == "descending"
        assert sorted(row_texts(page)) == before_rows  # whole rows move together

        screenshot = page.screenshot(full_page=True)
        visit.assert_clean()
    finally:
        visit.close()
    assert_not_blank(screenshot)


def test_batch_only_page_in_headless_chromium(browser, batch_run):
    visit = Visit(browser, write_html_report(batch_run))
    try:
        assert visit.page.locator("section").count() == len(SECTION_IDS)
        assert_not_blank(visit.page.screenshot())
        visit.assert_clean()
    finally:
        visit.close()


def assert_not_blank(png: bytes) -> None:
    from PIL import Image, ImageStat

    image = Image.open(io.BytesIO(png)).convert("L")
    assert image.width > 100 and image.height > 100
    extrema = image.getextrema()
    assert extrema[0] != extrema[1], "the screenshot is a single colour"
    assert ImageStat.Stat(image).var[0] > 100.0
