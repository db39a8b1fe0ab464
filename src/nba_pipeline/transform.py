"""The four timed operators that turn raw rows into model-ready rows, shared by all modes.

``preprocess``          parse the raw strings, quarantine unusable rows, assign the split
``feature_engineering`` derive features (rolling salary included) and impute missing values
``feature_selection``   keep the numeric features chosen by the fitted state
``encode_scale``        one-hot encode with the fitted vocabulary, standard-scale numerics

Imputation needs the fitted state, so :func:`derive_features` (used by the fit pass) stops
before it and :func:`transform_features` picks up from there.  A ``checkpoint`` callable is
called after every operator; the streaming mode uses it to watch memory during a chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .cleaning import ParsedValues, clean
from .features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, FeatureChunk, RollingSalary, derive
from .fit_state import FittedState
from .ingestion import ParsedChunk
from .splitting import is_training_row

OPERATORS = ("preprocess_s", "feature_engineering_s", "feature_selection_s", "encode_scale_s")

Checkpoint = Callable[[str], None]


def _no_checkpoint(_operator: str) -> None:
    return None


@dataclass
class DerivedChunk:
    """A chunk after parsing and feature derivation, before imputation."""

    features: FeatureChunk
    is_train: np.ndarray
    quarantine: pd.DataFrame
    rows_read: int
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class TransformedChunk:
    """Model-ready rows of one chunk and what it took to make them."""

    X: np.ndarray
    feature_names: list[str]
    y: np.ndarray
    is_train: np.ndarray
    features: FeatureChunk
    imputed: np.ndarray
    quarantine: pd.DataFrame
    rows_read: int
    timings: dict[str, float]

    @property
    def line_numbers(self) -> np.ndarray:
        return self.features.line_numbers

    def frame(self) -> pd.DataFrame:
        """The feature matrix as a DataFrame indexed by input line number."""
        index = pd.Index(self.line_numbers, name="line")
        return pd.DataFrame(self.X, index=index, columns=self.feature_names)


def derive_features(
    parsed: ParsedChunk,
    rolling: RollingSalary,
    seed: int,
    test_fraction: float,
    checkpoint: Checkpoint = _no_checkpoint,
    parsed_values: ParsedValues | None = None,
) -> DerivedChunk:
    """Run ``preprocess`` and the derivation half of ``feature_engineering``.

    A stream passes the same ``parsed_values`` for all its chunks (see
    :class:`~nba_pipeline.cleaning.ParsedValues`)."""
    started = time.perf_counter()
    cleaned = clean(parsed.table, parsed.line_numbers, parsed.records, parsed_values)
    is_train = is_training_row(cleaned.columns["full_name"], seed, test_fraction)
    preprocess_s = time.perf_counter() - started
    checkpoint("preprocess")

    started = time.perf_counter()
    features = derive(cleaned, is_train, rolling)
    derive_s = time.perf_counter() - started
    return DerivedChunk(
        features=features,
        is_train=is_train,
        quarantine=cleaned.quarantine,
        rows_read=len(parsed),
        timings={"preprocess_s": preprocess_s, "feature_engineering_s": derive_s},
    )


def transform_features(
    derived: DerivedChunk, state: FittedState, checkpoint: Checkpoint = _no_checkpoint
) -> TransformedChunk:
    """Impute, select, encode and scale a derived chunk with the fitted state."""
    timings = dict(derived.timings)

    started = time.perf_counter()
    imputed = impute(derived.features.numeric, state)
    categorical = {
        name: pc.fill_null(values, state.categorical_fill[name]) if values.null_count else values
        for name, values in derived.features.categorical.items()
    }
    timings["feature_engineering_s"] += time.perf_counter() - started
    checkpoint("feature_engineering")

    # The selected columns are read straight from the imputed matrix, a block of rows at a
    # time, as they are scaled: no copy of them is made.
    started = time.perf_counter()
    selected = state.selected_indices
    timings["feature_selection_s"] = time.perf_counter() - started
    checkpoint("feature_selection")

    started = time.perf_counter()
    matrix = encode_scale(imputed, categorical, state, columns=selected)
    timings["encode_scale_s"] = time.perf_counter() - started
    checkpoint("encode_scale")

    return TransformedChunk(
        X=matrix,
        feature_names=state.feature_names,
        y=derived.features.target,
        is_train=derived.is_train,
        features=derived.features,
        imputed=imputed,
        quarantine=derived.quarantine,
        rows_read=derived.rows_read,
        timings={name: timings[name] for name in OPERATORS},
    )


def impute(numeric: np.ndarray, state: FittedState) -> np.ndarray:
    """Fill missing numerics with the training means."""
    fill = np.array([state.numeric_fill[name] for name in NUMERIC_FEATURES])
    return np.where(np.isnan(numeric), fill, numeric)


_SCALE_BLOCK_ROWS = 65_536


def encode_scale(
    numeric: np.ndarray,
    categorical: dict[str, pa.Array],
    state: FittedState,
    columns: list[int] | None = None,
) -> np.ndarray:
    """Standard-scaled numerics followed by one-hot columns, in the state's fixed order.

    ``numeric`` holds the selected features, or every candidate feature when ``columns``
    says which of them are selected.  A category never seen in training gets all zeros in
    its block rather than a new column, so every chunk has exactly the same columns.  The
    matrix is allocated once and filled in place (no per-block arrays to stack, which would
    double the peak memory of a batch).
    """
    mean = np.array([state.scaler_mean[name] for name in state.selected_numeric])
    scale = np.array([state.scaler_scale[name] for name in state.selected_numeric])
    widths = [len(state.vocabulary[column]) for column in CATEGORICAL_FEATURES]
    rows, width = numeric.shape[0], len(mean)
    matrix = np.zeros((rows, width + sum(widths)))
    scaled = matrix[:, :width]
    if columns is None:
        np.subtract(numeric, mean, out=scaled)
        np.divide(scaled, scale, out=scaled)
    else:
        for start in range(0, rows, _SCALE_BLOCK_ROWS):
            block = scaled[start : start + _SCALE_BLOCK_ROWS]
            np.subtract(numeric[start : start + _SCALE_BLOCK_ROWS, columns], mean, out=block)
            np.divide(block, scale, out=block)
    offset = width
    for column, size in zip(CATEGORICAL_FEATURES, widths, strict=True):
        vocabulary = pa.array(state.vocabulary[column], pa.string())
        codes = pc.index_in(categorical[column], value_set=vocabulary)
        if codes.null_count:
            codes = pc.fill_null(codes, -1)
        codes = codes.to_numpy(zero_copy_only=False)
        seen = np.flatnonzero(codes >= 0)
        matrix[seen, offset + codes[seen]] = 1.0
        offset += size
    return matrix


def outlier_flags(imputed: np.ndarray, state: FittedState) -> pd.DataFrame:
    """One boolean column per numeric feature: outside the training IQR fences."""
    flags = {}
    for index, name in enumerate(NUMERIC_FEATURES):
        if name in state.iqr_bounds:
            low, high = state.iqr_bounds[name]
            flags[name] = (imputed[:, index] < low) | (imputed[:, index] > high)
    return pd.DataFrame(flags)
