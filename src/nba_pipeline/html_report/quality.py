"""The "Data quality" section: schema checks, row counts, missing values, outliers, drift."""

from __future__ import annotations

from collections.abc import Mapping

from .loading import RunArtifacts
from .markup import absent_note, esc, kv_table, table
from .values import num

#: Drift worth a look: a KS p-value under this, or a total variation distance over the next.
KS_PVALUE_FLAG = 0.05
TVD_FLAG = 0.1


def quality_section(art: RunArtifacts) -> str:
    quality = art.section("quality")
    if not quality:
        return absent_note("No quality checks in this directory (they run with --mode all).")
    schema_ok = quality.get("schema_ok")
    badge = (
        '<span class="badge ok">schema ok</span>'
        if schema_ok
        else '<span class="badge bad">schema failed</span>'
    )
    parts = [f"<p>{badge}</p>"]
    issues = quality.get("schema_issues") or []
    if issues:
        items = "".join(f"<li>{esc(issue)}</li>" for issue in issues)
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
        parts.append("<h3>Rows</h3>" + kv_table(counts))
    split = quality.get("split")
    if isinstance(split, dict):
        parts.append("<h3>Train / held-out split</h3>" + kv_table(split))
    parts.append("</div><div>")
    missing = quality.get("missing_ratios_raw")
    if isinstance(missing, dict):
        rows = [[column, ratio] for column, ratio in missing.items()]
        parts.append("<h3>Missing ratio per raw column (before imputation)</h3>")
        parts.append(table(["Column", "Missing ratio"], rows, numeric_from=1))
    parts.append("</div><div>")
    outliers = quality.get("outliers")
    if isinstance(outliers, dict):
        parts.append("<h3>Outlier rates</h3>")
        if outliers.get("method"):
            parts.append(f'<p class="note">{esc(outliers["method"])}</p>')
        rows = [["any feature", outliers.get("any_rate")]]
        rows += [[column, rate] for column, rate in (outliers.get("per_column") or {}).items()]
        parts.append(table(["Feature", "Outlier rate"], rows, numeric_from=1))
    parts.append("</div></div>")
    examples = quality.get("quarantine_examples") or []
    if examples:
        columns = list(dict.fromkeys(key for example in examples for key in example))
        parts.append("<h3>Quarantined rows (examples)</h3>")
        parts.append(
            '<div class="scroll">'
            + table(columns, [[example.get(c) for c in columns] for example in examples])
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
        f'<h4>{esc(title)} <span class="badge {"bad" if count else "ok"}">'
        f"{esc(summary)}</span></h4>"
        + '<div class="scroll">'
        + table(head, rows, numeric_from=2, flags=flags)
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
        statistic = num(result.get("statistic"))
        return statistic is not None and statistic > TVD_FLAG
    pvalue = num(result.get("pvalue"))
    return pvalue is not None and pvalue < KS_PVALUE_FLAG
