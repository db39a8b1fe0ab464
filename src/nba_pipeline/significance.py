"""Statistics on repeated benchmark measurements, computed with scipy.stats.

The benchmark repeats each preprocessing mode a handful of times, so every function here reports
not only a number but also how far that number can be trusted: the bootstrap interval says how
uncertain a mean is, and the permutation test says both its p-value and the smallest p-value
the test could possibly have produced with that many runs.  With 3 runs per mode that floor is
0.1, so "not significant" there means "not testable", and the notes say so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Resamples for the randomized permutation test and for the bootstrap.
N_RESAMPLES = 9_999
#: Largest number of distinct relabelings that is enumerated exactly.
MAX_EXACT_RELABELINGS = 100_000
#: Largest number of orderings the single-observation fallback may enumerate.
MAX_EXACT_ORDERINGS = 1_000_000
#: Permutations evaluated per vectorized call, to bound memory on exact enumerations.
PERMUTATION_BATCH = 10_000
#: Below this many runs a percentile bootstrap interval is known to be too narrow.
SMALL_SAMPLE_RUNS = 10
SIGNIFICANCE_LEVEL = 0.05


def bootstrap_ci(samples: Sequence[float], seed: int, confidence: float = 0.95) -> dict:
    """Return the mean of ``samples`` and a seeded percentile-bootstrap interval for it.

    The interval comes from :func:`scipy.stats.bootstrap` (percentile method, 9,999 resamples)
    driven by ``numpy.random.default_rng(seed)``, so the same data and seed give the same
    interval.  With fewer than two samples, or when all samples are equal, no interval can be
    estimated: ``ci_low`` and ``ci_high`` are ``None`` and ``note`` says why.

    Returns a dict with keys ``n``, ``mean``, ``std`` (sample standard deviation, ``None`` for
    a single sample), ``ci_low``, ``ci_high``, ``confidence``, ``method`` and ``note``.

    Raises ``ValueError`` for an empty sample, non-finite values or a confidence outside (0, 1).
    """
    values = _as_sample(samples, "samples")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")
    result = _summary(values, confidence)
    if values.size < 2:
        result["note"] = "only 1 sample: a confidence interval needs at least 2"
    elif np.all(values == values[0]):
        result["note"] = f"all {values.size} samples are equal: the interval is degenerate"
    else:
        result.update(_percentile_interval(values, seed, confidence))
    return result


def permutation_pvalue(a: Sequence[float], b: Sequence[float], seed: int) -> dict:
    """Two-sided permutation test of ``mean(b) - mean(a)`` (:func:`scipy.stats.permutation_test`).

    The relabelings of the pooled runs are enumerated exactly when there are at most 100,000
    of them; otherwise 9,999 relabelings are drawn from ``numpy.random.default_rng(seed)``.
    A sample with a single run, which scipy's 'independent' mode rejects, is tested through the
    equivalent 'pairings' formulation on the pooled runs.  Identical data gives p = 1.

    Returns a dict with keys ``pvalue`` (in (0, 1]), ``statistic`` (``mean(b) - mean(a)``),
    ``n_a``, ``n_b``, ``exact``, ``n_resamples`` (relabelings evaluated),
    ``min_attainable_pvalue`` (the smallest p-value this test can return for these sample
    sizes), ``can_reach_0_05`` and ``note`` (one sentence on what the result can mean).

    Raises ``ValueError`` naming the sample that is empty or holds non-finite values.
    """
    x = _as_sample(a, "a")
    y = _as_sample(b, "b")
    exact, n_resamples = _test_plan(x.size, y.size)
    identical = bool(np.all(x == x[0]) and np.all(y == x[0]))
    statistic = 0.0 if identical else float(_mean_difference(x, y))
    # Rounding in the means of unequal-size groups would otherwise turn identical data into a
    # null distribution of +-1e-17 noise and a p-value below 1 for no difference at all.
    pvalue = 1.0 if identical else _run_permutation_test(x, y, seed, exact)
    floor = _min_attainable_pvalue(x.size, y.size, exact, n_resamples)
    note = _permutation_note(x.size, y.size, exact, n_resamples, floor)
    return {
        "pvalue": pvalue,
        "statistic": statistic,
        "n_a": int(x.size),
        "n_b": int(y.size),
        "exact": bool(exact),
        "n_resamples": int(n_resamples),
        "min_attainable_pvalue": floor,
        "can_reach_0_05": bool(floor < SIGNIFICANCE_LEVEL),
        "note": note + (" All values are identical, so p = 1." if identical else ""),
    }


def compare_modes(
    batch_latencies: Sequence[float],
    streaming_latencies: Sequence[float],
    batch_throughputs: Sequence[float],
    streaming_throughputs: Sequence[float],
    seed: int,
) -> dict:
    """Compare batch and streaming runs; return one row for ``significance_tests.csv``.

    Latency and throughput are each tested with :func:`permutation_pvalue`; deltas are
    streaming minus batch, so a negative latency delta means streaming was faster.

    Columns: ``n_batch_runs``, ``n_streaming_runs``, ``batch_latency_mean_s``,
    ``streaming_latency_mean_s``, ``latency_mean_delta_s``, ``latency_pvalue``,
    ``latency_exact``, ``latency_min_attainable_pvalue``, ``batch_throughput_mean_rows_s``,
    ``streaming_throughput_mean_rows_s``, ``throughput_mean_delta_rows_s``,
    ``throughput_pvalue``, ``throughput_exact``, ``throughput_min_attainable_pvalue``,
    ``can_reach_0_05``, ``test``, ``seed`` and ``note``; all plain Python scalars.

    Raises ``ValueError`` when a mode's latency and throughput lists differ in length, or when
    :func:`permutation_pvalue` rejects a sample.
    """
    _check_same_runs(batch_latencies, batch_throughputs, "batch")
    _check_same_runs(streaming_latencies, streaming_throughputs, "streaming")
    latency = permutation_pvalue(batch_latencies, streaming_latencies, seed)
    throughput = permutation_pvalue(batch_throughputs, streaming_throughputs, seed)
    row: dict[str, Any] = {
        "n_batch_runs": latency["n_a"],
        "n_streaming_runs": latency["n_b"],
        "batch_latency_mean_s": float(np.mean(batch_latencies)),
        "streaming_latency_mean_s": float(np.mean(streaming_latencies)),
        "latency_mean_delta_s": latency["statistic"],
        "latency_pvalue": latency["pvalue"],
        "latency_exact": latency["exact"],
        "latency_min_attainable_pvalue": latency["min_attainable_pvalue"],
        "batch_throughput_mean_rows_s": float(np.mean(batch_throughputs)),
        "streaming_throughput_mean_rows_s": float(np.mean(streaming_throughputs)),
        "throughput_mean_delta_rows_s": throughput["statistic"],
        "throughput_pvalue": throughput["pvalue"],
        "throughput_exact": throughput["exact"],
        "throughput_min_attainable_pvalue": throughput["min_attainable_pvalue"],
        "can_reach_0_05": latency["can_reach_0_05"] and throughput["can_reach_0_05"],
        "test": "two-sided permutation test of the difference of means (scipy.stats)",
        "seed": int(seed),
        "note": _comparison_note(latency, throughput),
    }
    logger.info(
        "batch vs streaming: latency p=%.4g, throughput p=%.4g (floor %.4g)",
        row["latency_pvalue"],
        row["throughput_pvalue"],
        row["latency_min_attainable_pvalue"],
    )
    return row


def _as_sample(values: Sequence[float], name: str) -> np.ndarray:
    """Return ``values`` as a 1-D float array, or raise ValueError naming the sample."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sample {name!r} must contain numbers: {exc}") from exc
    if array.ndim != 1:
        raise ValueError(f"sample {name!r} must be one-dimensional, got shape {array.shape}")
    if array.size < 1:
        raise ValueError(f"sample {name!r} is empty: at least 1 measurement is needed")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"sample {name!r} contains NaN or infinite values")
    return array


def _summary(values: np.ndarray, confidence: float) -> dict:
    """Return the bootstrap result skeleton: descriptive statistics and no interval yet."""
    return {
        "n": int(values.size),
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if values.size > 1 else None,
        "ci_low": None,
        "ci_high": None,
        "confidence": float(confidence),
        "method": f"percentile bootstrap of the mean ({N_RESAMPLES} resamples)",
        "note": "",
    }


def _percentile_interval(values: np.ndarray, seed: int, confidence: float) -> dict:
    """Return ``ci_low``, ``ci_high`` and a note from a seeded percentile bootstrap."""
    # Percentile rather than BCa: BCa's jackknife acceleration is undefined or unstable for
    # the 2-5 runs a benchmark typically has.
    from scipy import stats  # imported when first used: a second of start-up

    result = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=N_RESAMPLES,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    note = ""
    if values.size < SMALL_SAMPLE_RUNS:
        note = (
            f"only {values.size} samples: a percentile bootstrap interval tends to be too "
            "narrow at this size, treat it as indicative"
        )
    return {
        "ci_low": float(result.confidence_interval.low),
        "ci_high": float(result.confidence_interval.high),
        "note": note,
    }


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Vectorized ``mean(b) - mean(a)`` that is invariant to the order of observations."""
    # Sorting first makes each mean depend only on the multiset of values, so relabelings
    # that produce the same groups give bit-identical statistics and ties are counted right.
    return np.mean(np.sort(b, axis=axis), axis=axis) - np.mean(np.sort(a, axis=axis), axis=axis)


def _test_plan(n_a: int, n_b: int) -> tuple[bool, int]:
    """Return (exact, relabelings evaluated) for samples of these sizes."""
    n_relabelings = math.comb(n_a + n_b, n_a)
    if min(n_a, n_b) < 2:
        # The single-observation fallback enumerates orderings, not relabelings.
        exact = math.factorial(n_a + n_b) <= MAX_EXACT_ORDERINGS
    else:
        exact = n_relabelings <= MAX_EXACT_RELABELINGS
    return exact, n_relabelings if exact else N_RESAMPLES


def _run_permutation_test(x: np.ndarray, y: np.ndarray, seed: int, exact: bool) -> float:
    """Return the two-sided p-value, enumerating every relabeling when ``exact``."""
    if min(x.size, y.size) < 2:
        return _single_observation_test(x, y, seed, exact)
    from scipy import stats

    result = stats.permutation_test(
        (x, y),
        _mean_difference,
        permutation_type="independent",
        vectorized=True,
        n_resamples=np.inf if exact else N_RESAMPLES,
        batch=PERMUTATION_BATCH,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return _valid_pvalue(result.pvalue)


def _single_observation_test(x: np.ndarray, y: np.ndarray, seed: int, exact: bool) -> float:
    """Run the same test when a sample has one run, which 'independent' mode rejects.

    Permuting the order of the pooled runs and splitting after ``len(x)`` visits every
    relabeling equally often (``len(x)! * len(y)!`` times each), so scipy's 'pairings' mode on
    the pooled sample has the same null distribution and p-value as the 'independent' test.
    """
    pooled = np.concatenate([x, y])
    split = x.size

    def statistic(values: np.ndarray, axis: int = -1) -> np.ndarray:
        values = np.moveaxis(values, axis, -1)
        return _mean_difference(values[..., :split], values[..., split:])

    from scipy import stats

    result = stats.permutation_test(
        (pooled,),
        statistic,
        permutation_type="pairings",
        vectorized=True,
        n_resamples=np.inf if exact else N_RESAMPLES,
        batch=PERMUTATION_BATCH,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return _valid_pvalue(result.pvalue)


def _valid_pvalue(pvalue: Any) -> float:
    """Return ``pvalue`` as a float after checking it lies in (0, 1]."""
    value = float(pvalue)
    if not 0.0 < value <= 1.0:
        raise RuntimeError(f"permutation test returned p-value {value}, outside (0, 1]")
    return value


def _min_attainable_pvalue(n_a: int, n_b: int, exact: bool, n_resamples: int) -> float:
    """Return the smallest two-sided p-value the test can produce for these sample sizes.

    Exact test: the observed labeling is one of ``C(n_a + n_b, n_a)`` equally likely ones,
    and scipy doubles the smaller tail, so the floor is ``2 / C``.  Randomized test: scipy
    counts the observed labeling in both numerator and denominator, so one tail is at least
    ``1 / (n_resamples + 1)`` and the two-sided floor is twice that; it cannot beat the exact
    floor ``2 / C`` either, except by sampling luck.
    """
    exact_floor = 2.0 / math.comb(n_a + n_b, n_a)
    if exact:
        return min(1.0, exact_floor)
    return min(1.0, max(exact_floor, 2.0 / (n_resamples + 1)))


def _permutation_note(n_a: int, n_b: int, exact: bool, n_resamples: int, floor: float) -> str:
    """Return one sentence on how the test was run and whether p < 0.05 is reachable."""
    how = (
        f"exact test over all {n_resamples} relabelings"
        if exact
        else f"randomized test with {n_resamples} seeded relabelings"
    )
    reach = "can" if floor < SIGNIFICANCE_LEVEL else "cannot"
    return (
        f"{n_a} vs {n_b} runs, {how}: the smallest attainable two-sided p-value is "
        f"{floor:.3g}, so p < {SIGNIFICANCE_LEVEL} {reach} be reached."
    )


def _check_same_runs(latencies: Sequence[float], throughputs: Sequence[float], mode: str) -> None:
    """Raise ValueError when a mode's latency and throughput lists cover different runs."""
    if len(latencies) != len(throughputs):
        raise ValueError(
            f"{mode}: {len(latencies)} latencies but {len(throughputs)} throughputs; "
            "both must come from the same runs"
        )


def _comparison_note(latency: dict, throughput: dict) -> str:
    """Return the row's note: the latency test's note plus a warning when untestable."""
    note = f"Latency and throughput: {latency['note']}"
    if latency["note"] != throughput["note"]:
        note = f"Latency: {latency['note']} Throughput: {throughput['note']}"
    if not (latency["can_reach_0_05"] and throughput["can_reach_0_05"]):
        note += " Add benchmark runs before reading a large p-value as 'no difference'."
    return note
