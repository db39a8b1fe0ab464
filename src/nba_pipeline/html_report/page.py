"""The page itself: its head, style sheet and script, the sections in order, and writing it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import InputDataError, OutputError
from .loading import RunArtifacts
from .markup import esc
from .modes import modes_section
from .quality import quality_section
from .sections import (
    dataset_section,
    memory_section,
    operator_section,
    sweep_section,
    tradeoff_section,
)
from .values import fmt

logger = logging.getLogger(__package__)

REPORT_NAME = "report.html"


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
    artifacts = RunArtifacts(Path(run_dir))
    sections = [
        ("dataset", "Dataset and configuration", dataset_section(artifacts)),
        ("modes", "Batch vs streaming", modes_section(artifacts)),
        ("sweep", "Constraint sweep", sweep_section(artifacts)),
        ("tradeoffs", "Trade-off plots", tradeoff_section(artifacts)),
        ("operators", "Operator profile", operator_section(artifacts)),
        ("memory", "Chunk memory", memory_section(artifacts)),
        ("quality", "Data quality", quality_section(artifacts)),
    ]
    fingerprint = artifacts.report.get("dataset_fingerprint") or {}
    subtitle = "Built from the artifacts of one run"
    if fingerprint.get("source"):
        subtitle += f" on {Path(str(fingerprint['source'])).name}"
    if fingerprint.get("row_count") is not None:
        subtitle += f" ({fmt(fingerprint['row_count'])} rows)"
    nav = "".join(f'<a href="#{anchor}">{esc(title)}</a>' for anchor, title, _ in sections)
    body = "".join(
        f'<section id="{anchor}"><h2>{esc(title)}</h2>{content}</section>\n'
        for anchor, title, content in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>nba-pipeline run report</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<header><h1>nba-pipeline run report</h1><p>{esc(subtitle)}</p>"
        f"<nav>{nav}</nav></header>\n<main>\n{body}</main>\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
