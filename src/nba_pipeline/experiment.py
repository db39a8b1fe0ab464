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

from .batch import run_batch
from .config import PipelineConfig
from .ingestion import InputSource, head_source
from .streaming import run_streaming

logger = logging.getLogger(__name__)


def run_constraint_sweep(source: InputSource, config: PipelineConfig) -> dict:
    """Run every setting of the grid; returns the ``constraint_experiment`` section."""
    grid = list(
        itertools.product(
            config.sweep_chunk_sizes, config.sweep_memory_limits_mb, config.sweep_compute_limits
        )
    )
    rows, log = [], []
    for chunk_size, memory_mb, compute in grid:
        setting = config.with_overrides(
            chunk_size=chunk_size, max_memory_mb=memory_mb, max_compute_units=compute
        )
        section = run_streaming(source, setting).section
        row = _sweep_row(chunk_size, memory_mb, compute, section)
        rows.append(row)
        log.append(
            {
                "setting": {
                    "chunk_size": chunk_size,
                    "memory_limit_mb": memory_mb,
                    "compute_limit": compute,
                },
                "result": row,
                "chunk_sizes_run": [r["chunk_size"] for r in section["chunk_metrics"]],
                "memory": section["memory"],
                "compute": section["compute"],
            }
        )
        logger.info(
            "sweep chunk=%d memory=%.0f MB compute=%.2f: %.3f s, r2 %.3f",
            chunk_size,
            memory_mb,
            compute,
            row["preprocessing_latency_s"],
            row["model_accuracy_r2"],
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
            "memory": "RSS sampled after every operator; adaptive split-and-retry on breach",
            "compute": "duty-cycle sleep after each chunk and model update",
            "isolation": "settings run one after another in the pipeline process",
        },
    }


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
    }


def latency_vs_data_size(
    source: InputSource, config: PipelineConfig, total_rows: int
) -> list[dict]:
    """Batch and streaming latency on the first rows of the input, at several sizes.

    Each size is a real prefix of the input's records; the median of
    ``benchmark_runs`` repetitions is reported with every repetition kept.
    """
    rows = []
    for fraction in config.data_size_fractions:
        size = max(1, round(total_rows * fraction))
        subset = head_source(source, size)
        for mode, run in (("batch", run_batch), ("streaming", run_streaming)):
            latencies = [
                run(subset, config).section["latency_s"] for _ in range(config.benchmark_runs)
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
