"""Repeated batch and streaming runs, compared with bootstrap intervals and permutation tests.

Each mode runs once as a warm-up (imports, caches, allocator) that is not counted, then
``benchmark_runs`` times; every repetition's latency and throughput is kept so the figures
can be re-tested later.  Spilling is off in repetitions, so they time the same work.
"""

from __future__ import annotations

import logging

from .batch import run_batch
from .config import PipelineConfig
from .ingestion import InputSource
from .significance import bootstrap_ci, compare_modes
from .streaming import run_streaming

logger = logging.getLogger(__name__)


def run_benchmark(source: InputSource, config: PipelineConfig) -> dict:
    """The ``benchmark`` report section; ``significance`` is the significance_tests.csv row."""
    modes = {
        "batch": lambda: run_batch(source, config).section,
        "streaming": lambda: run_streaming(source, config).section,
    }
    runs = {}
    for mode, run in modes.items():
        run()  # warm-up, not counted
        sections = [run() for _ in range(config.benchmark_runs)]
        runs[mode] = {
            "latency_s": [section["latency_s"] for section in sections],
            "throughput_rows_s": [section["throughput_rows_s"] for section in sections],
            "peak_rss_mb": [section["memory"]["peak_rss_mb"] for section in sections],
        }
        logger.info("benchmark %s: %d repetitions", mode, config.benchmark_runs)

    seed = config.random_seed
    section = {"repetitions": config.benchmark_runs, "warmup_runs": 1, "spill_to_disk": False}
    for mode, figures in runs.items():
        section[mode] = {
            **figures,
            "latency_ci": bootstrap_ci(figures["latency_s"], seed),
            "throughput_ci": bootstrap_ci(figures["throughput_rows_s"], seed),
        }
    section["significance"] = compare_modes(
        runs["batch"]["latency_s"],
        runs["streaming"]["latency_s"],
        runs["batch"]["throughput_rows_s"],
        runs["streaming"]["throughput_rows_s"],
        seed,
    )
    return section
