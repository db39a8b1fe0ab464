"""Tests of the sweep trade-off plots in nba_pipeline.plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nba_pipeline.plots import write_tradeoff_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPECTED_NAMES = {
    "latency_vs_accuracy.png",
    "memory_vs_accuracy.png",
    "latency_memory_accuracy.png",
}


def _sweep(n_rows: int = 9) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "chunk_size": np.resize([32, 64, 256], n_rows),
            "memory_limit_mb": np.resize([128.0, 256.0, 1024.0], n_rows),
            "compute_limit": np.resize([0.25, 0.5, 1.0], n_rows),
            "preprocessing_latency_s": rng.uniform(0.1, 2.0, n_rows),
            "peak_memory_mb": rng.uniform(40.0, 120.0, n_rows),
            "training_time_s": rng.uniform(0.5, 1.0, n_rows),
            "model_accuracy_r2": rng.uniform(0.5, 0.9, n_rows),
            "model_rmse": rng.uniform(1.0, 2.0, n_rows),
        }
    )


def _assert_real_pngs(paths, directory):
    assert {path.name for path in paths} == EXPECTED_NAMES
    for path in paths:
        assert path.parent == directory
        content = path.read_bytes()
        assert content.startswith(PNG_MAGIC)
        assert len(content) > 10_000
    # No temporary files are left behind by the atomic write.
    assert {path.name for path in directory.iterdir()} == EXPECTED_NAMES


def test_writes_three_real_pngs(tmp_path):
    _assert_real_pngs(write_tradeoff_plots(_sweep(), tmp_path), tmp_path)


def test_same_data_renders_identical_bytes(tmp_path):
    first = [path.read_bytes() for path in write_tradeoff_plots(_sweep(), tmp_path / "one")]
    second = [path.read_bytes() for path in write_tradeoff_plots(_sweep(), tmp_path / "two")]
    assert first == second


def test_png_has_no_software_version(tmp_path):
    for path in write_tradeoff_plots(_sweep(), tmp_path):
        assert b"Matplotlib version" not in path.read_bytes()


def test_one_row_sweep(tmp_path):
    _assert_real_pngs(write_tradeoff_plots(_sweep(1), tmp_path), tmp_path)


def test_nan_scores_do_not_crash(tmp_path):
    sweep = _sweep().assign(model_accuracy_r2=np.nan)
    _assert_real_pngs(write_tradeoff_plots(sweep, tmp_path), tmp_path)
    one_row = _sweep(1).assign(model_accuracy_r2=np.nan, compute_limit=np.nan)
    _assert_real_pngs(write_tradeoff_plots(one_row, tmp_path), tmp_path)


def test_missing_column_raises(tmp_path):
    with pytest.raises(ValueError, match="model_rmse"):
        write_tradeoff_plots(_sweep().drop(columns="model_rmse"), tmp_path)


def test_empty_sweep_raises(tmp_path):
    with pytest.raises(ValueError, match="no rows"):
        write_tradeoff_plots(_sweep().iloc[:0], tmp_path)
