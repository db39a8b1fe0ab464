"""Preloaded by the fork server: imports the worker's modules and runs them once on a few
sample rows, so that one-time costs (lazy imports, first calls into Arrow and
scikit-learn) are paid before any worker is forked.  Every worker starts from this same
warmed state, so no measurement carries another measurement's caches.
"""

from __future__ import annotations

import gc
import logging

from .config import PipelineConfig
from .ingestion import InputSource, head_source
from .synth import sample_dataset_path
from .worker_entry import pin_thread_pools, run_mode

WARMUP_ROWS = 120


def _warm_up() -> None:
    source = head_source(InputSource.from_path(sample_dataset_path()), WARMUP_ROWS)
    config = PipelineConfig(chunk_size=32, batch_size=32, max_memory_mb=1e6)
    for mode in ("batch", "streaming"):
        result = run_mode(mode, source, config, 1, {}, compute_enforced_outside=False)
    # Streaming leaves its chunk records in a temporary file for its caller to read (and
    # remove); here the caller is the warm-up itself.
    result.load_chunk_records()


logging.getLogger(__name__).debug("warming up the worker modules")
# Most measured runs get one core; their workers then find the pools at the right size.
pin_thread_pools(1)
_warm_up()
# Everything alive now (the imported modules, mostly) moves to the collector's permanent
# generation: a worker's garbage collections then scan only what the worker made (a full
# collection of the preloaded objects costs some 40 ms), and never write to the pages it
# shares with this process, which would copy them into its own memory.
gc.freeze()
