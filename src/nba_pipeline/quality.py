"""The report's ``quality`` section: schema, missing values, outliers, drift, row accounting.

Missing ratios and the schema check look at the raw input as read, before any imputation.
Outlier rates use the IQR fences fitted on the training rows.  Drift compares two different
samples of the derived (not yet imputed) features: training rows against held-out rows, and
the NBA2k20 season against NBA2k21.
"""

from __future__ import annotations

import pandas as pd

from .batch import BatchResult
from .cleaning import parse_salary
from .features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from .ingestion import InputSource, read_table
from .transform import outlier_flags
from .validation import check_schema, drift_report, missing_ratios, outlier_rate

QUARANTINE_EXAMPLES = 20


def build_quality(source: InputSource, batch: BatchResult) -> dict:
    """Assemble the quality section from the raw input and the batch-mode result."""
    parsed = read_table(source)
    raw = parsed.table.to_pandas()
    raw.index = pd.Index(parsed.line_numbers, name="line")
    salary = pd.Series(parse_salary(parsed.table.column("salary")), index=raw.index)
    schema_ok, schema_issues = check_schema(raw, salary)

    transformed = batch.transformed
    features = transformed.features.to_frame()
    train = transformed.is_train
    numeric, categorical = list(NUMERIC_FEATURES), list(CATEGORICAL_FEATURES)
    season = features["version_year"]
    quarantine = transformed.quarantine
    rows_processed = int(len(transformed.X))
    return {
        "schema_ok": schema_ok,
        "schema_issues": schema_issues,
        "rows_read": int(len(raw)),
        "rows_processed": rows_processed,
        "rows_quarantined": int(len(quarantine)),
        "rows_accounted": int(len(raw)) == rows_processed + int(len(quarantine)),
        "quarantine_examples": quarantine.head(QUARANTINE_EXAMPLES).to_dict("records"),
        "missing_ratios_raw": missing_ratios(raw),
        "outliers": {
            "method": "1.5 x IQR fences fitted on the training rows",
            **outlier_rate(outlier_flags(transformed.imputed, batch.state)),
        },
        "drift": {
            "train_vs_test": drift_report(features[train], features[~train], numeric, categorical),
            "season_nba2k20_vs_nba2k21": drift_report(
                features[season == 2020], features[season == 2021], numeric, categorical
            ),
        },
        "split": {
            "method": "seeded SipHash of the normalised player name",
            "n_train": int(train.sum()),
            "n_test": int((~train).sum()),
            "players_in_both": _players_in_both(raw, transformed),
        },
    }


def _players_in_both(raw, transformed) -> int:
    names = raw.loc[transformed.line_numbers, "full_name"].str.strip().str.casefold()
    train = transformed.is_train
    return len(set(names[train]) & set(names[~train]))
