"""One self-contained HTML page that shows a finished run, built from its artifact directory.

>>> from nba_pipeline.html_report import write_html_report
>>> write_html_report("artifacts_edge")            # doctest: +SKIP
PosixPath('artifacts_edge/reports/report.html')

The page reads only what the run wrote (``reports/pipeline_report.json``, the CSV tables, the
chunk records and the trade-off PNGs) and fetches nothing: the images are base64 data URIs,
the style sheet and the small script that sorts the sweep table are inline, and a Content
Security Policy forbids every other source.  Two plots are drawn here from the tables (the
operator time per chunk and the chunk memory against the budget) with matplotlib's object
API on an Agg canvas and without the PNG "Software" entry.  The page carries no timestamp
of its own, so the same artifacts always give the same bytes.  A section whose artifacts are
absent (a ``--mode batch`` run has no streaming, benchmark or sweep) says so instead.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
import math
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .errors import InputDataError, OutputError

logger = logging.getLogger(__name__)

REPORT_NAME = "report.html"
OPERATORS = ("preprocess_s", "feature_engineering_s", "feature_selection_s", "encode_scale_s")
TRADEOFF_PLOTS = (
    (
        "latency_vs_accuracy.png",
        "Preprocessing latency against model R², coloured by the compute cap.",
    ),
    (
        "memory_vs_accuracy.png",
        "Peak memory against model R², coloured by the memory limit.",
    ),
    (
        "latency_memory_accuracy.png",
        "Peak memory against preprocessing latency, coloured by model R².",
    ),
)
#: Drift worth a look: a KS p-value under this, or a total variation distance over the next.
KS_PVALUE_FLAG = 0.05
TVD_FLAG = 0.1
PLOT_DPI = 110
#: Drop the "Software" entry matplotlib adds, which embeds its version.
PNG_METADATA = {"Software": None}
MISSING = "—"

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)

STYLE = """
:root { --fg: #1d232b; --muted: #5b6673; --line: #d7dde4; --band: #f3f5f8;
        --accent: #1f5fa8; --bad: #b3261e; --bad-bg: #fdecea; --ok: #1e7b3a; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); background: #fff; }
header { padding: 18px 28px 10px; border-bottom: 1px solid var(--line); background: var(--band); }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: var(--muted); }
nav { margin-top: 8px; display: flex; flex-wrap: wrap; gap: 4px 14px; }
nav a { color: var(--accent); text-decoration: none; }
main { padding: 6px 28px 40px; max-width: 1280px; }
section { margin-top: 26px; }
h2 { font-size: 18px; border-bottom: 2px solid var(--accent); padding-bottom: 3px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr));
        gap: 8px 28px; align-items: start; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr));
           gap: 8px 28px; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 4px 0 8px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left;
         vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
tr.flag td { background: var(--bad-bg); }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px;
         font-weight: 600; }
.badge.bad { background: var(--bad-bg); color: var(--bad); }
.badge.ok { background: #e6f4ea; color: var(--ok); }
.note { color: var(--muted); font-size: 13px; margin: 4px 0; }
.absent { color: var(--muted); font-style: italic; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th, table.sortable td { white-space: nowrap; }
table.sortable th::after { content: " \\2195"; color: #9aa4ae; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; color: var(--accent); }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; color: var(--accent); }
figure { margin: 8px 0 14px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; }
code { font-size: 12px; background: var(--band); padding: 0 3px; word-break: break-all; }
"""

# Sorts a table.sortable by the clicked header: numbers by value (cells carry data-sort),
# text alphabetically, missing values last, ties in the original order; a second click on
# the same header reverses the order.
SCRIPT = """
(function () {
  "use strict";
  function key(cell) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null) { return { text: cell.textContent.trim() }; }
    if (raw === "") { return { missing: true }; }
    var number = Number(raw);
    return isNaN(number) ? { text: raw } : { number: number };
  }
  function compare(a, b) {
    if (a.missing || b.missing) { return (a.missing ? 1 : 0) - (b.missing ? 1 : 0); }
    if (a.number !== undefined && b.number !== undefined) { return a.number - b.number; }
    return String(a.text).localeCompare(String(b.text));
  }
  function sortBy(table, header, index) {
    var body = table.tBodies[0];
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows).map(function (row, position) {
      return { row: row, key: key(row.cells[index]), position: position };
    });
    rows.sort(function (a, b) {
      if (a.key.missing !== b.key.missing) { return compare(a.key, b.key); }
      var order = compare(a.key, b.key);
      if (!ascending) { order = -order; }
      return order || Number(a.row.getAttribute("data-index"))
        - Number(b.row.getAttribute("data-index"));
    });
    rows.forEach(function (item) { body.appendChild(item.row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, index) {
      header.tabIndex = 0;
      header.addEventListener("click", function () { sortBy(table, header, index); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortBy(table, header, index);
        }
      });
    });
  });
})();
"""


def write_html_report(run_dir: str | os.PathLike) -> Path:
    """Write ``reports/report.html`` for the run in ``run_dir`` and return its path.

    The file is written to a temporary sibling and moved into place with :func:`os.replace`.
    Raises :class:`InputDataError` when ``run_dir`` is not a directory or an artifact in it
    cannot be parsed, and :class:`OutputError` when the page cannot be written.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise InputDataError(f"run directory {run} does not exist or is not a directory")
    page = render_html_report(run)
    target = run / "reports" / REPORT_NAME
    # A sibling opened like any other artifact (so the umask applies), then renamed.
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with temporary.open("w", encoding="utf-8", newline="\n") as stream:
            stream.write(page)
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {exc.strerror}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    logger.info("wrote %s (%d bytes)", target, len(page.encode("utf-8")))
    return target


def render_html_report(run_dir: str | os.PathLike) -> str:
    """Return the page that :func:`write_html_report` writes for ``run_dir``, as a string."""
    artifacts = _Artifacts(Path(run_dir))
    sections = [
        ("dataset", "Dataset and configuration", _dataset_section(artifacts)),
        ("modes", "Batch vs streaming", _modes_section(artifacts)),
        ("sweep", "Constraint sweep", _sweep_section(artifacts)),
        ("tradeoffs", "Trade-off plots", _tradeoff_section(artifacts)),
        ("operators", "Operator profile", _operator_section(artifacts)),
        ("memory", "Chunk memory", _memory_section(artifacts)),
        ("quality", "Data quality", _quality_section(artifacts)),
    ]
    fingerprint = artifacts.report.get("dataset_fingerprint") or {}
    subtitle = "Built from the artifacts of one run"
    if fingerprint.get("source"):
        subtitle += f" on {Path(str(fingerprint['source'])).name}"
    if fingerprint.get("row_count") is not None:
        subtitle += f" ({_fmt(fingerprint['row_count'])} rows)"
    nav = "".join(f'<a href="#{anchor}">{_esc(title)}</a>' for anchor, title, _ in sections)
    body = "".join(
        f'<section id="{anchor}"><h2>{_esc(title)}</h2>{content}</section>\n'
        for anchor, title, content in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>nba-pipeline run report</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<header><h1>nba-pipeline run report</h1><p>{_esc(subtitle)}</p>"
        f"<nav>{nav}</nav></header>\n<main>\n{body}</main>\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


# ------------------------------------------------------------------------------ artifacts


class _Artifacts:
    """Reads the artifacts of one run directory; an absent file reads as nothing."""

    def __init__(self, run: Path) -> None:
        self.run = run
        self.report: dict = self._json(run / "reports" / "pipeline_report.json") or {}

    def section(self, name: str) -> dict:
        value = self.report.get(name)
        return value if isinstance(value, dict) else {}

    def csv(self, relative: str) -> list[dict[str, str]] | None:
        path = self.run / relative
        if not path.is_file():
            return None
        try:
            with path.open(newline="", encoding="utf-8") as stream:
                return list(csv.DictReader(stream))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InputDataError(f"cannot read {path}: {exc}") from None

    def jsonl(self, relative: str) -> list[dict] | None:
        path = self.run / relative
        if not path.is_file():
            return None
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            return [json.loads(line) for line in lines if line.strip()]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputDataError(f"cannot read {path}: {exc}") from None

    def png(self, relative: str) -> bytes | None:
        path = self.run / relative
        if not path.is_file():
            return None
        data = path.read_bytes()
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            logger.warning("%s is not a PNG image; left out of the report", path)
            return None
        return data

    @staticmethod
    def _json(path: Path) -> dict | None:
        if not path.is_file():
            logger.warning("%s is absent: the report shows only the tables and images", path)
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputDataError(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict):
            raise InputDataError(f"{path} does not hold a JSON object")
        return data


# ------------------------------------------------------------------------------ sections


def _dataset_section(art: _Artifacts) -> str:
    fingerprint = art.section("dataset_fingerprint")
    repro = art.section("reproducibility")
    if not fingerprint and not repro and not art.section("run"):
        return _absent("No dataset fingerprint or configuration in reports/pipeline_report.json.")
    parts = ['<div class="grid"><div>']
    if fingerprint:
        parts.append("<h3>Dataset fingerprint</h3>")
        parts.append(_kv_table(fingerprint, code_keys={"sha256", "source"}))
    run = art.section("run")
    if run:
        parts.append("<h3>Run</h3>" + _kv_table(run, code_keys=set(run)))
    if repro:
        environment = {key: value for key, value in repro.items() if not isinstance(value, dict)}
        parts.append("<h3>Environment</h3>" + _kv_table(environment))
    parts.append("</div><div>")
    config = repro.get("config")
    if isinstance(config, dict):
        parts.append("<h3>Configuration</h3>" + _kv_table(config))
    parts.append("</div><div>")
    if isinstance(repro.get("dependencies"), dict):
        parts.append("<h3>Library versions</h3>" + _kv_table(repro["dependencies"]))
    scaling = art.section("scaling")
    if scaling:
        parts.append("<h3>Scaling</h3>" + _kv_table(scaling))
    parts.append("</div></div>")
    return "".join(parts)


MODE_ROWS = (
    ("Preprocessing latency (s)", ("latency_s",)),
    ("Throughput (rows/s)", ("throughput_rows_s",)),
    ("Peak memory (MiB RSS)", ("memory", "peak_rss_mb")),
    ("Memory budget (MiB)", ("memory", "budget_mb")),
    ("Baseline RSS before the run (MiB)", ("memory", "baseline_rss_mb")),
    ("Model R²", ("model", "r2")),
    ("Model RMSE ($)", ("model", "rmse")),
    ("Model MAE ($)", ("model", "mae")),
    ("Training time (s)", ("model", "training_time_s")),
    ("Model", ("model", "kind")),
    ("Rows processed", ("rows_processed",)),
    ("Rows quarantined", ("rows_quarantined",)),
    ("Chunks", ("chunks",)),
    ("Chunks over budget", ("memory", "chunks_over_budget")),
    ("Compute cap", ("compute", "cap")),
    ("Measured CPU utilisation", ("compute", "measured_cpu_utilization")),
    ("Energy (J)", ("energy", "energy_j")),
)


def _modes_section(art: _Artifacts) -> str:
    modes = {mode: art.section(mode) for mode in ("batch", "streaming")}
    present = [mode for mode, section in modes.items() if section]
    if not present:
        return _absent("Neither batch nor streaming ran in this directory.")
    parts = []
    absent = [mode for mode in modes if mode not in present]
    if absent:
        parts.append(_absent(f"No {absent[0]} run in this directory (mode {present[0]} only)."))
    rows = []
    for label, path in MODE_ROWS:
        values = [_dig(modes[mode], path) for mode in present]
        if all(value is None for value in values):
            continue  # not recorded by this run (energy without RAPL counters, chunks in batch)
        rows.append([label, *values])
    parts.append('<div class="scroll">')
    parts.append(_table(["Measure", *present], rows, numeric_from=1))
    parts.append("</div>")
    reasons = _unique(
        str(reason)
        for mode in present
        if _dig(modes[mode], ("energy", "energy_j")) is None
        and (reason := _dig(modes[mode], ("energy", "reason")))
    )
    parts.extend(f'<p class="note">Energy not measured: {_esc(r)}.</p>' for r in reasons)
    parts.append(_benchmark_block(art))
    return "".join(parts)


def _benchmark_block(art: _Artifacts) -> str:
    benchmark = art.section("benchmark")
    if not benchmark:
        return "<h3>Benchmark</h3>" + _absent("No benchmark in this directory.")
    parts = [
        "<h3>Benchmark: repeated runs with bootstrap confidence intervals</h3>",
        f'<p class="note">{_esc(_fmt(benchmark.get("repetitions")))} repetitions per mode '
        f"after {_esc(_fmt(benchmark.get('warmup_runs')))} warm-up run(s).</p>",
    ]
    rows, notes, method = [], [], None
    for mode in ("batch", "streaming"):
        section = benchmark.get(mode) or {}
        for measure, label in (
            ("latency_ci", "Latency (s)"),
            ("throughput_ci", "Throughput (rows/s)"),
        ):
            ci = section.get(measure)
            if not isinstance(ci, dict):
                continue
            rows.append(
                [mode, label, ci.get("mean"), ci.get("ci_low"), ci.get("ci_high"), ci.get("n")]
            )
            if ci.get("note"):
                notes.append(str(ci["note"]))
            method = ci.get("method") or method
    if rows:
        confidence = _fmt_percent(_first_ci(benchmark).get("confidence"))
        head = ["Mode", "Measure", "Mean", f"{confidence} CI low", f"{confidence} CI high", "n"]
        parts.append(_table(head, rows, numeric_from=2))
        if method:
            parts.append(f'<p class="note">Interval: {_esc(method)}.</p>')
        parts.extend(f'<p class="note">{_esc(note)}</p>' for note in _unique(notes))
    significance = benchmark.get("significance")
    if isinstance(significance, dict) and significance:
        parts.append(_significance_block(significance))
    sizes = art.csv("benchmarks/latency_vs_data_size.csv")
    if sizes:
        parts.append("<h3>Latency against data size</h3>")
        columns = ["mode", "rows", "fraction", "latency_s", "throughput_rows_s", "repetitions"]
        columns = [column for column in columns if column in sizes[0]]
        parts.append(_table(columns, [[row[c] for c in columns] for row in sizes], numeric_from=1))
    return "".join(parts)


def _significance_block(sig: dict) -> str:
    rows = []
    for measure, label, unit in (
        ("latency", "Latency", "s"),
        ("throughput", "Throughput", "rows_s"),
    ):
        if f"{measure}_pvalue" not in sig:
            continue
        pvalue = sig.get(f"{measure}_pvalue")
        floor = sig.get(f"{measure}_min_attainable_pvalue")
        rows.append(
            [
                f"{label} ({unit.replace('_', '/')})",
                sig.get(f"batch_{measure}_mean_{unit}"),
                sig.get(f"streaming_{measure}_mean_{unit}"),
                sig.get(f"{measure}_mean_delta_{unit}"),
                pvalue,
                floor,
                sig.get(f"{measure}_exact"),
                _pvalue_verdict(pvalue, floor),
            ]
        )
    head = [
        "Measure",
        "Batch mean",
        "Streaming mean",
        "Mean delta (streaming − batch)",
        "p-value",
        "Smallest attainable p",
        "Exact test",
        "Reading",
    ]
    parts = [
        "<h3>Permutation tests (batch vs streaming)</h3>",
        _table(head, rows, numeric_from=1),
        f'<p class="note">Test: {_esc(sig.get("test", MISSING))}; runs: '
        f"{_esc(_fmt(sig.get('n_batch_runs')))} batch, "
        f"{_esc(_fmt(sig.get('n_streaming_runs')))} streaming; seed "
        f"{_esc(_fmt(sig.get('seed')))}; p &lt; 0.05 attainable: "
        f"{_esc(_fmt(sig.get('can_reach_0_05')))}.</p>",
    ]
    if sig.get("note"):
        parts.append(f'<p class="note"><strong>Note:</strong> {_esc(sig["note"])}</p>')
    return "".join(parts)


def _pvalue_verdict(pvalue, floor) -> str:
    p = _num(pvalue)
    if p is None:
        return MISSING
    if p < 0.05:
        return "significant at 0.05"
    low = _num(floor)
    if low is not None and low >= 0.05:
        return "cannot reach 0.05 with these runs"
    return "not significant at 0.05"


def _sweep_section(art: _Artifacts) -> str:
    rows = art.csv("benchmarks/constraint_experiment.csv")
    if not rows:
        return _absent(
            "No constraint sweep in this directory (benchmarks/constraint_experiment.csv)."
        )
    columns = list(rows[0])
    constant_text = [
        column
        for column in columns
        if _num(rows[0][column]) is None and len({row[column] for row in rows}) == 1
    ]
    shown = [column for column in columns if column not in constant_text]
    parts = [
        f'<p class="note">{len(rows)} settings; click a column header to sort (click again to '
        "reverse). <code>chunk_size</code> is the largest chunk that actually ran, "
        "<code>chunk_size_requested</code> the setting.</p>",
        '<div class="scroll">',
        _table(
            shown,
            [[row[column] for column in shown] for row in rows],
            table_id="sweep-table",
            sortable=True,
        ),
        "</div>",
    ]
    for column in constant_text:
        parts.append(
            f'<p class="note">{_esc(column)} (every setting): {_esc(rows[0][column])}</p>'
        )
    enforcement = art.section("constraint_experiment").get("enforcement")
    if isinstance(enforcement, dict):
        parts.append("<h3>How the limits were applied</h3>" + _kv_table(enforcement))
    return "".join(parts)


def _tradeoff_section(art: _Artifacts) -> str:
    figures = []
    for name, caption in TRADEOFF_PLOTS:
        data = art.png(f"benchmarks/{name}")
        if data is not None:
            figures.append(_figure(data, f"{name}: {caption}", alt=caption))
    if not figures:
        return _absent("No trade-off plots in this directory (they come with the sweep).")
    return '<div class="figures">' + "".join(figures) + "</div>"


def _operator_section(art: _Artifacts) -> str:
    profile = art.csv("profiles/operator_profile.csv")
    parts = []
    if profile:
        operators = [name for name in OPERATORS if name in profile[0]]
        png = _operator_plot(profile, operators)
        parts.append(
            _figure(
                png,
                "Time of the four operators in every streaming chunk (profiles/"
                "operator_profile.csv), stacked.",
                alt="Stacked bar chart of operator time per chunk",
            )
        )
    totals = []
    for mode in ("batch", "streaming"):
        profile_s = art.section(mode).get("operator_profile_s")
        if isinstance(profile_s, dict):
            totals.append((mode, profile_s))
    if totals:
        operators = list(dict.fromkeys(key for _, profile_s in totals for key in profile_s))
        rows = [[op, *[profile_s.get(op) for _, profile_s in totals]] for op in operators]
        head = ["Operator (total s)", *[mode for mode, _ in totals]]
        parts.append("<h3>Operator totals per mode</h3>" + _table(head, rows, numeric_from=1))
    if not parts:
        return _absent("No operator profile in this directory (it comes with streaming).")
    return "".join(parts)


def _memory_section(art: _Artifacts) -> str:
    chunks = art.csv("benchmarks/streaming_chunks.csv")
    source = "benchmarks/streaming_chunks.csv"
    if not chunks:
        chunks = art.jsonl("reports/streaming_chunks.jsonl")
        source = "reports/streaming_chunks.jsonl"
    if not chunks:
        return _absent("No streaming chunk records in this directory.")
    memory = art.section("streaming").get("memory") or {}
    budget = _num(memory.get("budget_mb"))
    if budget is None:
        budget = _num(chunks[0].get("memory_budget_mb"))
    exceeded = [row for row in chunks if _truthy(row.get("memory_exceeded"))]
    png = _memory_plot(chunks, budget)
    parts = [
        _figure(
            png,
            f"RSS before and after every streaming chunk ({source}), the budget as a dashed "
            "line, chunks that went over it marked with a red cross.",
            alt="Line chart of memory before and after each chunk with the memory budget",
        ),
        f'<p class="note">{len(exceeded)} of {len(chunks)} chunks over the budget of '
        f"{_esc(_fmt(budget))} MiB; retries: "
        f"{_esc(_fmt(sum(int(_num(row.get('retries')) or 0) for row in chunks)))}.</p>",
    ]
    columns = [
        "chunk_id",
        "rows",
        "chunk_size",
        "latency_s",
        "throughput_rows_s",
        "memory_before_mb",
        "memory_after_mb",
        "memory_peak_mb",
        "memory_exceeded",
        "retries",
    ]
    columns = [column for column in columns if column in chunks[0]]
    flagged = [_truthy(row.get("memory_exceeded")) for row in chunks]
    parts.append('<div class="scroll">')
    parts.append(_table(columns, [[row.get(c) for c in columns] for row in chunks], flags=flagged))
    parts.append("</div>")
    return "".join(parts)


def _quality_section(art: _Artifacts) -> str:
    quality = art.section("quality")
    if not quality:
        return _absent("No quality checks in this directory (they run with --mode all).")
    schema_ok = quality.get("schema_ok")
    badge = (
        '<span class="badge ok">schema ok</span>'
        if schema_ok
        else '<span class="badge bad">schema failed</span>'
    )
    parts = [f"<p>{badge}</p>"]
    issues = quality.get("schema_issues") or []
    if issues:
        items = "".join(f"<li>{_esc(issue)}</li>" for issue in issues)
        parts.append(f"<h3>Schema issues</h3><ul>{items}</ul>")
    else:
        parts.append('<p class="note">No schema issues.</p>')
    counts = {
        key: quality.get(key)
        for key in ("rows_read", "rows_processed", "rows_quarantined", "rows_accounted")
        if key in quality
    }
    parts.append('<div class="grid"><div>')
    if counts:
        parts.append("<h3>Rows</h3>" + _kv_table(counts))
    split = quality.get("split")
    if isinstance(split, dict):
        parts.append("<h3>Train / held-out split</h3>" + _kv_table(split))
    parts.append("</div><div>")
    missing = quality.get("missing_ratios_raw")
    if isinstance(missing, dict):
        rows = [[column, ratio] for column, ratio in missing.items()]
        parts.append("<h3>Missing ratio per raw column (before imputation)</h3>")
        parts.append(_table(["Column", "Missing ratio"], rows, numeric_from=1))
    parts.append("</div><div>")
    outliers = quality.get("outliers")
    if isinstance(outliers, dict):
        parts.append("<h3>Outlier rates</h3>")
        if outliers.get("method"):
            parts.append(f'<p class="note">{_esc(outliers["method"])}</p>')
        rows = [["any feature", outliers.get("any_rate")]]
        rows += [[column, rate] for column, rate in (outliers.get("per_column") or {}).items()]
        parts.append(_table(["Feature", "Outlier rate"], rows, numeric_from=1))
    parts.append("</div></div>")
    examples = quality.get("quarantine_examples") or []
    if examples:
        columns = list(dict.fromkeys(key for example in examples for key in example))
        parts.append("<h3>Quarantined rows (examples)</h3>")
        parts.append(
            '<div class="scroll">'
            + _table(columns, [[example.get(c) for c in columns] for example in examples])
            + "</div>"
        )
    drift = quality.get("drift")
    if isinstance(drift, dict) and drift:
        parts.append(
            f'<h3>Drift</h3><p class="note">Numeric features: two-sample Kolmogorov-Smirnov '
            f"test, flagged when p &lt; {KS_PVALUE_FLAG}; categorical features: total "
            f"variation distance, flagged when above {TVD_FLAG}.</p>"
        )
        for name, features in drift.items():
            if isinstance(features, dict):
                parts.append(_drift_table(name, features))
    return "".join(parts)


def _drift_table(name: str, features: Mapping[str, dict]) -> str:
    rows, flags = [], []
    for feature, result in features.items():
        flagged = _drift_flag(result)
        flags.append(flagged)
        rows.append(
            [
                feature,
                result.get("test"),
                result.get("statistic"),
                result.get("pvalue"),
                result.get("n_reference"),
                result.get("n_current"),
                "drift" if flagged else (result.get("note") or ""),
            ]
        )
    title = _drift_title(name)
    head = ["Feature", "Test", "Statistic", "p-value", "n reference", "n current", "Flag"]
    count = sum(flags)
    summary = f"{count} of {len(rows)} features flagged"
    return (
        f'<h4>{_esc(title)} <span class="badge {"bad" if count else "ok"}">'
        f"{_esc(summary)}</span></h4>"
        + '<div class="scroll">'
        + _table(head, rows, numeric_from=2, flags=flags)
        + "</div>"
    )


def _drift_title(name: str) -> str:
    if name == "train_vs_test":
        return "Training rows vs held-out rows"
    if name.startswith("season_") and "_vs_" in name:
        first, second = name.removeprefix("season_").split("_vs_", 1)
        return f"Season {first.upper()} vs season {second.upper()}".replace("NBA2K", "NBA2k")
    return name.replace("_", " ")


def _drift_flag(result: Mapping) -> bool:
    if result.get("test") == "total_variation_distance":
        statistic = _num(result.get("statistic"))
        return statistic is not None and statistic > TVD_FLAG
    pvalue = _num(result.get("pvalue"))
    return pvalue is not None and pvalue < KS_PVALUE_FLAG


# ------------------------------------------------------------------------------ plots


def _operator_plot(profile: Sequence[Mapping], operators: Sequence[str]) -> bytes:
    figure, axes = _figure_and_axes((9.0, 3.8))
    chunk_ids = [_chunk_label(row.get("chunk_id"), index) for index, row in enumerate(profile)]
    positions = list(range(len(profile)))
    bottom = [0.0] * len(profile)
    colours = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")
    for operator, colour in zip(operators, colours, strict=False):
        heights = [(_num(row.get(operator)) or 0.0) * 1000.0 for row in profile]
        axes.bar(
            positions,
            heights,
            bottom=bottom,
            color=colour,
            label=operator.removesuffix("_s").replace("_", " "),
            width=0.8,
            zorder=2,
        )
        bottom = [low + high for low, high in zip(bottom, heights, strict=True)]
    _chunk_ticks(axes, positions, chunk_ids)
    axes.set_xlabel("Streaming chunk")
    axes.set_ylabel("Operator time (ms)")
    axes.set_title(f"Operator time per chunk ({len(profile)} chunks)")
    axes.grid(True, axis="y", linestyle=":", linewidth=0.8, zorder=0)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return _png(figure)


def _memory_plot(chunks: Sequence[Mapping], budget: float | None) -> bytes:
    figure, axes = _figure_and_axes((9.0, 3.8))
    positions = list(range(len(chunks)))
    labels = [_chunk_label(row.get("chunk_id"), index) for index, row in enumerate(chunks)]
    before = [_nan(row.get("memory_before_mb")) for row in chunks]
    after = [_nan(row.get("memory_after_mb")) for row in chunks]
    axes.plot(positions, before, marker="o", markersize=3, label="before chunk", zorder=3)
    axes.plot(positions, after, marker="s", markersize=3, label="after chunk", zorder=3)
    if any("memory_peak_mb" in row for row in chunks):
        peak = [_nan(row.get("memory_peak_mb")) for row in chunks]
        axes.plot(positions, peak, linestyle=":", color="#7f7f7f", label="peak in chunk")
    else:
        peak = after
    if budget is not None:
        axes.axhline(budget, color="#b3261e", linestyle="--", linewidth=1.2, label="budget")
    over = [index for index, row in enumerate(chunks) if _truthy(row.get("memory_exceeded"))]
    if over:
        marks = [peak[index] if math.isfinite(peak[index]) else after[index] for index in over]
        axes.scatter(over, marks, marker="x", s=60, color="#b3261e", label="over budget", zorder=4)
    _chunk_ticks(axes, positions, labels)
    axes.ticklabel_format(axis="y", useOffset=False)
    axes.set_xlabel("Streaming chunk (in processing order)")
    axes.set_ylabel("Process RSS (MiB)")
    budget_text = f"budget {_fmt(budget)} MiB" if budget is not None else "no budget recorded"
    axes.set_title(f"Chunk memory, {budget_text}, {len(over)} of {len(chunks)} chunks over")
    axes.grid(True, linestyle=":", linewidth=0.8, zorder=0)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return _png(figure)


def _figure_and_axes(size: tuple[float, float]):
    # Imported here: only the plotting sections need matplotlib.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=PLOT_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _chunk_ticks(axes, positions: list[int], labels: list[str]) -> None:
    step = max(1, math.ceil(len(positions) / 30))
    axes.set_xticks(positions[::step], labels[::step], fontsize=8)
    if positions:
        axes.set_xlim(-0.6, len(positions) - 0.4)


def _chunk_label(value, index: int) -> str:
    number = _num(value)
    if number is None:
        return str(index + 1)
    return str(int(number)) if float(number).is_integer() else _fmt(number)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PLOT_DPI, metadata=PNG_METADATA)
    return buffer.getvalue()


# ------------------------------------------------------------------------------ HTML helpers


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _absent(text: str) -> str:
    return f'<p class="absent">{_esc(text)}</p>'


def _figure(png: bytes, caption: str, *, alt: str) -> str:
    width, height = struct.unpack(">II", png[16:24])
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
        f'alt="{_esc(alt)}"><figcaption>{_esc(caption)}</figcaption></figure>'
    )


def _kv_table(mapping: Mapping, *, code_keys: Iterable[str] = ()) -> str:
    code_keys = set(code_keys)
    rows = []
    for key, value in mapping.items():
        text = _fmt(value)
        cell = f"<code>{_esc(text)}</code>" if key in code_keys else _esc(text)
        css = ' class="num"' if _num(value) is not None and not isinstance(value, bool) else ""
        rows.append(f"<tr><th>{_esc(key)}</th><td{css}>{cell}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _table(
    head: Sequence[str],
    rows: Sequence[Sequence],
    *,
    numeric_from: int = 0,
    flags: Sequence[bool] | None = None,
    table_id: str | None = None,
    sortable: bool = False,
) -> str:
    attributes = f' id="{_esc(table_id)}"' if table_id else ""
    attributes += ' class="sortable"' if sortable else ""
    header = "".join(f'<th scope="col">{_esc(column)}</th>' for column in head)
    body = []
    for index, row in enumerate(rows):
        css = ' class="flag"' if flags is not None and flags[index] else ""
        cells = []
        for position, value in enumerate(row):
            number = _num(value) if position >= numeric_from else None
            css_cell = ' class="num"' if number is not None else ""
            sort = ""
            if sortable:
                sort = f' data-sort="{_esc(_sort_key(value))}"'
            cells.append(f"<td{css_cell}{sort}>{_esc(_fmt(value))}</td>")
        body.append(f'<tr data-index="{index}"{css}>' + "".join(cells) + "</tr>")
    return (
        f"<table{attributes}><thead><tr>{header}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _sort_key(value) -> str:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return ""
    number = _num(value)
    if number is None:
        return str(value)
    return repr(float(number)) if math.isfinite(number) else ""


# ------------------------------------------------------------------------------ values


def _dig(mapping: Mapping, path: Sequence[str]):
    value = mapping
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _num(value) -> float | None:
    """``value`` as a float when it is a number or a numeric string, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text or text.lower() in ("true", "false", "nan", "inf", "-inf"):
            return None
        try:
            return float(text)
        except ValueError:
            return None
    return None


def _nan(value) -> float:
    number = _num(value)
    return number if number is not None else math.nan


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _fmt(value) -> str:
    """A short, locale-free rendering of a report value."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        if value.strip().lower() in ("true", "false"):
            return "yes" if value.strip().lower() == "true" else "no"
        if value.strip() == "":
            return MISSING
        number = _num(value)
        if number is None:
            return value
        if number.is_integer() and "." not in value and "e" not in value.lower():
            return f"{int(number):,}"
        value = number
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return _fmt_float(value)
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _fmt_float(value: float) -> str:
    if not math.isfinite(value):
        return MISSING
    magnitude = abs(value)
    if value == 0.0:
        return "0"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if value.is_integer():
        return f"{value:g}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{value:.4g}"


def _fmt_percent(value) -> str:
    number = _num(value)
    if number is None:
        return ""
    return f"{number * 100:g}%"


def _first_ci(benchmark: Mapping) -> Mapping:
    for mode in ("batch", "streaming"):
        for measure in ("latency_ci", "throughput_ci"):
            ci = _dig(benchmark, (mode, measure))
            if isinstance(ci, Mapping):
                return ci
    return {}


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
