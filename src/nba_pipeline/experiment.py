"""The constraint sweep and the latency-versus-data-size measurements.

Every sweep setting is a full streaming run with its own chunk size, memory budget and
compute cap; its row records what actually ran (the chunk sizes after adaptive resizing,
retries, the measured CPU utilisation) next to what was asked for, and its model scores on
the held-out rows.
"""

from __future__ import annotations

import itertools
import logging
import statistics
from collections.abc import Mapping, Sequence

from .config import PipelineConfig
from .distributed.cluster import SequentialExecutor
from .ingestion import InputSource, head_source
from .isolation import MeasuredRunFailed
from .progress import Progress, progress_counter

logger = logging.getLogger(__name__)


def run_constraint_sweep(
    source: InputSource,
    config: PipelineConfig,
    progress: Progress = None,
    executor: SequentialExecutor | None = None,
) -> dict:
    """Run every setting of the grid; returns the ``constraint_experiment`` section.

    ``executor`` decides where the settings run (here, one after another, by default; or
    on a Dask cluster); rows come back in grid order either way.
    """
    grid = list(
        itertools.product(
            config.sweep_chunk_sizes, config.sweep_memory_limits_mb, config.sweep_compute_limits
        )
    )
    runs = [
        (
            "streaming",
            source,
            config.with_overrides(
                chunk_size=chunk_size, max_memory_mb=memory_mb, max_compute_units=compute
            ),
        )
        for chunk_size, memory_mb, compute in grid
    ]
    tick = progress_counter(progress, "constraint sweep", len(grid))
    executor = executor or SequentialExecutor()
    logger.info("constraint sweep: %d settings, engine %s", len(grid), executor.engine)
    outcomes = executor.run_all("constraint_experiment", runs, tick)

    rows, log = [], []
    for (chunk_size, memory_mb, compute), outcome in zip(grid, outcomes, strict=True):
        requested = {
            "chunk_size": chunk_size,
            "memory_limit_mb": memory_mb,
            "compute_limit": compute,
        }
        ran_on = outcome["ran_on"] or {}
        if outcome["error"] is not None:
            rows.append(_failed_row(requested, outcome["error"], ran_on.get("address")))
            log.append(
                {
                    "setting": requested,
                    "result": rows[-1],
                    "error": outcome["error"],
                    "worker": {"ran_on": outcome["ran_on"]},
                }
            )
            logger.warning("sweep setting %s failed: %s", requested, outcome["error"])
            continue
        section = outcome["section"]
        rows.append(_sweep_row(chunk_size, memory_mb, compute, section, ran_on.get("address")))
        log.append(
            {
                "setting": requested,
                "result": rows[-1],
                "chunk_sizes_run": [record["chunk_size"] for record in section["chunk_metrics"]],
                "memory": section["memory"],
                "compute": section["compute"],
                "worker": {**(outcome["accounting"] or {}), "ran_on": outcome["ran_on"]},
            }
        )
        logger.info(
            "sweep %s on %s: %.3f s, r2 %s",
            requested,
            rows[-1]["worker"],
            rows[-1]["preprocessing_latency_s"],
            rows[-1]["model_accuracy_r2"],
        )
    return {
        "grid": {
            "chunk_sizes": list(config.sweep_chunk_sizes),
            "memory_limits_mb": list(config.sweep_memory_limits_mb),
            "compute_limits": list(config.sweep_compute_limits),
        },
        "settings": rows,
        "log": log,
        "enforcement": {
            "memory": "RSS sampled after every operator; adaptive split-and-retry on breach; "
            "a budget below the worker's baseline fails the setting",
            "compute": _compute_enforcement(rows)
            if config.isolate_runs
            else "duty-cycle sleep after each chunk and model update",
            "isolation": "each setting in a fresh worker process"
            if config.isolate_runs
            else "settings run one after another in one process",
        },
    }


def _compute_enforcement(rows: list[dict]) -> str:
    """How the CPU caps of the settings that ran were applied, from the rows themselves."""
    mechanisms = sorted({row["compute_mechanism"] for row in rows if row.get("compute_mechanism")})
    if not mechanisms:
        return "no setting ran"
    return "as each setting's compute_mechanism says: " + "; ".join(mechanisms)


def _failed_row(requested: dict, error: str, worker: str | None = None) -> dict:
    """A sweep row for a setting that could not run: its error and no invented figures."""
    empty = dict.fromkeys(
        (
            "preprocessing_latency_s",
            "peak_memory_mb",
            "training_time_s",
            "model_accuracy_r2",
            "model_rmse",
        )
    )
    return {
        **requested,
        **empty,
        "chunk_size_requested": requested["chunk_size"],
        "error": error,
        "worker": worker,
    }


def _sweep_row(
    chunk_size: int, memory_mb: float, compute: float, section: dict, worker: str | None
) -> dict:
    sizes = [record["chunk_size"] for record in section["chunk_metrics"]]
    return {
        "chunk_size": max(sizes),
        "memory_limit_mb": memory_mb,
        "compute_limit": compute,
        "preprocessing_latency_s": section["latency_s"],
        "peak_memory_mb": section["memory"]["peak_rss_mb"],
        "training_time_s": section["model"]["training_time_s"],
        "model_accuracy_r2": section["model"]["r2"],
        "model_rmse": section["model"]["rmse"],
        "chunk_size_requested": chunk_size,
        "chunk_size_median": statistics.median(sizes),
        "chunk_size_min": min(sizes),
        "chunks": len(sizes),
        "chunks_over_budget": section["memory"]["chunks_over_budget"],
        "retries": section["memory"]["retries"],
        "throughput_rows_s": section["throughput_rows_s"],
        "measured_cpu_utilization": section["compute"]["measured_cpu_utilization"],
        "compute_mechanism": section["compute"]["mechanism"],
        "prequential_rmse": section["model"]["prequential_rmse"],
        "baseline_rss_mb": section["memory"].get("baseline_rss_mb"),
        "error": None,
        # Which worker ran the setting: a Dask worker's address, or "local".
        "worker": worker,
    }


def latency_vs_data_size(
    source: InputSource,
    config: PipelineConfig,
    total_rows: int,
    progress: Progress = None,
    executor: SequentialExecutor | None = None,
    full_size_latencies: Mapping[str, Sequence[float]] | None = None,
) -> list[dict]:
    """Batch and streaming latency on the first rows of the input, at several sizes.

    Each size is a real prefix of the input's records; the median of
    ``benchmark_runs`` repetitions is reported with every repetition kept.  The whole input
    is what the benchmark's repetitions ran on, with the same settings: given their
    latencies per mode (``full_size_latencies``), that point reports them instead of
    measuring the same runs again.
    """
    points = []
    for fraction in config.data_size_fractions:
        size = max(1, round(total_rows * fraction))
        reused = full_size_latencies is not None and size == total_rows
        subset = None if reused else head_source(source, size)
        points += [(fraction, size, mode, subset) for mode in ("batch", "streaming")]
    runs = [
        (mode, subset, config)
        for _, _, mode, subset in points
        if subset is not None
        for _ in range(config.benchmark_runs)
    ]
    tick = progress_counter(progress, "data sizes", len(runs))
    outcomes = iter((executor or SequentialExecutor()).run_all("latency_vs_data_size", runs, tick))

    rows = []
    for fraction, size, mode, subset in points:
        if subset is None:
            latencies = list(full_size_latencies[mode])
        else:
            latencies = [
                measured_section(next(outcomes))["latency_s"] for _ in range(config.benchmark_runs)
            ]
        median = statistics.median(latencies)
        rows.append(
            {
                "mode": mode,
                "rows": size,
                "fraction": fraction,
                "latency_s": median,
                "throughput_rows_s": size / median,
                "repetitions": len(latencies),
                "latency_runs_s": " ".join(f"{value:.6f}" for value in latencies),
            }
        )
    return rows


def measured_section(outcome: dict) -> dict:
    """The report section of a measured run that had to succeed (a benchmark repetition)."""
    if outcome["error"] is not None:
        raise MeasuredRunFailed(outcome["error"])
    return outcome["section"]
