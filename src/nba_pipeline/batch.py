"""Batch mode: the whole table in memory, through the same operators as streaming.

The table is read as one chunk, its training rows fit the shared state in one update of the
:class:`~nba_pipeline.fit_state.FitAccumulator`, and the transformed matrix trains a ridge
regression.  Latency covers the same work as the streaming latency (read, the four
operators and fitting the state); model training is timed separately.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .config import PipelineConfig
from .features import RollingSalary
from .fit_state import FitAccumulator, FittedState
from .ingestion import InputSource, read_table
from .models import coefficients, fit_batch_model, score
from .resources import CpuClock, DutyCycleThrottle, EnergyMeter, MemoryWatch
from .transform import TransformedChunk, derive_features, transform_features

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
    watch = MemoryWatch(config.max_memory_mb, armed=False)
    throttle = DutyCycleThrottle(config.max_compute_units, compute_enforced_outside)
    clock, energy = CpuClock(), EnergyMeter()

    started = time.perf_counter()
    raw = read_table(source)
    read_s = time.perf_counter() - started
    watch.checkpoint("read")

    derived = derive_features(
        raw,
        RollingSalary(config.rolling_window),
        config.random_seed,
        config.test_fraction,
        watch.checkpoint,
    )
    fit_started = time.perf_counter()
    accumulator = FitAccumulator()
    accumulator.update(derived.features, derived.is_train)
    state = accumulator.finalize(config.correlation_threshold)
    fit_s = time.perf_counter() - fit_started
    transformed = transform_features(derived, state, watch.checkpoint)
    transformed.timings["preprocess_s"] += read_s
    busy_s = time.perf_counter() - started
    pause_s = throttle.pause_after(busy_s)
    latency_s = busy_s + pause_s

    train = transformed.is_train
    X, y = transformed.X, transformed.y
    model, training_s = fit_batch_model(X[train], y[train], config.random_seed)
    training_s += throttle.pause_after(training_s)
    predictions = model.predict(X[~train])

    section = {
        "latency_s": latency_s,
        "throughput_rows_s": len(raw) / latency_s,
        "rows": int(len(raw)),
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
        "batch: %d rows, %.3f s preprocessing, r2 %s", len(raw), latency_s, section["model"]["r2"]
    )
    return BatchResult(section=section, state=state, transformed=transformed)
