"""The bounded-memory quantile sketch: exact when small, within its stated bound when not."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nba_pipeline.quantiles import QuantileSketch

PROBABILITIES = [0.01, 0.25, 0.5, 0.75, 0.99]


@given(
    st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=300), st.integers(1, 50)
)
def test_small_inputs_give_exact_quantiles_in_any_chunking(values, chunk):
    sketch = QuantileSketch(capacity=512)
    data = np.array(values)
    for start in range(0, len(data), chunk):
        sketch.update(data[start : start + chunk])
    assert sketch.exact and sketch.rank_error_bound == 0.0
    np.testing.assert_allclose(sketch.quantiles(PROBABILITIES), np.quantile(data, PROBABILITIES))


@pytest.mark.parametrize("chunk", [64, 1_000, 50_000])
def test_large_inputs_stay_within_the_rank_error_bound(chunk):
    data = np.random.default_rng(3).lognormal(size=200_000)
    sketch = QuantileSketch(capacity=1_024)
    for start in range(0, data.size, chunk):
        sketch.update(data[start : start + chunk])
    assert not sketch.exact
    assert sum(level.size for level in sketch.levels) < 1_024 * (len(sketch.levels) + 1)
    for probability, value in zip(PROBABILITIES, sketch.quantiles(PROBABILITIES), strict=True):
        rank = (data < value).mean()
        assert abs(rank - probability) <= sketch.rank_error_bound, probability


def test_missing_values_are_ignored_and_empty_gives_nan():
    sketch = QuantileSketch()
    assert np.isnan(sketch.quantiles([0.5])).all()
    sketch.update(np.array([np.nan, 1.0, 3.0, np.nan]))
    assert sketch.count == 2
    assert sketch.quantiles([0.5])[0] == 2.0
