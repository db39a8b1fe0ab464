"""Repeated batch and streaming runs, compared with bootstrap intervals and permutation tests.

Each mode runs once as a warm-up that is not counted, then ``benchmark_runs`` times, each
repetition in its own worker process (see :mod:`nba_pipeline.isolation`); every
repetition's latency, throughput, peak memory and CPU utilisation is kept so the figures can
be re-tested later.  Spilling is off in repetitions, so they time the same work.
"""

from __future__ import annotations

import logging

from .config import PipelineConfig
from .ingestion import InputSource
from .isolation import measure
from .progress import Progress, progress_counter
from .significance import bootstrap_ci, compare_modes

logger = logging.getLogger(__name__)


def run_benchmark(source: InputSource, config: PipelineConfig, progress: Progress = None) -> dict:
    """The ``benchmark`` report section; ``significance`` is the significance_tests.csv row."""
    modes = {
        "batch": lambda: measure("batch", source, config)[0].section,
        "streaming": lambda: measure("streaming", source, config)[0].section,
    }
    runs = {}
    tick = progress_counter(progress, "benchmark", 2 * (config.benchmark_runs + 1))
    for mode, run in modes.items():
        run()  # warm-up, not counted
        tick()
        sections = []
        for _ in range(config.benchmark_runs):
            sections.append(run())
            tick()
        runs[mode] = {
            "latency_s": [section["latency_s"] for section in sections],
            "throughput_rows_s": [section["throughput_rows_s"] for section in sections],
            "peak_rss_mb": [section["memory"]["peak_rss_mb"] for section in sections],
            "measured_cpu_utilization": [
                section["compute"]["measured_cpu_utilization"] for section in sections
            ],
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
