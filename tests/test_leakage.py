"""Nothing about the held-out rows reaches the fitted state or the models.

The checks edit held-out rows (found with the pipeline's own split function) and require
the fitted state to stay exactly the same, while the same edit on training rows must change
it; they recompute the imputation and scaling statistics from the training rows alone; and
they record every row the online and batch models are trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import SGDRegressor

from nba_pipeline import batch as batch_module
from nba_pipeline.batch import run_batch
from nba_pipeline.config import PipelineConfig
from nba_pipeline.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from nba_pipeline.ingestion import InputSource
from nba_pipeline.splitting import is_training_row
from nba_pipeline.streaming import run_streaming
from nba_pipeline.synth import sample_dataset_path

CONFIG = PipelineConfig().with_overrides(
    max_compute_units=1.0, max_memory_mb=1_000_000.0, chunk_size=32
)


def raw_frame(path: Path) -> pd.DataFrame:
    """The raw table as strings, exactly as in the file (empty cells stay empty)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.index = pd.RangeIndex(2, len(frame) + 2, name="line")  # file line numbers
    return frame


def training_mask(frame: pd.DataFrame, config: PipelineConfig = CONFIG) -> np.ndarray:
    names = frame["full_name"].str.strip().to_numpy(dtype=object)
    return is_training_row(names, config.random_seed, config.test_fraction)


def normalised(name: str) -> str:
    return " ".join(name.split()).lower()


@pytest.fixture(scope="module")
def sample_frame() -> pd.DataFrame:
    return raw_frame(sample_dataset_path())


def edit(frame: pd.DataFrame, rows: np.ndarray, **values: str) -> pd.DataFrame:
    edited = frame.copy()
    for column, value in values.items():
        edited.loc[rows, column] = value
    return edited


def batch_state(frame: pd.DataFrame):
    return run_batch(InputSource.from_frame(frame), CONFIG).state


HELD_OUT_EDITS = [
    pytest.param({"height": "7-7 / 2.31"}, id="height"),
    pytest.param({"height": ""}, id="height-missing"),
    pytest.param({"weight": "400 lbs. / 181.4 kg."}, id="weight"),
    pytest.param({"salary": "$99999999"}, id="salary"),
    pytest.param({"rating": "40", "b_day": "01/01/60", "draft_year": "1980"}, id="rating-age"),
    pytest.param({"team": "Seattle SuperSonics", "position": "PG"}, id="categories"),
    pytest.param({"team": "", "country": ""}, id="categories-missing"),
]


@pytest.mark.parametrize("values", HELD_OUT_EDITS)
def test_held_out_values_do_not_change_the_fitted_state(sample_frame, values):
    held_out = ~training_mask(sample_frame)
    assert 40 < held_out.sum() < 120
    baseline = batch_state(sample_frame)
    edited = batch_state(edit(sample_frame, sample_frame.index[held_out], **values))
    assert edited == baseline  # every field, the correlation table included


@pytest.mark.parametrize("values", HELD_OUT_EDITS[:4])
def test_the_same_edit_on_training_rows_does_change_it(sample_frame, values):
    """Control: the comparison above is sensitive to the edits it makes."""
    train = training_mask(sample_frame)
    rows = sample_frame.index[train][::3]
    assert batch_state(edit(sample_frame, rows, **values)) != batch_state(sample_frame)


def test_streaming_state_ignores_held_out_rows(sample_frame):
    held_out = sample_frame.index[~training_mask(sample_frame)]
    edited = edit(sample_frame, held_out, height="7-7 / 2.31", salary="$99999999")
    baseline = run_streaming(InputSource.from_frame(sample_frame), CONFIG)
    changed = run_streaming(InputSource.from_frame(edited), CONFIG)
    assert changed.state == baseline.state


def test_imputation_and_scaling_statistics_come_from_training_rows(sample_frame):
    train = training_mask(sample_frame)
    frame = edit(sample_frame, sample_frame.index[train][::5], height="", rating="")
    frame = edit(frame, frame.index[~train], team="Seattle SuperSonics")
    result = run_batch(InputSource.from_frame(frame), CONFIG)
    state, transformed = result.state, result.transformed
    features = transformed.features.to_frame()
    is_train = transformed.is_train
    np.testing.assert_array_equal(is_train, train)  # no quarantine, same order

    train_features = features[is_train]
    assert train_features["height_m"].isna().any()
    assert state.n_train_rows == is_train.sum()
    for name in NUMERIC_FEATURES:
        column = train_features[name].to_numpy(dtype=float)
        expected_mean = np.nanmean(column) if np.isfinite(column).any() else 0.0
        assert state.numeric_fill[name] == pytest.approx(expected_mean, rel=1e-9), name
    for name in state.selected_numeric:
        column = train_features[name].to_numpy(dtype=float)
        imputed = np.where(np.isnan(column), state.numeric_fill[name], column)
        assert state.scaler_mean[name] == pytest.approx(imputed.mean(), rel=1e-9), name
        assert state.scaler_scale[name] == pytest.approx(imputed.std(), rel=1e-9), name
    for name in CATEGORICAL_FEATURES:
        counts = train_features[name].dropna().value_counts()
        assert state.vocabulary[name] == sorted(counts.index)
        top = counts[counts == counts.max()].index
        assert state.categorical_fill[name] == min(top)
    salaries = features.loc[is_train, "salary"]
    assert state.target_mean == pytest.approx(salaries.mean(), rel=1e-12)
    assert state.target_scale == pytest.approx(salaries.std(ddof=0), rel=1e-9)

    # A team only held-out rows have is not a column, and encodes as all zeros.
    assert "Seattle SuperSonics" not in state.vocabulary["team"]
    matrix = transformed.frame()
    team_columns = [c for c in matrix.columns if c.startswith("team=")]
    assert (matrix.loc[~is_train, team_columns] == 0).all(axis=None)
    assert (matrix.loc[is_train, team_columns].sum(axis=1) == 1).all()


def test_iqr_bounds_come_from_each_features_training_values(sample_frame):
    result = run_batch(InputSource.from_frame(sample_frame), CONFIG)
    features = result.transformed.features.to_frame()[result.transformed.is_train]
    bounds = result.state.iqr_bounds
    assert {"rating", "height_m", "weight_kg"} <= set(bounds)
    for name, (low, high) in bounds.items():
        q1, q3 = np.nanquantile(features[name].to_numpy(dtype=float), [0.25, 0.75])
        expected = (q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1))
        assert (low, high) == pytest.approx(expected, rel=1e-12), name


def test_iqr_bounds_ignore_held_out_rows(sample_frame):
    held_out = sample_frame.index[~training_mask(sample_frame)]
    edited = edit(sample_frame, held_out, height="8-0 / 2.44", weight="400 lbs. / 181.4 kg.")
    baseline = batch_state(sample_frame).iqr_bounds
    assert batch_state(edited).iqr_bounds == baseline
    assert baseline


def test_missing_target_is_quarantined_not_imputed(raw_csv):
    rows = [
        {"full_name": f"Player {i}", "salary": f"${1_000_000 + i * 37_000}"} for i in range(40)
    ]
    rows[5]["salary"] = ""
    rows[30]["salary"] = "   "
    path = raw_csv(rows)
    result = run_batch(InputSource.from_path(path), CONFIG)
    quarantine = result.transformed.quarantine
    assert quarantine["line"].tolist() == [7, 32]
    assert quarantine["reason"].str.startswith("salary: missing").all()
    matrix = result.transformed.frame()
    assert 7 not in matrix.index and 32 not in matrix.index
    assert len(matrix) == 38
    assert np.isfinite(result.transformed.y).all()
    assert result.section["rows_quarantined"] == 2

    streaming = run_streaming(InputSource.from_path(path), CONFIG.with_overrides(chunk_size=8))
    assert streaming.quarantine["line"].tolist() == [7, 32]
    assert streaming.section["rows_processed"] == 38


def assert_no_player_on_both_sides(path: Path):
    result = run_batch(InputSource.from_path(path), CONFIG)
    names = raw_frame(path)["full_name"].loc[result.transformed.line_numbers]
    sides = pd.Series(result.transformed.is_train).groupby(names.map(normalised).to_numpy())
    assert (sides.nunique() == 1).all()
    both = set(names[result.transformed.is_train].map(normalised)) & set(
        names[~result.transformed.is_train].map(normalised)
    )
    assert not both
    return names


def test_no_player_on_both_sides_in_the_sample(sample_path):
    names = assert_no_player_on_both_sides(sample_path)
    assert names.duplicated().any()  # the sample does repeat players


def test_no_player_on_both_sides_in_the_real_table(real_data_path):
    names = assert_no_player_on_both_sides(real_data_path)
    assert names.duplicated().sum() == 10


@pytest.mark.parametrize("chunk_size", [7, 64])
def test_online_model_learns_training_rows_only(sample_path, monkeypatch, chunk_size):
    learned_X, learned_y = [], []
    original = SGDRegressor.partial_fit

    def recording_partial_fit(self, X, y, *args, **kwargs):
        learned_X.append(np.array(X, copy=True))
        learned_y.append(np.array(y, copy=True))
        return original(self, X, y, *args, **kwargs)

    monkeypatch.setattr(SGDRegressor, "partial_fit", recording_partial_fit)
    config = CONFIG.with_overrides(chunk_size=chunk_size, batch_size=50)
    result = run_streaming(InputSource.from_path(sample_path), config, keep_matrix=True)
    reference = run_batch(InputSource.from_path(sample_path), config).transformed
    train = reference.is_train

    X = np.vstack(learned_X)
    assert len(X) == train.sum() == result.state.n_train_rows
    assert result.section["model"]["n_train"] == train.sum()
    assert result.section["model"]["n_test"] == (~train).sum()
    assert result.section["model"]["updates"] == len(learned_X) == -(-train.sum() // 50)
    # The rows learned are exactly the training rows, in file order.
    np.testing.assert_allclose(X, result.matrix.to_numpy()[train], rtol=0, atol=1e-9)
    state = result.state
    y = np.concatenate(learned_y) * state.target_scale + state.target_mean
    np.testing.assert_allclose(y, reference.y[train], rtol=1e-12)


def test_batch_model_is_fitted_on_training_rows_only(sample_path, monkeypatch):
    calls = []
    original = batch_module.fit_batch_model

    def recording_fit(X, y, seed):
        calls.append((X.copy(), y.copy()))
        return original(X, y, seed)

    monkeypatch.setattr(batch_module, "fit_batch_model", recording_fit)
    result = run_batch(InputSource.from_path(sample_path), CONFIG)
    ((X, y),) = calls
    train = result.transformed.is_train
    np.testing.assert_array_equal(X, result.transformed.X[train])
    np.testing.assert_array_equal(y, result.transformed.y[train])
    assert result.section["model"]["n_test"] == (~train).sum()
