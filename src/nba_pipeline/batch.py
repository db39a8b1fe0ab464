"""Batch mode: the whole table in memory, through the same operators as streaming.

The table is read as one chunk, its training rows fit the shared state in one update of the
:class:`~nba_pipeline.fit_state.FitAccumulator`, and the transformed matrix trains a ridge
regression.  Latency covers the same work as the streaming latency (read, the four
operators and fitting the state); model training is timed separately.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .cleaning import USED_COLUMNS, CleanedChunk, clean, concat_cleaned
from .config import PipelineConfig
from .features import RollingSalary, derive
from .fit_state import FitAccumulator, FittedState
from .ingestion import FastReadUnavailable, InputSource, iter_table_blocks, read_table_exact
from .models import coefficients, fit_batch_model, load_models, score
from .resources import (
    CpuClock,
    DutyCycleThrottle,
    EnergyMeter,
    MemoryWatch,
    return_freed_blocks_promptly,
)
from .splitting import is_training_row
from .transform import DerivedChunk, TransformedChunk, encode_scale, impute, transform_features

logger = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """The report section plus the artifacts other stages reuse."""

    section: dict
    state: FittedState
    transformed: TransformedChunk


def run_batch(
    source: InputSource, config: PipelineConfig, compute_enforced_outside: bool = False
) -> BatchResult:
    """Read, fit, transform and train on the whole table at once.

    ``compute_enforced_outside`` says that a parent process applies the CPU cap, so the run
    must not pause by itself.
    """
    load_models()
    # Large freed blocks go straight back to the kernel: the phases below free hundreds of
    # megabytes that would otherwise stay in the heap and add up with the next phase's.
    return_freed_blocks_promptly()
    watch = MemoryWatch(config.max_memory_mb, armed=False)
    throttle = DutyCycleThrottle(config.max_compute_units, compute_enforced_outside)
    clock, energy = CpuClock(), EnergyMeter()

    started = time.perf_counter()
    cleaned, rows_read, read_s = read_and_clean(source)
    is_train = is_training_row(
        cleaned.columns["full_name"], config.random_seed, config.test_fraction
    )
    preprocess_s = time.perf_counter() - started
    watch.checkpoint("preprocess")

    derive_started = time.perf_counter()
    features = derive(cleaned, is_train, RollingSalary(config.rolling_window))
    derived = DerivedChunk(
        features=features,
        is_train=is_train,
        quarantine=cleaned.quarantine,
        rows_read=rows_read,
        timings={
            "preprocess_s": preprocess_s,
            "feature_engineering_s": time.perf_counter() - derive_started,
        },
    )
    del cleaned, features
    _release_arrow_memory()
    fit_started = time.perf_counter()
    accumulator = FitAccumulator()
    accumulator.update(derived.features, derived.is_train)
    state = accumulator.finalize(config.correlation_threshold)
    fit_s = time.perf_counter() - fit_started
    busy_s = time.perf_counter() - started

    # The model is trained before the full matrix exists: its training rows are encoded on
    # their own (the same values as those rows of the full matrix), so the two matrices are
    # never in memory together.  Training stays out of the latency, as before.
    train = derived.is_train
    X_train = rows_matrix(derived, state, train)
    model, training_s = fit_batch_model(
        X_train, derived.features.target[train], config.random_seed
    )
    del X_train
    predictions = model.predict(rows_matrix(derived, state, ~train))
    _release_arrow_memory()

    transform_started = time.perf_counter()
    transformed = transform_features(derived, state, watch.checkpoint)
    del derived
    busy_s += time.perf_counter() - transform_started
    pause_s = throttle.pause_after(busy_s)
    latency_s = busy_s + pause_s
    training_s += throttle.pause_after(training_s)

    X, y = transformed.X, transformed.y

    section = {
        "latency_s": latency_s,
        "throughput_rows_s": rows_read / latency_s,
        "rows": int(rows_read),
        "rows_processed": int(len(X)),
        "rows_quarantined": int(len(transformed.quarantine)),
        "read_s": read_s,
        "fit_state_s": fit_s,
        "operator_profile_s": transformed.timings,
        "training_time_s": training_s,
        "memory": {
            "budget_mb": config.max_memory_mb,
            "peak_rss_mb": watch.peak_mb,
            "over_budget": watch.exceeded,
            "measurement": "process RSS (psutil) sampled after every operator",
            "enforcement": "measured only: batch mode holds the whole table by definition",
        },
        "compute": {
            "cap": throttle.cap,
            "mechanism": throttle.mechanism,
            "throttle_pause_s": throttle.paused_s,
            **clock.utilization(),
        },
        "energy": energy.report(),
        "model": {
            "kind": "Ridge(alpha=1.0)",
            **score(y[~train], predictions),
            "training_time_s": training_s,
            "n_train": int(train.sum()),
            "coefficients": coefficients(model, state.feature_names),
        },
        "features": state.summary(),
    }
    logger.info(
        "batch: %d rows, %.3f s preprocessing, r2 %s", rows_read, latency_s, section["model"]["r2"]
    )
    return BatchResult(section=section, state=state, transformed=transformed)


def rows_matrix(derived: DerivedChunk, state: FittedState, rows: np.ndarray) -> np.ndarray:
    """Some rows of the transformed matrix (a boolean mask), computed from those rows alone
    (imputing, selecting, encoding and scaling work row by row, so the values are those of
    the full matrix)."""
    numeric = impute(derived.features.numeric[rows], state)
    mask = pa.array(rows)
    categorical = {}
    for name, values in derived.features.categorical.items():
        values = values.filter(mask)
        if values.null_count:
            values = pc.fill_null(values, state.categorical_fill[name])
        categorical[name] = values
    return encode_scale(numeric, categorical, state, columns=state.selected_indices)


def _prefetched(blocks: Iterator) -> Iterator:
    """The items of ``blocks``, the next one produced in a thread while this one is used.

    Arrow parses a block only when asked for it; asking from a thread lets the parse of
    block n + 1 run while block n is cleaned (both release the GIL).  One block waits at
    most.  An exception of the producer is raised here, in order.
    """
    ready: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for block in blocks:
                while not stop.is_set():
                    try:
                        ready.put((block, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put((done, None))
        except BaseException as exc:  # handed to the consumer
            ready.put((done, exc))
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="batch-read", daemon=True)
    thread.start()
    try:
        while True:
            block, error = ready.get()
            if error is not None:
                raise error
            if block is done:
                return
            yield block
            del block
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.1)
        thread.join()


def _release_arrow_memory() -> None:
    """Hand the memory Arrow's allocator keeps for reuse back to the kernel."""
    pa.default_memory_pool().release_unused()


def read_and_clean(source: InputSource) -> tuple[CleanedChunk, int, float]:
    """The whole input parsed and cleaned, the rows read, and the seconds spent reading.

    A large UTF-8 file is read by Arrow in blocks of a few tens of megabytes (parsed while
    the previous block is cleaned) and each block is cleaned as it arrives, so the raw text
    of the whole table is never in memory at once; the rows, line numbers and quarantine
    are those of cleaning the table in one piece.  Any other input is read by the record
    reader and cleaned whole.
    """
    read_s = 0.0
    parts: list[CleanedChunk] = []
    rows = 0
    try:
        blocks = _prefetched(iter_table_blocks(source, dictionary=True, only=USED_COLUMNS))
        while True:
            started = time.perf_counter()
            block = next(blocks, None)
            read_s += time.perf_counter() - started
            if block is None:
                break
            rows += len(block)
            parts.append(clean(block.table, block.line_numbers, block.records))
            del block
    except FastReadUnavailable as reason:
        logger.debug("batch read: record reader (%s)", reason)
        parts.clear()
        started = time.perf_counter()
        parsed = read_table_exact(source)
        read_s = time.perf_counter() - started
        rows = len(parsed)
        parts = [clean(parsed.table, parsed.line_numbers, parsed.records)]
        del parsed
    cleaned = concat_cleaned(parts)
    del parts
    _release_arrow_memory()
    return cleaned, rows, read_s
