"""What a worker process imports and runs: the two modes and nothing more.

The fork server preloads this module, so its imports are the baseline of every worker;
keep them lean (no plotting, no statistics, no report writing).
"""

from __future__ import annotations

import pyarrow as pa
from threadpoolctl import threadpool_limits

from .batch import run_batch
from .resources import return_freed_blocks_promptly, rss_mb
from .streaming import run_streaming

__all__ = ["rss_mb", "run_mode"]


def run_mode(
    mode: str, source, config, cores: int, options: dict, compute_enforced_outside: bool = True
):
    """Run one mode with thread pools sized to the cores the process may use."""
    pa.set_cpu_count(cores)
    with threadpool_limits(limits=cores):
        if mode == "batch":
            return run_batch(source, config, compute_enforced_outside=compute_enforced_outside)
        if mode == "streaming":
            # Peak RSS must not grow with the number of chunks (see the function).
            return_freed_blocks_promptly()
            # The records stay on disk: the parent reads them, outside the measurement.
            return run_streaming(
                source,
                config,
                compute_enforced_outside=compute_enforced_outside,
                load_records=False,
                **options,
            )
    raise ValueError(f"unknown mode {mode!r}")
