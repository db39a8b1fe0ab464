"""Repeated batch and streaming runs, compared with bootstrap intervals and permutation tests.

Each mode runs once as a warm-up that is not counted, then ``benchmark_runs`` times, each
repetition in its own worker process (see :mod:`nba_pipeline.isolation`); every
repetition's latency, throughput, peak memory and CPU utilisation is kept so the figures can
be re-tested later.  Spilling is off in repetitions, so they time the same work.

With a Dask executor the warm-ups and repetitions are tasks on the cluster and may run at
the same time on different workers (or on one machine); the report's ``scaling`` section
says how many overlapped on each machine.
"""

from __future__ import annotations

import logging

from .config import PipelineConfig
from .distributed.cluster import SequentialExecutor
from .experiment import measured_section
from .ingestion import InputSource
from .progress import Progress, progress_counter
from .significance import bootstrap_ci, compare_modes

logger = logging.getLogger(__name__)
MODES = ("batch", "streaming")


def run_benchmark(
    source: InputSource,
    config: PipelineConfig,
    progress: Progress = None,
    executor: SequentialExecutor | None = None,
) -> dict:
    """The ``benchmark`` report section; ``significance`` is the significance_tests.csv row."""
    # Per mode: one warm-up, not counted, then the repetitions.
    per_mode = config.benchmark_runs + 1
    planned = [(mode, source, config) for mode in MODES for _ in range(per_mode)]
    tick = progress_counter(progress, "benchmark", len(planned))
    outcomes = (executor or SequentialExecutor()).run_all("benchmark", planned, tick)

    runs = {}
    for position, mode in enumerate(MODES):
        repetitions = outcomes[position * per_mode + 1 : (position + 1) * per_mode]
        sections = [measured_section(outcome) for outcome in repetitions]
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
