"""The report's ``quality`` section, the input check before any work, and row accounting.

Missing ratios and the schema check look at the raw input as read, before any imputation.
Outlier rates use the IQR fences fitted on the training rows.  Drift compares two different
samples of the derived (not yet imputed) features: training rows against held-out rows, and
the NBA2k20 season against NBA2k21.

:func:`check_input` reads and cleans the whole input once, in bounded blocks (Arrow's reader
for UTF-8 files, the record reader otherwise), before any measured run, so that an input the
pipeline cannot use (no data rows, too many quarantined rows, no training or no held-out
rows) stops the run with a message saying what to do, rather than failing inside a worker.
:func:`verify_row_accounting` checks at the end of a run that every row read was either
processed or quarantined, in every mode.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .batch import BatchResult
from .cleaning import USED_COLUMNS, clean, parse_salary
from .config import PipelineConfig
from .errors import (
    InputChangedError,
    InputDataError,
    PipelineError,
    QuarantineLimitError,
    RowAccountingError,
)
from .features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from .ingestion import (
    RECORD_ERROR,
    ChunkReader,
    FastReadUnavailable,
    InputSource,
    ParsedChunk,
    iter_table_blocks,
    parse_chunk,
    read_table,
    sha256_of,
)
from .splitting import is_training_row
from .transform import outlier_flags
from .validation import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    check_schema,
    drift_report,
    missing_ratios,
    outlier_rate,
)

logger = logging.getLogger(__name__)

QUARANTINE_EXAMPLES = 20
QUARANTINE_COLUMNS = ("line", "reason", "raw")
CHECK_CHUNK_ROWS = 65_536
# Text per block when Arrow reads the input for the check: bounded, like the record reader.
CHECK_BLOCK_BYTES = 8 << 20
REASONS_SHOWN = 3


# --------------------------------------------------------------------------- before any work


@dataclass
class InputCheck:
    """What reading and cleaning the whole input found, before any measured run."""

    source: InputSource
    rows: int
    quarantined: int
    train: int
    held_out: int
    first_reasons: list[tuple[int, str]] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.rows - self.quarantined

    @property
    def quarantine_ratio(self) -> float:
        return self.quarantined / self.rows if self.rows else 0.0


def check_input(source: InputSource, config: PipelineConfig) -> InputCheck:
    """Clean the whole input once and stop early when the pipeline cannot use it.

    Raises :class:`InputDataError` for a header without data rows and for an input without
    a usable training or held-out row, and :class:`QuarantineLimitError` when more than
    ``config.max_quarantine_ratio`` of the rows would be quarantined.
    """
    with ChunkReader(source) as reader:
        columns = reader.columns
    try:
        tally = _InputTally(config)
        for parsed in iter_table_blocks(
            source, CHECK_BLOCK_BYTES, dictionary=True, only=USED_COLUMNS
        ):
            tally.add(parsed)
    except FastReadUnavailable as reason:
        logger.debug("input check: record reader (%s)", reason)
        tally = _InputTally(config)
        for parsed in _record_chunks(source):
            tally.add(parsed)
    rows, quarantined, train, reasons = tally.rows, tally.quarantined, tally.train, tally.reasons
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    check = InputCheck(
        source=source,
        rows=rows,
        quarantined=quarantined,
        train=train,
        held_out=rows - quarantined - train,
        first_reasons=reasons,
        extra_columns=[column for column in columns if column not in known],
    )
    if check.extra_columns:
        logger.warning(
            "input %s has column(s) the pipeline does not use: %s; they are ignored",
            source.name,
            ", ".join(check.extra_columns),
        )
    _refuse_unusable(check, config.max_quarantine_ratio)
    if quarantined:
        logger.warning(
            "input %s: %d of %d rows quarantined (%s), within max_quarantine_ratio %g; "
            "reports/quarantine.csv lists them all",
            source.name,
            quarantined,
            rows,
            _reasons(check),
            config.max_quarantine_ratio,
        )
    logger.info(
        "input %s: %d rows, %d quarantined, %d training, %d held out",
        source.name,
        rows,
        quarantined,
        train,
        check.held_out,
    )
    return check


class _InputTally:
    """Rows, quarantined rows, training rows and the first reasons, chunk by chunk."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.rows = self.quarantined = self.train = 0
        self.reasons: list[tuple[int, str]] = []

    def add(self, parsed: ParsedChunk) -> None:
        cleaned = clean(parsed.table, parsed.line_numbers, parsed.records)
        self.rows += len(parsed)
        self.quarantined += len(cleaned.quarantine)
        names = cleaned.columns["full_name"]
        seed, fraction = self.config.random_seed, self.config.test_fraction
        self.train += int(is_training_row(names, seed, fraction).sum())
        for line, reason in cleaned.quarantine[["line", "reason"]].itertuples(index=False):
            if len(self.reasons) >= REASONS_SHOWN:
                break
            self.reasons.append((int(line), str(reason)))


def _record_chunks(source: InputSource):
    """The input parsed chunk by chunk by the record reader (any encoding, any size)."""
    with ChunkReader(source) as reader:
        while True:
            raw = reader.take(CHECK_CHUNK_ROWS)
            if not len(raw):
                return
            yield parse_chunk(reader.header, raw, reader.columns)


def _refuse_unusable(check: InputCheck, limit: float) -> None:
    name = check.source.name
    if check.rows == 0:
        raise InputDataError(
            f"input {name} has a header but no data rows: there is nothing to train on; "
            "check that the file is the complete export"
        )
    if check.quarantine_ratio > limit:
        raise QuarantineLimitError(
            f"input {name}: {check.quarantined} of {check.rows} rows "
            f"({check.quarantine_ratio:.1%}) cannot be used, more than max_quarantine_ratio "
            f"{limit:g} ({limit:.1%}); first reasons: {_reasons(check)}; this is probably "
            "not the NBA2K player table, or it was exported differently: check the file, or "
            "raise --max-quarantine-ratio to accept it"
        )
    if check.train == 0 or check.held_out == 0:
        raise InputDataError(
            f"input {name} has {check.processed} usable row(s): {check.train} for training and "
            f"{check.held_out} held out by the split on player names; the pipeline needs at "
            "least one of each, so give it more players"
        )


def _reasons(check: InputCheck) -> str:
    return "; ".join(f"line {line}: {reason}" for line, reason in check.first_reasons)


# --------------------------------------------------------------------------- after the run


def verify_row_accounting(report: dict, check: InputCheck | None) -> None:
    """Every row read was processed or quarantined, in every mode; raise if not.

    ``rows == rows_processed + rows_quarantined`` must hold in the batch and streaming
    sections and ``rows_read == rows_processed + rows_quarantined`` in the quality section;
    each of them must have read every record of the input, and agree with what
    :func:`check_input` found.
    """
    expected = report.get("dataset_fingerprint", {}).get("row_count")
    counts = {
        mode: (section["rows"], section["rows_processed"], section["rows_quarantined"])
        for mode in ("batch", "streaming")
        if (section := report.get(mode))
    }
    if quality := report.get("quality"):
        counts["quality"] = (
            quality["rows_read"],
            quality["rows_processed"],
            quality["rows_quarantined"],
        )
    if check is not None:
        counts["input check"] = (check.rows, check.processed, check.quarantined)
    problems = []
    for where, (read, processed, quarantined) in counts.items():
        if read != processed + quarantined:
            problems.append(
                f"{where}: {read} rows read but {processed} processed + {quarantined} "
                f"quarantined = {processed + quarantined}"
            )
        if expected is not None and read != expected:
            problems.append(f"{where}: {read} rows read but the input has {expected} records")
    outcomes = {(processed, quarantined) for _, processed, quarantined in counts.values()}
    if len(outcomes) > 1:
        problems.append(
            "the modes disagree on rows processed / quarantined: "
            + ", ".join(f"{where} {p}/{q}" for where, (_, p, q) in counts.items())
        )
    if problems:
        raise RowAccountingError(
            "row accounting failed (rows read must equal rows processed + rows quarantined): "
            + "; ".join(problems)
            + "; no result of this run can be trusted: rerun, and report the input if it "
            "happens again"
        )
    logger.debug("row accounting holds: %s", counts)


def verify_input_unchanged(report: dict, check: InputCheck | None) -> None:
    """The input file still has the SHA-256 it had when the run started; raise if not."""
    if check is None or check.source.path is None:
        return
    started = report.get("dataset_fingerprint", {}).get("sha256")
    name = check.source.name
    try:
        now = sha256_of(check.source)
    except PipelineError:
        raise InputChangedError(
            f"input file {name} was removed or became unreadable during the run; the run's "
            "results are not written: keep the file in place until the run ends, then rerun"
        ) from None
    if now != started:
        raise InputChangedError(
            f"input file {name} changed during the run (SHA-256 {started[:12]}... at the "
            f"start, {now[:12]}... at the end), so the results would mix two versions of "
            "the data and are not written; rerun once the file is no longer being written"
        )


def quarantine_table(quarantine: pd.DataFrame | None) -> pd.DataFrame:
    """The quarantined rows as written to ``reports/quarantine.csv``: line, reason, raw."""
    if quarantine is None or quarantine.empty:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in QUARANTINE_COLUMNS})
    table = quarantine[list(QUARANTINE_COLUMNS)].sort_values("line", kind="stable")
    return table.astype({"line": np.int64}).reset_index(drop=True)


# --------------------------------------------------------------------------- quality section


def build_quality(source: InputSource, batch: BatchResult) -> dict:
    """Assemble the quality section from the raw input and the batch-mode result."""
    parsed = read_table(source)
    raw = parsed.table.to_pandas()
    raw.index = pd.Index(parsed.line_numbers, name="line")
    malformed = np.zeros(len(raw), dtype=bool)
    if RECORD_ERROR in raw.columns:
        malformed = raw.pop(RECORD_ERROR).ne("").to_numpy(dtype=bool)
    # Records that are not one row of the header's fields are reported on their own; their
    # cells would only add noise to the checks of the columns.
    well_formed = raw[~malformed]
    salary = pd.Series(parse_salary(well_formed["salary"].to_numpy()), index=well_formed.index)
    schema_ok, schema_issues = check_schema(well_formed, salary)
    if malformed.any():
        schema_ok = False
        schema_issues.append(_malformed_issue(raw.index[malformed], len(raw)))

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


def _malformed_issue(lines: pd.Index, rows: int) -> str:
    shown = ", ".join(str(line) for line in lines[:REASONS_SHOWN])
    more = ", ..." if len(lines) > REASONS_SHOWN else ""
    return (
        f"{len(lines)} of {rows} record(s) do not hold exactly one value per header column "
        f"(line(s) {shown}{more}); they are quarantined: check for truncated lines or "
        "unquoted commas"
    )


def _players_in_both(raw, transformed) -> int:
    names = raw.loc[transformed.line_numbers, "full_name"].str.strip().str.casefold()
    train = transformed.is_train
    return len(set(names[train]) & set(names[~train]))
