"""The "Batch vs streaming" section: both modes side by side, then the benchmark."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .loading import RunArtifacts
from .markup import absent_note, esc, table
from .values import MISSING, dig, fmt, fmt_percent, num

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


def modes_section(art: RunArtifacts) -> str:
    modes = {mode: art.section(mode) for mode in ("batch", "streaming")}
    present = [mode for mode, section in modes.items() if section]
    if not present:
        return absent_note("Neither batch nor streaming ran in this directory.")
    parts = []
    absent = [mode for mode in modes if mode not in present]
    if absent:
        parts.append(
            absent_note(f"No {absent[0]} run in this directory (mode {present[0]} only).")
        )
    rows = []
    for label, path in MODE_ROWS:
        values = [dig(modes[mode], path) for mode in present]
        if all(value is None for value in values):
            continue  # not recorded by this run (energy without RAPL counters, chunks in batch)
        rows.append([label, *values])
    parts.append('<div class="scroll">')
    parts.append(table(["Measure", *present], rows, numeric_from=1))
    parts.append("</div>")
    reasons = _unique(
        str(reason)
        for mode in present
        if dig(modes[mode], ("energy", "energy_j")) is None
        and (reason := dig(modes[mode], ("energy", "reason")))
    )
    parts.extend(f'<p class="note">Energy not measured: {esc(r)}.</p>' for r in reasons)
    parts.append(_benchmark_block(art))
    return "".join(parts)


def _benchmark_block(art: RunArtifacts) -> str:
    benchmark = art.section("benchmark")
    if not benchmark:
        return "<h3>Benchmark</h3>" + absent_note("No benchmark in this directory.")
    parts = [
        "<h3>Benchmark: repeated runs with bootstrap confidence intervals</h3>",
        f'<p class="note">{esc(fmt(benchmark.get("repetitions")))} repetitions per mode '
        f"after {esc(fmt(benchmark.get('warmup_runs')))} warm-up run(s).</p>",
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
        confidence = fmt_percent(_first_ci(benchmark).get("confidence"))
        head = ["Mode", "Measure", "Mean", f"{confidence} CI low", f"{confidence} CI high", "n"]
        parts.append(table(head, rows, numeric_from=2))
        if method:
            parts.append(f'<p class="note">Interval: {esc(method)}.</p>')
        parts.extend(f'<p class="note">{esc(note)}</p>' for note in _unique(notes))
    significance = benchmark.get("significance")
    if isinstance(significance, dict) and significance:
        parts.append(_significance_block(significance))
    sizes = art.csv("benchmarks/latency_vs_data_size.csv")
    if sizes:
        parts.append("<h3>Latency against data size</h3>")
        columns = ["mode", "rows", "fraction", "latency_s", "throughput_rows_s", "repetitions"]
        columns = [column for column in columns if column in sizes[0]]
        parts.append(table(columns, [[row[c] for c in columns] for row in sizes], numeric_from=1))
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
        table(head, rows, numeric_from=1),
        f'<p class="note">Test: {esc(sig.get("test", MISSING))}; runs: '
        f"{esc(fmt(sig.get('n_batch_runs')))} batch, "
        f"{esc(fmt(sig.get('n_streaming_runs')))} streaming; seed "
        f"{esc(fmt(sig.get('seed')))}; p &lt; 0.05 attainable: "
        f"{esc(fmt(sig.get('can_reach_0_05')))}.</p>",
    ]
    if sig.get("note"):
        parts.append(f'<p class="note"><strong>Note:</strong> {esc(sig["note"])}</p>')
    return "".join(parts)


def _pvalue_verdict(pvalue, floor) -> str:
    p = num(pvalue)
    if p is None:
        return MISSING
    if p < 0.05:
        return "significant at 0.05"
    low = num(floor)
    if low is not None and low >= 0.05:
        return "cannot reach 0.05 with these runs"
    return "not significant at 0.05"


def _first_ci(benchmark: Mapping) -> Mapping:
    for mode in ("batch", "streaming"):
        for measure in ("latency_ci", "throughput_ci"):
            ci = dig(benchmark, (mode, measure))
            if isinstance(ci, Mapping):
                return ci
    return {}


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
