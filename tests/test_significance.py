"""Tests of the permutation test and bootstrap helpers in nba_pipeline.significance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nba_pipeline.significance import bootstrap_ci, compare_modes, permutation_pvalue


def test_three_vs_three_cannot_reach_five_percent():
    rng = np.random.default_rng(7)
    result = permutation_pvalue(rng.normal(1.0, 0.1, 3), rng.normal(1.0, 0.1, 3), seed=1)
    assert result["exact"] is True
    assert result["n_resamples"] == math.comb(6, 3)
    assert result["min_attainable_pvalue"] == pytest.approx(0.1)
    assert result["can_reach_0_05"] is False
    assert "0.1" in result["note"]
    assert 0.0 < result["pvalue"] <= 1.0


def test_three_vs_three_fully_separated_hits_the_floor():
    result = permutation_pvalue([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], seed=0)
    assert result["pvalue"] == pytest.approx(0.1)
    assert result["statistic"] == pytest.approx(3.0)


def test_separated_ten_vs_ten_is_significant():
    rng = np.random.default_rng(3)
    result = permutation_pvalue(rng.normal(1.0, 0.05, 10), rng.normal(2.0, 0.05, 10), seed=5)
    assert result["pvalue"] < 0.05
    assert 0.0 < result["pvalue"] <= 1.0
    assert result["can_reach_0_05"] is True
    assert result["statistic"] > 0


@pytest.mark.parametrize(("n_a", "n_b"), [(2, 2), (3, 5), (10, 10), (12, 15)])
def test_pvalue_in_half_open_unit_interval(n_a, n_b):
    rng = np.random.default_rng(n_a * 100 + n_b)
    result = permutation_pvalue(rng.normal(size=n_a), rng.normal(size=n_b), seed=2)
    assert 0.0 < result["pvalue"] <= 1.0
    assert result["pvalue"] >= result["min_attainable_pvalue"]


def test_same_seed_same_result():
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=12), rng.normal(0.5, 1.0, 12)
    first = permutation_pvalue(a, b, seed=42)
    assert first["exact"] is False
    assert permutation_pvalue(a, b, seed=42) == first


def test_identical_values_give_pvalue_one():
    result = permutation_pvalue([0.1] * 3, [0.1] * 4, seed=0)
    assert result["pvalue"] == 1.0
    assert result["statistic"] == 0.0


def test_single_observation_matches_exact_enumeration():
    # 1 vs 3: four equally likely relabelings, the observed one is the most extreme.
    result = permutation_pvalue([10.0], [1.0, 2.0, 3.0], seed=0)
    assert result["exact"] is True
    assert result["min_attainable_pvalue"] == pytest.approx(0.5)
    assert result["pvalue"] == pytest.approx(0.5)


@pytest.mark.parametrize(("a", "b", "name"), [([], [1.0, 2.0], "a"), ([1.0, 2.0], [], "b")])
def test_empty_sample_raises_naming_it(a, b, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        permutation_pvalue(a, b, seed=0)


def test_non_finite_sample_raises():
    with pytest.raises(ValueError, match="'b'"):
        permutation_pvalue([1.0, 2.0], [1.0, float("nan")], seed=0)


def test_bootstrap_interval_contains_mean_and_is_deterministic():
    samples = [1.02, 0.97, 1.10, 0.95, 1.05]
    first = bootstrap_ci(samples, seed=3)
    assert first["ci_low"] <= first["mean"] <= first["ci_high"]
    assert first["mean"] == pytest.approx(np.mean(samples))
    assert first["n"] == 5
    assert bootstrap_ci(samples, seed=3) == first


def test_bootstrap_without_spread_has_no_interval():
    for samples in ([1.5], [2.0, 2.0, 2.0]):
        result = bootstrap_ci(samples, seed=0)
        assert result["ci_low"] is None and result["ci_high"] is None
        assert result["mean"] == pytest.approx(samples[0])
        assert result["note"]


@pytest.mark.parametrize(
    ("samples", "confidence"), [([], 0.95), ([1.0, float("inf")], 0.95), ([1.0, 2.0], 1.5)]
)
def test_bootstrap_bad_input_raises(samples, confidence):
    with pytest.raises(ValueError):
        bootstrap_ci(samples, seed=0, confidence=confidence)


def test_compare_modes_row_has_plain_values():
    row = compare_modes([1.0, 1.1, 0.9], [0.8, 0.85, 0.7], [100, 90, 110], [120, 130, 125], 0)
    assert row["latency_mean_delta_s"] == pytest.approx(0.7833333 - 1.0)
    assert row["throughput_mean_delta_rows_s"] == pytest.approx(25.0)
    assert row["n_batch_runs"] == 3 and row["n_streaming_runs"] == 3
    assert row["can_reach_0_05"] is False
    assert row["latency_min_attainable_pvalue"] == pytest.approx(0.1)
    for value in row.values():
        assert type(value) in (float, int, bool, str)


def test_compare_modes_rejects_mismatched_runs():
    with pytest.raises(ValueError, match="batch"):
        compare_modes([1.0, 1.1], [0.8, 0.9], [100.0], [120.0, 110.0], seed=0)
