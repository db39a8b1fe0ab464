"""The state every chunk is transformed with, learned from the training rows only.

:class:`FitAccumulator` takes the derived features chunk by chunk and keeps mergeable
statistics (counts, means and centred sums of squares combined with Chan's formula,
pairwise co-moments, category counts).  Batch mode feeds it the whole table as one chunk and
streaming mode feeds it chunk by chunk in a first pass; :meth:`FitAccumulator.finalize`
turns either into the same :class:`FittedState`: imputation values, the selected features,
the category vocabulary, the scaler's mean and scale, IQR bounds and the target's scale.
Held-out rows never reach the accumulator.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, OUTLIER_FEATURES, FeatureChunk
from .quantiles import QuantileSketch

_OUTLIER_INDICES = [NUMERIC_FEATURES.index(name) for name in OUTLIER_FEATURES]


@dataclass
class FittedState:
    """Everything a transform needs, fixed before the first chunk is transformed."""

    numeric_fill: dict[str, float]
    categorical_fill: dict[str, str]
    selected_numeric: list[str]
    dropped_numeric: list[dict]
    vocabulary: dict[str, list[str]]
    scaler_mean: dict[str, float]
    scaler_scale: dict[str, float]
    iqr_bounds: dict[str, tuple[float, float]]
    target_mean: float
    target_scale: float
    n_train_rows: int
    correlation: dict[str, dict[str, float | None]] = field(repr=False, default_factory=dict)

    @property
    def selected_indices(self) -> list[int]:
        """Positions of the selected features among the candidate numeric features."""
        return [NUMERIC_FEATURES.index(name) for name in self.selected_numeric]

    @property
    def feature_names(self) -> list[str]:
        """Columns of the feature matrix, in their fixed order."""
        encoded = [
            f"{column}={category}"
            for column in CATEGORICAL_FEATURES
            for category in self.vocabulary[column]
        ]
        return [*self.selected_numeric, *encoded]

    def summary(self) -> dict:
        """Plain-data description for the report."""
        return {
            "selected_numeric": list(self.selected_numeric),
            "dropped_numeric": self.dropped_numeric,
            "categorical": {column: list(values) for column, values in self.vocabulary.items()},
            "n_features": len(self.feature_names),
            "feature_names": self.feature_names,
            "imputation": {
                "numeric_mean": self.numeric_fill,
                "categorical_mode": self.categorical_fill,
            },
            "iqr_bounds": {key: list(bounds) for key, bounds in self.iqr_bounds.items()},
            "n_train_rows": self.n_train_rows,
        }


class FitAccumulator:
    """Mergeable statistics of the training rows' features."""

    def __init__(self) -> None:
        k = len(NUMERIC_FEATURES)
        self.n_rows = 0
        self.count = np.zeros(k)
        self.mean = np.zeros(k)
        self.m2 = np.zeros(k)
        self.shift: np.ndarray | None = None
        self.pair_n = np.zeros((k, k))
        self.pair_sx = np.zeros((k, k))
        self.pair_sxx = np.zeros((k, k))
        self.pair_sxy = np.zeros((k, k))
        # Bounded-memory quartiles for the IQR fences (exact below the sketch's capacity).
        self.quartiles = {name: QuantileSketch() for name in OUTLIER_FEATURES}
        self.categories = {column: Counter() for column in CATEGORICAL_FEATURES}
        self.target = np.zeros(3)  # count, mean, M2

    def update(self, features: FeatureChunk, is_train: np.ndarray) -> None:
        """Add the training rows of one chunk."""
        if not is_train.any():
            return
        numeric = features.numeric[is_train]
        self.n_rows += len(numeric)
        self._update_moments(numeric)
        self._update_pairs(numeric)
        for name, index in zip(OUTLIER_FEATURES, _OUTLIER_INDICES, strict=True):
            self.quartiles[name].update(numeric[:, index])
        mask = pa.array(is_train)
        for column in CATEGORICAL_FEATURES:
            counts = pc.value_counts(features.categorical[column].filter(mask).drop_null())
            for item in counts.to_pylist():
                self.categories[column][item["values"]] += item["counts"]
        self.target = _merge_moments(self.target, _moments(features.target[is_train]))

    def finalize(self, correlation_threshold: float) -> FittedState:
        """Turn the statistics into the state used to transform every chunk."""
        if self.n_rows == 0:
            raise ValueError("no training rows: the split left nothing to fit on")
        names = list(NUMERIC_FEATURES)
        correlation = self._correlation()
        selected, dropped = _select(
            names, correlation, self.m2, correlation_threshold, self.count, self.mean
        )
        fill = {
            name: _finite(self.mean[i] if self.count[i] else 0.0) for i, name in enumerate(names)
        }
        # Mean imputation adds zero deviation, so the imputed column's variance is the
        # observed sum of squares over all training rows (the population variance).
        scale = {
            name: _finite(np.sqrt(self.m2[i] / self.n_rows)) or 1.0 for i, name in enumerate(names)
        }
        modes = {column: _mode(counts) for column, counts in self.categories.items()}
        vocabulary = {
            column: sorted(set(counts) | {modes[column]})
            for column, counts in self.categories.items()
        }
        return FittedState(
            numeric_fill=fill,
            categorical_fill=modes,
            selected_numeric=selected,
            dropped_numeric=dropped,
            vocabulary=vocabulary,
            scaler_mean={name: fill[name] for name in selected},
            scaler_scale={name: scale[name] for name in selected},
            iqr_bounds=self._iqr_bounds(),
            target_mean=float(self.target[1]),
            target_scale=_finite(np.sqrt(self.target[2] / self.target[0])) or 1.0,
            n_train_rows=self.n_rows,
            correlation=_correlation_table(names, correlation),
        )

    def _update_moments(self, numeric: np.ndarray) -> None:
        # Columns without a missing value are reduced together, one contiguous row each,
        # which sums in the same order as the per-column loop used for the others.
        chunk = np.zeros((3, numeric.shape[1]))  # count, mean, M2 of this chunk's rows
        complete = ~np.isnan(numeric).any(axis=0)
        if complete.any():
            columns = np.ascontiguousarray(numeric[:, complete].T)
            means = columns.sum(axis=1) / columns.shape[1]
            chunk[0, complete] = columns.shape[1]
            chunk[1, complete] = means
            columns -= means[:, None]  # in place: fresh memory is slow to touch
            chunk[2, complete] = np.square(columns, out=columns).sum(axis=1)
        for i in np.flatnonzero(~complete):
            chunk[:, i] = _moments(numeric[:, i])
        merged = _merge_moment_columns(np.vstack([self.count, self.mean, self.m2]), chunk)
        self.count, self.mean, self.m2 = merged[0], merged[1], merged[2]

    def _update_pairs(self, numeric: np.ndarray) -> None:
        # Sums are taken around a fixed shift (the first chunk's means) to keep the
        # co-moment arithmetic well conditioned for columns such as salaries.
        observed = ~np.isnan(numeric)
        if self.shift is None:
            counts = observed.sum(axis=0)
            sums = np.where(observed, numeric, 0.0).sum(axis=0)
            self.shift = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        centred = numeric - self.shift
        centred[~observed] = 0.0
        mask = observed.astype(float)
        self.pair_n += mask.T @ mask
        self.pair_sx += centred.T @ mask
        self.pair_sxy += centred.T @ centred
        self.pair_sxx += np.square(centred, out=centred).T @ mask  # squared in place

    def _correlation(self) -> np.ndarray:
        """Pearson correlation of each pair over the rows where both are observed."""
        n, sx, sxx, sxy = self.pair_n, self.pair_sx, self.pair_sxx, self.pair_sxy
        covariance = n * sxy - sx * sx.T
        variance_i = n * sxx - sx**2
        variance_j = variance_i.T
        with np.errstate(all="ignore"):
            corr = covariance / np.sqrt(variance_i * variance_j)
        corr[(n < 3) | ~np.isfinite(corr)] = np.nan
        return np.clip(corr, -1.0, 1.0)

    def _iqr_bounds(self) -> dict[str, tuple[float, float]]:
        bounds = {}
        for name, sketch in self.quartiles.items():
            if sketch.count == 0:
                continue
            q1, q3 = sketch.quantiles([0.25, 0.75])
            spread = 1.5 * (q3 - q1)
            bounds[name] = (float(q1 - spread), float(q3 + spread))
        return bounds


def _moments(values: np.ndarray) -> np.ndarray:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return np.zeros(3)
    mean = values.mean()
    return np.array([values.size, mean, ((values - mean) ** 2).sum()])


def _merge_moment_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`_merge_moments` of every column of two (count, mean, M2) x k arrays."""
    n = a[0] + b[0]
    has_rows = n > 0
    delta = b[1] - a[1]
    mean = a[1] + np.divide(delta * b[0], n, out=np.zeros_like(n), where=has_rows)
    # Squared one scalar at a time, as in _merge_moments: a scalar power can round
    # differently from the array one.
    squared = np.array([value**2 for value in delta])
    m2 = a[2] + b[2] + np.divide(squared * a[0] * b[0], n, out=np.zeros_like(n), where=has_rows)
    return np.where(has_rows, np.vstack([n, mean, m2]), 0.0)


def _merge_moments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Chan et al.'s parallel update of (count, mean, M2)."""
    n = a[0] + b[0]
    if n == 0:
        return np.zeros(3)
    delta = b[1] - a[1]
    mean = a[1] + delta * b[0] / n
    m2 = a[2] + b[2] + delta**2 * a[0] * b[0] / n
    return np.array([n, mean, m2])


# Decisions compare floating-point statistics whose last bits depend on how the rows were
# chunked; these tolerances keep batch and streaming on the same side of every decision.
CONSTANT_TOLERANCE = 1e-12
THRESHOLD_TOLERANCE = 1e-9


def _select(names, correlation, m2, threshold, counts, means) -> tuple[list[str], list[dict]]:
    """Greedy selection in priority order: keep a feature unless it is constant or its
    absolute correlation with an already kept feature exceeds the threshold."""
    kept: list[int] = []
    dropped = []
    limit = threshold + THRESHOLD_TOLERANCE
    for i, name in enumerate(names):
        spread = np.sqrt(max(m2[i], 0.0) / max(counts[i], 1))
        if not spread > CONSTANT_TOLERANCE * max(1.0, abs(means[i])):
            dropped.append({"feature": name, "reason": "constant on the training rows"})
            continue
        partner = next((j for j in kept if abs(np.nan_to_num(correlation[i, j])) > limit), None)
        if partner is None:
            kept.append(i)
            continue
        dropped.append(
            {
                "feature": name,
                "reason": f"|correlation| > {threshold}",
                "correlated_with": names[partner],
                "correlation": float(correlation[i, partner]),
            }
        )
    return [names[i] for i in kept], dropped


def _correlation_table(names, correlation) -> dict[str, dict[str, float | None]]:
    return {
        a: {
            b: (None if np.isnan(correlation[i, j]) else float(correlation[i, j]))
            for j, b in enumerate(names)
        }
        for i, a in enumerate(names)
    }


def _mode(counts: Counter) -> str:
    if not counts:
        return "Unknown"
    # Ties go to the alphabetically first category so the choice never depends on order.
    return min(counts.items(), key=lambda item: (-item[1], str(item[0])))[0]


def _finite(value: float) -> float:
    value = float(value)
    return value if np.isfinite(value) else 0.0
