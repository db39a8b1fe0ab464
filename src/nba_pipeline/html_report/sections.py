"""Sections of the page: dataset and configuration, sweep, trade-offs, operators, memory."""

from __future__ import annotations

from .figures import memory_plot, operator_plot
from .loading import RunArtifacts
from .markup import absent_note, esc, figure, kv_table, table
from .values import fmt, num, truthy

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


def dataset_section(art: RunArtifacts) -> str:
    fingerprint = art.section("dataset_fingerprint")
    repro = art.section("reproducibility")
    if not fingerprint and not repro and not art.section("run"):
        return absent_note(
            "No dataset fingerprint or configuration in reports/pipeline_report.json."
        )
    parts = ['<div class="grid"><div>']
    if fingerprint:
        parts.append("<h3>Dataset fingerprint</h3>")
        parts.append(kv_table(fingerprint, code_keys={"sha256", "source"}))
    run = art.section("run")
    if run:
        parts.append("<h3>Run</h3>" + kv_table(run, code_keys=set(run)))
    if repro:
        environment = {key: value for key, value in repro.items() if not isinstance(value, dict)}
        parts.append("<h3>Environment</h3>" + kv_table(environment))
    parts.append("</div><div>")
    config = repro.get("config")
    if isinstance(config, dict):
        parts.append("<h3>Configuration</h3>" + kv_table(config))
    parts.append("</div><div>")
    if isinstance(repro.get("dependencies"), dict):
        parts.append("<h3>Library versions</h3>" + kv_table(repro["dependencies"]))
    scaling = art.section("scaling")
    if scaling:
        # The list of every task (worker, host, times) stays in the JSON report.
        summary = {key: value for key, value in scaling.items() if key != "tasks"}
        parts.append("<h3>Scaling</h3>" + kv_table(summary))
    parts.append("</div></div>")
    return "".join(parts)


def sweep_section(art: RunArtifacts) -> str:
    rows = art.csv("benchmarks/constraint_experiment.csv")
    if not rows:
        return absent_note(
            "No constraint sweep in this directory (benchmarks/constraint_experiment.csv)."
        )
    columns = list(rows[0])
    constant_text = [
        column
        for column in columns
        if num(rows[0][column]) is None and len({row[column] for row in rows}) == 1
    ]
    shown = [column for column in columns if column not in constant_text]
    parts = [
        f'<p class="note">{len(rows)} settings; click a column header to sort (click again to '
        "reverse). <code>chunk_size</code> is the largest chunk that actually ran, "
        "<code>chunk_size_requested</code> the setting.</p>",
        '<div class="scroll">',
        table(
            shown,
            [[row[column] for column in shown] for row in rows],
            table_id="sweep-table",
            sortable=True,
        ),
        "</div>",
    ]
    for column in constant_text:
        parts.append(f'<p class="note">{esc(column)} (every setting): {esc(rows[0][column])}</p>')
    enforcement = art.section("constraint_experiment").get("enforcement")
    if isinstance(enforcement, dict):
        parts.append("<h3>How the limits were applied</h3>" + kv_table(enforcement))
    return "".join(parts)


def tradeoff_section(art: RunArtifacts) -> str:
    figures = []
    for name, caption in TRADEOFF_PLOTS:
        data = art.png(f"benchmarks/{name}")
        if data is not None:
            figures.append(figure(data, f"{name}: {caption}", alt=caption))
    if not figures:
        return absent_note("No trade-off plots in this directory (they come with the sweep).")
    return '<div class="figures">' + "".join(figures) + "</div>"


def operator_section(art: RunArtifacts) -> str:
    profile = art.csv("profiles/operator_profile.csv")
    parts = []
    if profile:
        operators = [name for name in OPERATORS if name in profile[0]]
        png = operator_plot(profile, operators)
        parts.append(
            figure(
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
        parts.append("<h3>Operator totals per mode</h3>" + table(head, rows, numeric_from=1))
    if not parts:
        return absent_note("No operator profile in this directory (it comes with streaming).")
    return "".join(parts)


def memory_section(art: RunArtifacts) -> str:
    chunks = art.csv("benchmarks/streaming_chunks.csv")
    source = "benchmarks/streaming_chunks.csv"
    if not chunks:
        chunks = art.jsonl("reports/streaming_chunks.jsonl")
        source = "reports/streaming_chunks.jsonl"
    if not chunks:
        return absent_note("No streaming chunk records in this directory.")
    memory = art.section("streaming").get("memory") or {}
    budget = num(memory.get("budget_mb"))
    if budget is None:
        budget = num(chunks[0].get("memory_budget_mb"))
    exceeded = [row for row in chunks if truthy(row.get("memory_exceeded"))]
    png = memory_plot(chunks, budget)
    parts = [
        figure(
            png,
            f"RSS before and after every streaming chunk ({source}), the budget as a dashed "
            "line, chunks that went over it marked with a red cross.",
            alt="Line chart of memory before and after each chunk with the memory budget",
        ),
        f'<p class="note">{len(exceeded)} of {len(chunks)} chunks over the budget of '
        f"{esc(fmt(budget))} MiB; retries: "
        f"{esc(fmt(sum(int(num(row.get('retries')) or 0) for row in chunks)))}.</p>",
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
    flagged = [truthy(row.get("memory_exceeded")) for row in chunks]
    parts.append('<div class="scroll">')
    parts.append(table(columns, [[row.get(c) for c in columns] for row in chunks], flags=flagged))
    parts.append("</div>")
    return "".join(parts)
