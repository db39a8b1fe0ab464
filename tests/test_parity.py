"""Batch and streaming produce the same feature matrix and the same fitted state.

Each (dataset, chunk size) run is computed once per module and shared by the tests.  The
memory budget is set far above any real RSS so that every chunk keeps its configured size
(the budget tests live in test_streaming_budget.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba_pipeline.batch import BatchResult, run_batch
from nba_pipeline.config import PipelineConfig
from nba_pipeline.fit_state import FittedState
from nba_pipeline.ingestion import InputSource
from nba_pipeline.streaming import StreamingResult, run_streaming
from nba_pipeline.synth import sample_dataset_path

CHUNK_SIZES = (1, 7, 64, 1000)
DATASETS = ("sample", "messy", "real")
ROWS = {"sample": 400, "messy": 150, "real": 439}
CONFIG = PipelineConfig().with_overrides(max_compute_units=1.0, max_memory_mb=1_000_000.0)
ATOL = 1e-9


class Runs:
    """Lazily computed batch and streaming runs, one per dataset and chunk size."""

    def __init__(self, spill_root: Path) -> None:
        self.spill_root = spill_root
        self._batch: dict[str, BatchResult] = {}
        self._streaming: dict[tuple[str, int], tuple[StreamingResult, Path]] = {}

    def batch(self, name: str, path: Path) -> BatchResult:
        if name not in self._batch:
            self._batch[name] = run_batch(InputSource.from_path(path), CONFIG)
        return self._batch[name]

    def streaming(self, name: str, path: Path, chunk_size: int) -> tuple[StreamingResult, Path]:
        key = (name, chunk_size)
        if key not in self._streaming:
            spill = self.spill_root / f"{name}_{chunk_size}"
            result = run_streaming(
                InputSource.from_path(path),
                CONFIG.with_overrides(chunk_size=chunk_size),
                spill_dir=spill,
                keep_matrix=True,
            )
            self._streaming[key] = (result, spill)
        return self._streaming[key]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("parity_spill"))


@pytest.fixture(scope="module")
def messy_path(tmp_path_factory) -> Path:
    """150 sample rows with blank cells in every optional column and some unusable rows,
    so that imputation and quarantine are exercised in both modes."""
    frame = pd.read_csv(sample_dataset_path(), dtype=str, keep_default_na=False).head(150)
    rng = np.random.default_rng(3)
    optional = ["rating", "height", "weight", "b_day", "draft_year", "draft_peak", "jersey"]
    for column in [*optional, "team", "position", "country"]:
        frame.loc[rng.random(len(frame)) < 0.08, column] = ""
    frame.loc[rng.random(len(frame)) < 0.03, "salary"] = ""
    frame.loc[rng.random(len(frame)) < 0.03, "height"] = "tall"
    frame.loc[rng.random(len(frame)) < 0.02, "b_day"] = "02/30/91"
    path = tmp_path_factory.mktemp("messy") / "messy.csv"
    frame.to_csv(path, index=False, lineterminator="\n")
    return path


@pytest.fixture(params=DATASETS)
def dataset(request, sample_path) -> tuple[str, Path]:
    if request.param == "real":
        return "real", request.getfixturevalue("real_data_path")
    if request.param == "messy":
        return "messy", request.getfixturevalue("messy_path")
    return "sample", sample_path


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_streaming_matrix_equals_batch_matrix(runs, dataset, chunk_size):
    name, path = dataset
    transformed = runs.batch(name, path).transformed
    batch = transformed.frame()
    streaming, _ = runs.streaming(name, path, chunk_size)
    matrix = streaming.matrix

    assert len(batch) + len(transformed.quarantine) == ROWS[name]
    assert streaming.quarantine["line"].tolist() == transformed.quarantine["line"].tolist()
    assert streaming.quarantine["reason"].tolist() == transformed.quarantine["reason"].tolist()
    assert list(matrix.columns) == list(batch.columns)
    assert matrix.index.name == batch.index.name == "line"
    np.testing.assert_array_equal(matrix.index.to_numpy(), batch.index.to_numpy())
    assert matrix.index.is_unique
    np.testing.assert_allclose(matrix.to_numpy(), batch.to_numpy(), rtol=0, atol=ATOL)
    # The targets travel with the rows.
    np.testing.assert_array_equal(
        streaming.targets.to_numpy(), runs.batch(name, path).transformed.y
    )


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_every_chunk_has_the_same_columns(runs, dataset, chunk_size):
    name, path = dataset
    expected = list(runs.batch(name, path).state.feature_names)
    streaming, spill = runs.streaming(name, path, chunk_size)
    records = streaming.chunk_records
    assert len(records) == -(-ROWS[name] // chunk_size)
    assert [record["chunk_size"] for record in records[:-1]] == [chunk_size] * (len(records) - 1)
    for record in records:
        header = (spill / Path(record["spill_paths"]["X"]).name).open().readline()
        assert header.rstrip("\n").split(",") == expected, record["chunk_id"]
        x = pd.read_csv(spill / Path(record["spill_paths"]["X"]).name)
        assert x.shape == (record["rows_processed"], len(expected))
    assert sum(record["rows"] for record in records) == ROWS[name]


def assert_same_state(streaming: FittedState, batch: FittedState) -> None:
    assert streaming.selected_numeric == batch.selected_numeric
    assert streaming.feature_names == batch.feature_names
    assert streaming.vocabulary == batch.vocabulary
    assert streaming.categorical_fill == batch.categorical_fill
    assert streaming.n_train_rows == batch.n_train_rows
    assert [d["feature"] for d in streaming.dropped_numeric] == [
        d["feature"] for d in batch.dropped_numeric
    ]
    for name in ("numeric_fill", "scaler_mean", "scaler_scale"):
        got, expected = getattr(streaming, name), getattr(batch, name)
        assert got.keys() == expected.keys(), name
        for key in expected:
            assert got[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), (name, key)
    assert streaming.iqr_bounds.keys() == batch.iqr_bounds.keys()
    for key, bounds in batch.iqr_bounds.items():
        assert streaming.iqr_bounds[key] == pytest.approx(bounds, rel=1e-12), key
    assert streaming.target_mean == pytest.approx(batch.target_mean, rel=1e-12)
    assert streaming.target_scale == pytest.approx(batch.target_scale, rel=1e-9)


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_fitted_state_is_the_same_in_both_modes(runs, dataset, chunk_size):
    name, path = dataset
    batch = runs.batch(name, path)
    streaming, _ = runs.streaming(name, path, chunk_size)
    assert_same_state(streaming.state, batch.state)
    assert streaming.section["model"]["n_train"] == batch.section["model"]["n_train"]
    assert streaming.section["model"]["n_test"] == batch.section["model"]["n_test"]


def test_messy_data_exercises_imputation_and_quarantine(runs, messy_path):
    result = runs.batch("messy", messy_path)
    assert 5 <= len(result.transformed.quarantine) <= 30
    assert np.isnan(result.transformed.features.numeric).any()
    assert np.isfinite(result.transformed.X).all()


def test_state_is_not_trivial(runs, sample_path):
    state = runs.batch("sample", sample_path).state
    assert len(state.selected_numeric) >= 5
    assert state.dropped_numeric
    assert len(state.vocabulary["team"]) >= 20
    assert state.vocabulary["country_group"] == ["Not-USA", "USA"]


def test_streaming_model_does_not_depend_on_chunking(runs, dataset):
    name, path = dataset
    scores = [runs.streaming(name, path, size)[0].section["model"] for size in CHUNK_SIZES]
    for model in scores[1:]:
        assert model["r2"] == pytest.approx(scores[0]["r2"], abs=1e-9)
        assert model["n_train"] == scores[0]["n_train"]
        assert model["updates"] == scores[0]["updates"]


def test_real_data_accuracy_promise(runs, real_data_path):
    """Batch r2 on the held-out rows >= 0.5 and streaming within 0.15 of it."""
    batch = runs.batch("real", real_data_path).section["model"]
    streaming = runs.streaming("real", real_data_path, 64)[0].section["model"]
    assert batch["n_test"] == streaming["n_test"] > 50
    assert batch["r2"] >= 0.5, f"batch r2 {batch['r2']:.4f}"
    assert abs(streaming["r2"] - batch["r2"]) <= 0.15, (
        f"batch r2 {batch['r2']:.4f}, streaming r2 {streaming['r2']:.4f}"
    )
