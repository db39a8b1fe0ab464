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

from .config import PipelineConfig
from .ingestion import InputSource, head_source
from .isolation import MeasuredRunFailed, measure
from .progress import Progress, progress_counter

logger = logging.getLogger(__name__)


def run_constraint_sweep(
    source: InputSource, config: PipelineConfig, progress: Progress = None
) -> dict:
    """Run every setting of the grid; returns the ``constraint_experiment`` section."""
    grid = list(
        itertools.product(
            config.sweep_chunk_sizes, config.sweep_memory_limits_mb, config.sweep_compute_limits
        )
    )
    rows, log = [], []
    tick = progress_counter(progress, "constraint sweep", len(grid))
    for chunk_size, memory_mb, compute in grid:
        setting = config.with_overrides(
            chunk_size=chunk_size, max_memory_mb=memory_mb, max_compute_units=compute
        )
        requested = {
            "chunk_size": chunk_size,
            "memory_limit_mb": memory_mb,
            "compute_limit": compute,
        }
        try:
            result, accounting = measure("streaming", source, setting)
        except MeasuredRunFailed as failure:
            rows.append(_failed_row(requested, str(failure)))
            log.append({"setting": requested, "result": rows[-1], "error": str(failure)})
            logger.warning("sweep setting %s failed: %s", requested, failure)
            tick()
            continue
        section = result.section
        rows.append(_sweep_row(chunk_size, memory_mb, compute, section))
        log.append(
            {
                "setting": requested,
                "result": rows[-1],
                "chunk_sizes_run": [record["chunk_size"] for record in section["chunk_metrics"]],
                "memory": section["memory"],
                "compute": section["compute"],
                "worker": accounting,
            }
        )
        logger.info(
            "sweep %s: %.3f s, r2 %s",
            requested,
            rows[-1]["preprocessing_latency_s"],
            rows[-1]["model_accuracy_r2"],
        )
        tick()
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
            "compute": "SIGSTOP/SIGCONT of the worker by the parent process"
            if config.isolate_runs
            else "duty-cycle sleep after each chunk and model update",
            "isolation": "each setting in a fresh worker process"
            if config.isolate_runs
            else "settings run one after another in one process",
        },
    }


def _failed_row(requested: dict, error: str) -> dict:
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
    return {**requested, **empty, "chunk_size_requested": requested["chunk_size"], "error": error}


def _sweep_row(chunk_size: int, memory_mb: float, compute: float, section: dict) -> dict:
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
    }


def latency_vs_data_size(
    source: InputSource, config: PipelineConfig, total_rows: int, progress: Progress = None
) -> list[dict]:
    """Batch and streaming latency on the first rows of the input, at several sizes.

    Each size is a real prefix of the input's records; the median of
    ``benchmark_runs`` repetitions is reported with every repetition kept.
    """
    rows = []
    tick = progress_counter(progress, "data sizes", 2 * len(config.data_size_fractions))
    for fraction in config.data_size_fractions:
        size = max(1, round(total_rows * fraction))
        subset = head_source(source, size)
        for mode in ("batch", "streaming"):
            latencies = [
                measure(mode, subset, config)[0].section["latency_s"]
                for _ in range(config.benchmark_runs)
            ]
            tick()
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
