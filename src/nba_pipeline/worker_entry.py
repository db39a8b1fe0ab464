"""What a worker process imports and runs: the two modes and nothing more.

The fork server preloads this module, so its imports are the baseline of every worker;
keep them lean (no plotting, no statistics, no report writing).
"""

from __future__ import annotations

import contextlib

import pyarrow as pa
from threadpoolctl import threadpool_limits

from .batch import run_batch
from .resources import return_freed_blocks_promptly, rss_mb
from .streaming import run_streaming

__all__ = ["pin_thread_pools", "rss_mb", "run_mode"]

# The size the numpy/BLAS/OpenMP thread pools were set to before this process was forked
# from (see pin_thread_pools), or None when they were left as they were.
_pinned_threads: int | None = None


def pin_thread_pools(threads: int) -> None:
    """Set the numpy/BLAS/OpenMP thread pools to ``threads`` for good, in the fork server.

    Resizing OpenBLAS's pool in a freshly forked worker costs it some 40-70 ms of start-up
    on its next numeric call; a worker whose pools already have the size it needs skips
    the resize altogether.
    """
    global _pinned_threads
    threadpool_limits(limits=threads)
    _pinned_threads = threads


def _thread_pools(cores: int):
    if _pinned_threads == cores:
        return contextlib.nullcontext()
    return threadpool_limits(limits=cores)


def run_mode(
    mode: str, source, config, cores: int, options: dict, compute_enforced_outside: bool = True
):
    """Run one mode with thread pools sized to the cores the process may use."""
    pa.set_cpu_count(cores)
    with _thread_pools(cores):
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
