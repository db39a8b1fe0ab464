"""Streaming under a memory budget and a compute cap.

Real-RSS tests use budgets relative to :func:`nba_pipeline.resources.rss_mb` (just above it,
or 1 MB, far below it).  The shrink-and-grow logic is also checked deterministically with a
scripted RSS that breaches the budget at one chosen checkpoint.  Whatever the budget does to
the chunking, the feature matrix and the online model's results must not change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba_pipeline import fit_state, resources, streaming
from nba_pipeline.config import PipelineConfig
from nba_pipeline.ingestion import InputSource
from nba_pipeline.resources import rss_mb
from nba_pipeline.streaming import StreamingResult, run_streaming
from nba_pipeline.synth import sample_dataset_path

ROWS = 400
BASE = PipelineConfig().with_overrides(
    max_compute_units=1.0,
    max_memory_mb=1_000_000.0,
    chunk_size=64,
    min_chunk_size=8,
    max_chunk_retries=3,
    adaptive_chunk_resize=True,
)


class PredictionRecorder:
    """Wraps OnlineSalaryModel.predict; the last call is the held-out scoring."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[np.ndarray] = []
        original = streaming.OnlineSalaryModel.predict

        def predict(model, X):
            result = original(model, X)
            self.calls.append(np.array(result, copy=True))
            return result

        monkeypatch.setattr(streaming.OnlineSalaryModel, "predict", predict)

    @property
    def held_out(self) -> np.ndarray:
        return self.calls[-1]


def run(config: PipelineConfig, spill_dir: Path | None = None) -> StreamingResult:
    return run_streaming(
        InputSource.from_path(sample_dataset_path()), config, spill_dir=spill_dir, keep_matrix=True
    )


@pytest.fixture(scope="module")
def unconstrained() -> tuple[StreamingResult, np.ndarray]:
    """The reference run (chunk size 64, no memory pressure) and its held-out predictions."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        recorder = PredictionRecorder(monkeypatch)
        result = run(BASE)
    assert result.section["memory"]["retries"] == 0
    assert result.section["memory"]["chunks_over_budget"] == 0
    return result, recorder.held_out


def assert_each_row_once(result: StreamingResult) -> None:
    records = result.chunk_records
    assert sum(record["rows"] for record in records) == ROWS
    assert result.section["rows"] == ROWS
    assert result.section["rows_processed"] == ROWS  # the sample has no quarantined row
    lines = result.matrix.index.to_numpy()
    assert result.matrix.index.is_unique
    np.testing.assert_array_equal(lines, np.arange(2, ROWS + 2))  # file order, each once
    firsts = [record["first_line"] for record in records]
    sizes = [record["chunk_size"] for record in records]
    assert firsts == list(np.cumsum([2, *sizes[:-1]]))  # chunks tile the file, no gap


def assert_same_outputs(result, predictions, reference, reference_predictions, exact: bool):
    if exact:
        pd.testing.assert_frame_equal(result.matrix, reference.matrix, check_exact=True)
        np.testing.assert_array_equal(predictions, reference_predictions)
        assert result.section["model"]["r2"] == reference.section["model"]["r2"]
    else:  # a different fit-pass chunking merges the statistics in another order
        pd.testing.assert_frame_equal(
            result.matrix, reference.matrix, check_exact=False, atol=1e-9
        )
        np.testing.assert_allclose(predictions, reference_predictions, rtol=1e-9)
        assert result.section["model"]["r2"] == pytest.approx(
            reference.section["model"]["r2"], abs=1e-9
        )
    for key in ("n_train", "n_test", "updates"):
        assert result.section["model"][key] == reference.section["model"][key]
    pd.testing.assert_series_equal(result.targets, reference.targets)


# --------------------------------------------------------------------------------------
# Real RSS
# --------------------------------------------------------------------------------------


def test_budget_just_above_rss_processes_every_row_once(tmp_path, monkeypatch, unconstrained):
    reference, reference_predictions = unconstrained
    recorder = PredictionRecorder(monkeypatch)
    budget = rss_mb() + 2.0
    result = run(BASE.with_overrides(max_memory_mb=budget), spill_dir=tmp_path / "spill")

    assert result.section["memory"]["budget_mb"] == budget
    assert_each_row_once(result)
    records = result.chunk_records
    assert all(record["chunk_size"] >= 1 for record in records)
    spilled = 0
    for record in records:
        y = pd.read_csv(tmp_path / "spill" / Path(record["spill_paths"]["y"]).name)
        x = pd.read_csv(tmp_path / "spill" / Path(record["spill_paths"]["X"]).name)
        assert len(y) == len(x) == record["rows_processed"]
        spilled += len(x)
    assert spilled == ROWS
    assert len(list((tmp_path / "spill").glob("*_X.csv"))) == len(records)
    assert_same_outputs(result, recorder.held_out, reference, reference_predictions, exact=False)


def test_budget_far_below_rss_splits_chunks_but_changes_nothing(monkeypatch, unconstrained):
    reference, reference_predictions = unconstrained
    recorder = PredictionRecorder(monkeypatch)
    result = run(BASE.with_overrides(max_memory_mb=1.0))
    memory = result.section["memory"]

    # The first fit-pass chunk is halved three times (64 -> 32 -> 16 -> 8) ...
    assert memory["fit_pass_retries"] + memory["retries"] > 0
    assert memory["fit_pass_retries"] == 3
    assert memory["fit_pass_chunks_over_budget"] > 0
    # ... and from then on every chunk is at the floor, over budget and not split further.
    records = result.chunk_records
    assert all(record["memory_exceeded"] for record in records)
    assert memory["chunks_over_budget"] == len(records)
    assert all(record["chunk_size"] == BASE.min_chunk_size for record in records)
    assert result.section["final_chunk_size"] == BASE.min_chunk_size
    assert len(records) == ROWS // BASE.min_chunk_size
    assert memory["peak_rss_mb"] > memory["budget_mb"]
    assert_each_row_once(result)

    assert_same_outputs(result, recorder.held_out, reference, reference_predictions, exact=False)
    # Against an unconstrained run that uses the same chunks, nothing differs at all.
    with pytest.MonkeyPatch.context() as patch:
        same_chunks_recorder = PredictionRecorder(patch)
        same_chunks = run(BASE.with_overrides(chunk_size=BASE.min_chunk_size))
    assert_same_outputs(
        result, recorder.held_out, same_chunks, same_chunks_recorder.held_out, exact=True
    )
    assert result.state == same_chunks.state


def test_adaptive_resize_disabled_records_but_never_splits(unconstrained):
    reference, _ = unconstrained
    config = BASE.with_overrides(max_memory_mb=1.0, adaptive_chunk_resize=False)
    result = run(config)
    memory = result.section["memory"]
    records = result.chunk_records

    assert memory["retries"] == memory["fit_pass_retries"] == 0
    assert all(record["retries"] == 0 for record in records)
    assert all(record["memory_exceeded"] for record in records)
    assert memory["chunks_over_budget"] == len(records) == -(-ROWS // BASE.chunk_size)
    assert memory["fit_pass_chunks_over_budget"] == len(records)
    assert [r["chunk_size"] for r in records[:-1]] == [BASE.chunk_size] * (len(records) - 1)
    assert result.section["final_chunk_size"] == BASE.chunk_size
    assert "disabled" in memory["enforcement"]
    assert_each_row_once(result)
    pd.testing.assert_frame_equal(result.matrix, reference.matrix, check_exact=True)
    assert result.section["model"]["r2"] == reference.section["model"]["r2"]


# --------------------------------------------------------------------------------------
# Scripted RSS: one breach at a chosen checkpoint
# --------------------------------------------------------------------------------------

BUDGET_MB = 200.0
LOW_MB, HIGH_MB = 100.0, 500.0


class ScriptedMemory:
    """RSS is LOW_MB except while the checkpoints numbered in ``spikes`` sample it."""

    def __init__(self, monkeypatch, spikes: set[int]) -> None:
        self.spikes = spikes
        self.checkpoints = 0
        self.value = LOW_MB
        monkeypatch.setattr(resources, "rss_mb", lambda: self.value)
        original = resources.MemoryWatch.checkpoint

        def checkpoint(watch, operator):
            self.checkpoints += 1
            self.value = HIGH_MB if self.checkpoints in self.spikes else LOW_MB
            try:
                return original(watch, operator)
            finally:
                self.value = LOW_MB

        monkeypatch.setattr(resources.MemoryWatch, "checkpoint", checkpoint)


class FitChunkRecorder:
    """Sizes of the chunks the fit pass adds to the accumulator."""

    def __init__(self, monkeypatch) -> None:
        self.sizes: list[int] = []
        original = fit_state.FitAccumulator.update

        def update(accumulator, features, is_train):
            self.sizes.append(len(features))
            return original(accumulator, features, is_train)

        monkeypatch.setattr(fit_state.FitAccumulator, "update", update)


FIT_CHUNKS = -(-ROWS // 64)  # one checkpoint per fit-pass chunk (after preprocess)


def test_scripted_breach_in_transform_pass_shrinks_then_grows_back(monkeypatch, unconstrained):
    reference, reference_predictions = unconstrained
    # Checkpoint FIT_CHUNKS + 2 is the first transform chunk's feature_engineering sample.
    memory = ScriptedMemory(monkeypatch, spikes={FIT_CHUNKS + 2})
    recorder = PredictionRecorder(monkeypatch)
    result = run(BASE.with_overrides(max_memory_mb=BUDGET_MB))

    records = result.chunk_records
    assert memory.checkpoints > FIT_CHUNKS + 2
    assert [r["chunk_size"] for r in records] == [32, 64, 64, 64, 64, 64, 48]
    assert [r["retries"] for r in records] == [1, 0, 0, 0, 0, 0, 0]
    assert [r["memory_exceeded"] for r in records] == [True] + [False] * 6
    assert result.section["memory"]["fit_pass_retries"] == 0
    assert result.section["final_chunk_size"] == 64
    assert_each_row_once(result)
    # The fit pass was not touched, so even the bits agree.
    assert_same_outputs(result, recorder.held_out, reference, reference_predictions, exact=True)


def test_scripted_breach_floor_and_retry_limit(monkeypatch):
    # Every sample of the first transform chunk is over budget: 64 -> 32 -> 16 -> 8, then
    # at the floor the chunk is processed and recorded as over budget.
    spikes = set(range(FIT_CHUNKS + 1, FIT_CHUNKS + 40))
    ScriptedMemory(monkeypatch, spikes=spikes)
    result = run(BASE.with_overrides(max_memory_mb=BUDGET_MB))
    first = result.chunk_records[0]
    assert (first["chunk_size"], first["retries"], first["memory_exceeded"]) == (8, 3, True)
    assert_each_row_once(result)


def test_scripted_breach_in_fit_pass_grows_back(monkeypatch):
    """After one breach the fit pass halves the chunk, then doubles back to chunk_size.

    Regression test: _fit_pass used to skip ChunkSizer.after_success, so the rest of the
    fit pass (and the start of the transform pass) kept the halved size."""
    ScriptedMemory(monkeypatch, spikes={1})  # the first fit-pass chunk's preprocess sample
    sizes = FitChunkRecorder(monkeypatch)
    result = run(BASE.with_overrides(max_memory_mb=BUDGET_MB))
    assert sizes.sizes == [32, 64, 64, 64, 64, 64, 48]
    assert result.section["memory"]["fit_pass_retries"] == 1
    assert result.section["memory"]["fit_pass_chunks_over_budget"] == 1
    assert [r["chunk_size"] for r in result.chunk_records][:2] == [64, 64]
    assert_each_row_once(result)


# --------------------------------------------------------------------------------------
# Compute cap
# --------------------------------------------------------------------------------------


@pytest.mark.cpu_exclusive
def test_compute_cap_lowers_measured_utilisation():
    config = BASE.with_overrides(chunk_size=32)
    full = run(config.with_overrides(max_compute_units=1.0)).section["compute"]
    capped = run(config.with_overrides(max_compute_units=0.25)).section["compute"]

    assert full["throttle_pause_s"] == 0.0
    assert capped["throttle_pause_s"] > 0.0
    assert capped["cap"] == 0.25
    ratio = capped["measured_cpu_utilization"] / full["measured_cpu_utilization"]
    assert ratio < 0.6, (capped, full)
    assert capped["throttle_pause_s"] > 0.5 * capped["wall_s"]  # pauses dominate the run
