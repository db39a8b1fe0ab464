"""The reference the pipeline's speed is compared with: the same job written the obvious way.

``pandas.read_csv`` of the whole file, ``.str`` methods to parse the raw formats, the same
derived features (rolling team salary included), a hashed train / held-out split, mean and
mode imputation, correlation-based selection, and a ``StandardScaler`` and ``OneHotEncoder``
fitted again on every chunk (``chunk_size=None`` is one chunk: the whole table).

It is a yardstick for speed only.  Refitting per chunk and rolling within a chunk are what a
straightforward chunked script does, and they are why its features differ from chunk to
chunk; the pipeline's two passes and carried state exist to avoid exactly that.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC = [
    "rating",
    "age",
    "height_m",
    "salary_team_rolling_mean",
    "draft_peak",
    "draft_round",
    "experience",
    "weight_kg",
    "bmi",
    "salary_team_rolling_std",
    "version_year",
    "draft_decade",
    "birth_month",
    "jersey",
]
CATEGORICAL = ["position", "country_group", "team"]
OPERATORS = ("preprocess_s", "feature_engineering_s", "feature_selection_s", "encode_scale_s")


def run_naive(path, chunk_size: int | None = None, seed: int = 42, window: int = 5) -> dict:
    """Process the file at ``path``; returns rows, latency and per-operator seconds."""
    timings = dict.fromkeys(OPERATORS, 0.0)
    started = time.perf_counter()
    frame = pd.read_csv(path)
    timings["preprocess_s"] += time.perf_counter() - started

    step = len(frame) if chunk_size is None else chunk_size
    selected = None
    rows_out = 0
    for start in range(0, len(frame), max(step, 1)):
        chunk = frame.iloc[start : start + step]

        t0 = time.perf_counter()
        clean = _clean(chunk)
        clean["is_train"] = _split(clean["full_name"], seed)
        t1 = time.perf_counter()
        features = _features(clean, window)
        numeric = features[NUMERIC].fillna(features.loc[features["is_train"], NUMERIC].mean())
        categorical = features[CATEGORICAL].fillna(features[CATEGORICAL].mode().iloc[0])
        t2 = time.perf_counter()
        if selected is None:
            selected = _select(numeric[features["is_train"]])
        numeric = numeric[selected]
        t3 = time.perf_counter()
        train = features["is_train"].to_numpy()
        scaler = StandardScaler().fit(numeric[train] if train.any() else numeric)
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        encoder.fit(categorical[train] if train.any() else categorical)
        matrix = np.hstack([scaler.transform(numeric), encoder.transform(categorical)])
        t4 = time.perf_counter()

        rows_out += len(matrix)
        timings["preprocess_s"] += t1 - t0
        timings["feature_engineering_s"] += t2 - t1
        timings["feature_selection_s"] += t3 - t2
        timings["encode_scale_s"] += t4 - t3
    latency = time.perf_counter() - started
    return {
        "rows": int(len(frame)),
        "rows_processed": int(rows_out),
        "latency_s": latency,
        "throughput_rows_s": len(frame) / latency if latency > 0 else None,
        "operator_profile_s": timings,
        "chunk_size": chunk_size,
    }


def _clean(chunk: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=chunk.index)
    out["full_name"] = chunk["full_name"].astype(str)
    out["rating"] = pd.to_numeric(chunk["rating"], errors="coerce")
    out["jersey"] = pd.to_numeric(chunk["jersey"].astype(str).str.lstrip("#"), errors="coerce")
    out["team"] = chunk["team"].fillna("No Team")
    out["position"] = chunk["position"]
    height = chunk["height"].astype(str).str.split(" / ").str[1]
    out["height_m"] = pd.to_numeric(height, errors="coerce")
    weight = chunk["weight"].astype(str).str.split(" / ").str[1].str.replace(" kg.", "")
    out["weight_kg"] = pd.to_numeric(weight, errors="coerce")
    salary = chunk["salary"].astype(str).str.lstrip("$")
    out["salary"] = pd.to_numeric(salary, errors="coerce")
    out["b_day"] = pd.to_datetime(chunk["b_day"], format="%m/%d/%y", errors="coerce")
    version = chunk["version"].astype(str).str.replace("NBA2k", "")
    out["version_year"] = 2000 + pd.to_numeric(version, errors="coerce")
    out["draft_year"] = pd.to_numeric(chunk["draft_year"], errors="coerce")
    rounds = chunk["draft_round"].astype(str).replace("Undrafted", "0")
    out["draft_round"] = pd.to_numeric(rounds, errors="coerce")
    picks = chunk["draft_peak"].astype(str).replace("Undrafted", "61")
    out["draft_peak"] = pd.to_numeric(picks, errors="coerce")
    out["country_group"] = np.where(chunk["country"] == "USA", "USA", "Not-USA")
    return out[out["salary"].notna()]


def _split(names: pd.Series, seed: int) -> pd.Series:
    normalised = names.str.strip().str.lower().str.replace(r"\s+", " ", regex=True)
    key = f"{seed:016d}"[-16:]
    hashes = pd.util.hash_pandas_object(normalised, index=False, hash_key=key)
    return hashes.astype("uint64") / float(1 << 64) >= 0.2


def _features(clean: pd.DataFrame, window: int) -> pd.DataFrame:
    out = clean.copy()
    season_start = pd.to_datetime((out["version_year"] - 1).astype("Int64").astype(str) + "-10-01")
    out["age"] = (season_start - out["b_day"]).dt.days / 365.25
    out["experience"] = (out["version_year"] - 1 - out["draft_year"]).clip(lower=0)
    out["bmi"] = out["weight_kg"] / out["height_m"] ** 2
    out["birth_month"] = out["b_day"].dt.month
    out["draft_decade"] = (out["draft_year"] // 10) * 10
    train_salary = out["salary"].where(out["is_train"])
    grouped = train_salary.groupby(out["team"])
    previous = grouped.shift(1)
    rolling = previous.groupby(out["team"]).rolling(window, min_periods=1)
    out["salary_team_rolling_mean"] = rolling.mean().reset_index(level=0, drop=True)
    out["salary_team_rolling_std"] = rolling.std().reset_index(level=0, drop=True)
    return out


def _select(numeric: pd.DataFrame, threshold: float = 0.5) -> list[str]:
    correlation = numeric.corr().abs()
    kept: list[str] = []
    for name in numeric.columns:
        if numeric[name].std() == 0 or pd.isna(numeric[name].std()):
            continue
        if all(not correlation.loc[name, other] > threshold for other in kept):
            kept.append(name)
    return kept
