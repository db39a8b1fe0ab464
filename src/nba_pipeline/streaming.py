"""Streaming mode: two passes over the input in chunks, under a memory and compute budget.

Pass 1 (fit) derives each chunk's features and adds the training rows to the shared
:class:`~nba_pipeline.fit_state.FitAccumulator`.  Pass 2 (transform) derives them again,
transforms them with the one fitted state, feeds the training rows to the online model and
keeps the held-out rows for scoring.  Every chunk of pass 2 leaves a record.

Memory: RSS is sampled after every operator.  When a sample is over ``max_memory_mb`` and
adaptive resizing is on, the attempt is abandoned before anything is committed (rolling
state, accumulator, model and buffers are untouched), the chunk is halved, the second half
goes back to the reader, and the first half is retried after a short back-off, up to
``max_chunk_retries`` times and never below ``min_chunk_size`` rows.  The size a chunk
settles on carries forward; it doubles back towards ``chunk_size`` after chunks that peak
under three quarters of the budget.  Rows are therefore processed exactly once.

Compute: after every chunk the loop pauses so that busy time over elapsed time equals
``max_compute_units`` (see :class:`~nba_pipeline.resources.DutyCycleThrottle`).
"""

from __future__ import annotations

import gc
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .chunk_log import ChunkLog, read_chunk_log
from .cleaning import ParsedValues
from .config import PipelineConfig
from .features import RollingSalary
from .fit_state import FitAccumulator, FittedState
from .heldout import HeldOutSpool
from .ingestion import ChunkReader, InputSource, ParsedChunk, RawChunk, parse_chunk
from .models import OnlineSalaryModel, load_models, score
from .resources import (
    CpuClock,
    DutyCycleThrottle,
    EnergyMeter,
    MemoryBudgetExceeded,
    MemoryWatch,
    system_memory_percent,
)
from .resume import StreamJournal
from .transform import derive_features, transform_features

logger = logging.getLogger(__name__)

BACKOFF_S = 0.001
GROWTH_HEADROOM = 0.75


@dataclass
class StreamingResult:
    """The report section, the per-chunk records, and (on request) the feature matrix.

    The chunk records stay in a JSON-lines file until :meth:`load_chunk_records` reads them
    into ``chunk_records`` and ``section["chunk_metrics"]`` (``run_streaming`` does that
    unless told to leave it to the process that collects the result).
    """

    section: dict
    state: FittedState
    quarantine: pd.DataFrame
    chunk_log_path: Path | None = None
    chunk_records: list[dict] | None = None
    matrix: pd.DataFrame | None = None
    targets: pd.Series | None = None

    def load_chunk_records(self) -> list[dict]:
        if self.chunk_records is None:
            self.chunk_records = read_chunk_log(self.chunk_log_path)
            self.section["chunk_metrics"] = self.chunk_records
        return self.chunk_records


@dataclass
class ChunkSizer:
    """The chunk size in force: shrinks on memory pressure, grows back with headroom."""

    configured: int
    floor: int
    adaptive: bool
    max_retries: int
    current: int = field(init=False)

    def __post_init__(self) -> None:
        self.current = self.configured

    def can_split(self, rows: int, retries: int) -> bool:
        return self.adaptive and retries < self.max_retries and rows > self.floor

    def shrink(self, rows: int) -> int:
        self.current = max(self.floor, rows // 2)
        return self.current

    def after_success(self, peak_mb: float, budget_mb: float) -> None:
        headroom = peak_mb < GROWTH_HEADROOM * budget_mb
        if self.adaptive and self.current < self.configured and headroom:
            self.current = min(self.configured, self.current * 2)


class _Budget:
    """The limits of one streaming run and the meters that enforce and measure them."""

    def __init__(self, config: PipelineConfig, compute_enforced_outside: bool) -> None:
        self.watch = MemoryWatch(config.max_memory_mb, enabled=config.telemetry)
        self.throttle = DutyCycleThrottle(config.max_compute_units, compute_enforced_outside)
        self.sizer = ChunkSizer(
            configured=config.chunk_size,
            floor=min(config.min_chunk_size, config.chunk_size),
            adaptive=config.adaptive_chunk_resize,
            max_retries=config.max_chunk_retries,
        )


def run_streaming(
    source: InputSource,
    config: PipelineConfig,
    spill_dir: Path | None = None,
    keep_matrix: bool = False,
    compute_enforced_outside: bool = False,
    load_records: bool = True,
    journal_dir: Path | None = None,
    resume: bool = False,
    reader=None,
) -> StreamingResult:
    """Run both passes and return the report section and the chunk records.

    ``compute_enforced_outside`` says that a parent process applies the CPU cap, so the
    loop must not pause by itself; ``load_records=False`` leaves the chunk records on disk
    for the caller's process to load (see :meth:`StreamingResult.load_chunk_records`).
    ``journal_dir`` journals pass 1 and every committed chunk of pass 2 there (see
    :mod:`nba_pipeline.resume`); with ``resume`` the run continues after the last chunk
    that journal committed.  ``reader`` (live input, see :mod:`nba_pipeline.live`) is read
    by pass 2 instead of ``source``, which then holds only the rows pass 1 fits on.
    """
    load_models()
    budget = _Budget(config, compute_enforced_outside)
    parsed_values = ParsedValues()  # both passes parse the same values
    clock, energy = CpuClock(), EnergyMeter()
    started = time.perf_counter()

    journal = StreamJournal(journal_dir, resume) if journal_dir is not None else None
    if journal is not None and journal.pass1 is not None:
        # Resumed: the times of the killed run count, the time between kill and resume not.
        state, fit_stats = journal.pass1["state"], journal.pass1["fit_stats"]
        budget.sizer.current = journal.pass1["chunk_size"]
        fit_s = journal.pass1["fit_s"]
        started = time.perf_counter() - fit_s
    else:
        state, fit_stats = _fit_pass(source, config, budget, parsed_values)
        fit_s = time.perf_counter() - started
        if journal is not None:
            journal.save_pass1(
                {
                    "state": state,
                    "fit_stats": fit_stats,
                    "chunk_size": budget.sizer.current,
                    "fit_s": fit_s,
                }
            )
    stream = _TransformPass(
        source, config, state, budget, spill_dir, keep_matrix, journal, started, parsed_values
    )
    try:
        stream.run(reader)
    except BaseException:
        stream.log.discard()
        raise
    finally:
        if journal is not None:
            journal.close()
    wall_s = time.perf_counter() - stream.started

    model = stream.model
    model_updates_s = model.flush()
    budget.throttle.pause_after(model_updates_s)
    preprocessing_s = wall_s - stream.training_wall_s - stream.spill_s
    y_test, predictions = stream.held_out.predict_all(model.predict)
    stream.held_out.close()

    log = stream.log
    log.close()
    rows = log.totals["rows"]
    section = {
        "latency_s": preprocessing_s,
        "throughput_rows_s": rows / preprocessing_s if preprocessing_s > 0 else None,
        "rows": rows,
        "rows_processed": log.totals["rows_processed"],
        "rows_quarantined": log.totals["rows_quarantined"],
        "chunks": log.chunks,
        "fit_pass_s": fit_s,
        "transform_pass_s": wall_s - fit_s - stream.training_wall_s - stream.spill_s,
        "spill_s": stream.spill_s,
        "operator_profile_s": log.operator_totals,
        "configured_chunk_size": config.chunk_size,
        "batch_size": config.batch_size,
        "final_chunk_size": budget.sizer.current,
        "adaptive_chunk_resize": config.adaptive_chunk_resize,
        "memory": _memory_section(budget, log, fit_stats),
        "compute": _compute_section(budget, clock),
        "energy": energy.report(),
        "model": {
            "kind": "SGDRegressor.partial_fit (averaged, standardised target)",
            **score(y_test, predictions),
            "training_time_s": model.training_time_s,
            "n_train": model.rows_learned,
            "updates": model.updates,
            "update_batch_size": config.batch_size,
            **model.prequential(),
        },
        "chunk_metrics": None,
    }
    logger.info(
        "streaming: %d rows in %d chunks, %.3f s preprocessing, r2 %s",
        rows,
        log.chunks,
        preprocessing_s,
        section["model"]["r2"],
    )
    result = StreamingResult(
        section=section,
        chunk_log_path=log.path,
        state=state,
        quarantine=stream.quarantine(),
        matrix=pd.concat(stream.matrix_parts) if keep_matrix and stream.matrix_parts else None,
        targets=pd.concat(stream.target_parts) if keep_matrix and stream.target_parts else None,
    )
    if load_records:
        result.load_chunk_records()
    return result


def _fit_pass(
    source: InputSource, config: PipelineConfig, budget: _Budget, parsed_values: ParsedValues
):
    """Pass 1: accumulate the training statistics chunk by chunk."""
    accumulator = FitAccumulator()
    rolling = RollingSalary(config.rolling_window)

    def derive(frame: ParsedChunk):
        trial = rolling.copy()
        derived = derive_features(
            frame,
            trial,
            config.random_seed,
            config.test_fraction,
            budget.watch.checkpoint,
            parsed_values,
        )
        return derived, trial

    stats = {"chunks": 0, "memory_exceeded_chunks": 0, "retries": 0}
    with ChunkReader(source) as reader:
        for _raw, (derived, trial), outcome in _adaptive_chunks(reader, budget, derive):
            accumulator.update(derived.features, derived.is_train)
            rolling = trial
            stats["chunks"] += 1
            stats["memory_exceeded_chunks"] += outcome.exceeded
            stats["retries"] += outcome.retries
            budget.throttle.pause_after(outcome.busy_s)
            budget.sizer.after_success(budget.watch.chunk_peak_mb, budget.watch.budget_mb)
    return accumulator.finalize(config.correlation_threshold), stats


@dataclass
class ChunkOutcome:
    """How one chunk went: retries, whether memory went over budget, time and memory."""

    retries: int
    exceeded: bool
    memory_before_mb: float
    busy_s: float
    parse_s: float
    cpu_s: float


def _adaptive_chunks(reader: ChunkReader, budget: _Budget, work):
    """Yield ``(raw_chunk, work(frame), outcome)`` for every chunk, splitting on breaches.

    ``work`` must not change any state the caller keeps: the caller commits its result
    after the yield.  When ``work`` raises :class:`MemoryBudgetExceeded` the chunk is
    halved, the second half is put back into the reader, and the first half is retried
    after a short back-off; nothing of the abandoned attempt survives.
    """
    while True:
        raw_chunk = reader.take(budget.sizer.current)
        if not len(raw_chunk):
            return
        retries, exceeded = 0, False
        while True:
            budget.watch.start_chunk(armed=budget.sizer.can_split(len(raw_chunk), retries))
            memory_before = budget.watch.sample()
            cpu_started = time.process_time()
            started = time.perf_counter()
            frame = parse_chunk(reader.header, raw_chunk, reader.columns)
            parse_s = time.perf_counter() - started
            try:
                result = work(frame)
            except MemoryBudgetExceeded as breach:
                head, tail = raw_chunk.split(budget.sizer.shrink(len(raw_chunk)))
                reader.put_back(tail)
                logger.info(
                    "chunk of %d rows: %s; retrying with %d rows",
                    len(raw_chunk),
                    breach,
                    len(head),
                )
                raw_chunk, retries, exceeded = head, retries + 1, True
                gc.collect()
                time.sleep(BACKOFF_S * 2**retries)
                continue
            busy_s = time.perf_counter() - started
            cpu_s = time.process_time() - cpu_started
            exceeded = exceeded or budget.watch.exceeded
            yield (
                raw_chunk,
                result,
                ChunkOutcome(retries, exceeded, memory_before, busy_s, parse_s, cpu_s),
            )
            break


class _TransformPass:
    """Pass 2: transform every chunk with the fitted state and train the online model."""

    def __init__(
        self,
        source,
        config,
        state,
        budget,
        spill_dir,
        keep_matrix,
        journal=None,
        started=None,
        parsed_values=None,
    ) -> None:
        self.source, self.config, self.state, self.budget = source, config, state, budget
        self.parsed_values = ParsedValues() if parsed_values is None else parsed_values
        self.spill_dir, self.keep_matrix = spill_dir, keep_matrix
        self.model = OnlineSalaryModel(
            config.batch_size, state.target_mean, state.target_scale, config.random_seed
        )
        self.log = ChunkLog()
        self.held_out = HeldOutSpool()
        self.matrix_parts: list[pd.DataFrame] = []
        self.target_parts: list[pd.Series] = []
        self.quarantine_parts: list[pd.DataFrame] = []
        self.training_wall_s = 0.0
        self.spill_s = 0.0
        self.rolling = RollingSalary(config.rolling_window)
        self.journal = journal
        self.started = time.perf_counter() if started is None else started  # of the run
        self._records_done = 0  # input records covered by committed chunks
        if journal is not None:
            self.held_out.close()
            self.held_out = journal.held_out_spool()
            if journal.state is not None:
                self._restore(journal)

    def _restore(self, journal) -> None:
        """Continue after the journal's last chunk: its state, records and quarantine."""
        saved = journal.state
        self.model, self.rolling = saved["model"], saved["rolling"]
        self.budget.sizer.current = saved["chunk_size"]
        self.training_wall_s, self.spill_s = saved["training_wall_s"], saved["spill_s"]
        self.started = time.perf_counter() - saved["elapsed_s"]
        self._records_done = journal.last["input"]["records_done"]
        self.quarantine_parts = list(journal.quarantine_parts)
        for entry in journal.entries:
            self.log.append(entry["record"])
        logger.info(
            "resuming the streaming run after chunk %d (input line %d, byte %d)",
            journal.last["chunk_id"],
            journal.last["input"]["next_line"],
            journal.last["input"]["end_offset"],
        )

    def run(self, reader=None) -> None:
        if self.journal is not None:
            self.journal.restore_spills(self.spill_dir)

        def transform(frame: ParsedChunk):
            trial = self.rolling.copy()
            checkpoint = self.budget.watch.checkpoint
            derived = derive_features(
                frame,
                trial,
                self.config.random_seed,
                self.config.test_fraction,
                checkpoint,
                self.parsed_values,
            )
            return transform_features(derived, self.state, checkpoint), trial

        with reader if reader is not None else ChunkReader(self.source) as reader:
            position = self.journal.resume_position() if self.journal is not None else None
            if position is not None:
                reader.resume_at(
                    position["end_offset"], position["next_line"], position["records_done"]
                )
            for raw_chunk, (transformed, trial), outcome in _adaptive_chunks(
                reader, self.budget, transform
            ):
                self.rolling = trial
                transformed.timings["preprocess_s"] += outcome.parse_s
                self._commit(raw_chunk, transformed, outcome)

    def quarantine(self) -> pd.DataFrame:
        parts = [part for part in self.quarantine_parts if not part.empty]
        if not parts:
            return pd.DataFrame(columns=["line", "reason", "raw"])
        return pd.concat(parts, ignore_index=True)

    def _commit(self, raw_chunk: RawChunk, transformed, outcome: ChunkOutcome) -> None:
        chunk_id = self.log.chunks + 1
        train = transformed.is_train
        X, y = transformed.X, transformed.y

        started = time.perf_counter()
        update_s = self.model.add(X[train], y[train])
        self.budget.throttle.pause_after(update_s)
        self.training_wall_s += time.perf_counter() - started
        self.held_out.append(X[~train], y[~train])
        if self.keep_matrix:
            self.matrix_parts.append(transformed.frame())
            self.target_parts.append(pd.Series(y, index=transformed.frame().index, name="salary"))
        if not transformed.quarantine.empty:
            self.quarantine_parts.append(transformed.quarantine)

        spill_paths, spill_s = self._spill(chunk_id, transformed)
        self.budget.watch.sample()
        pause_s = self.budget.throttle.pause_after(outcome.busy_s)
        self.log.append(
            self._record(
                chunk_id, raw_chunk, transformed, outcome, pause_s, update_s, spill_paths, spill_s
            )
        )
        self.budget.sizer.after_success(
            self.budget.watch.chunk_peak_mb, self.budget.watch.budget_mb
        )
        self._records_done += len(raw_chunk)
        if self.journal is not None:
            # The journal's writes and fsyncs count as spilling, not as preprocessing.
            started = time.perf_counter()
            self._journal_commit(chunk_id, raw_chunk, transformed, spill_paths)
            self.spill_s += time.perf_counter() - started

    def _journal_commit(self, chunk_id, raw_chunk, transformed, spill_paths) -> None:
        """Journal chunk ``chunk_id``: after this, a crash resumes from the next chunk."""
        if not transformed.quarantine.empty:
            self.journal.add_quarantine(transformed.quarantine)
        previous = self.journal.last
        spilled = {}
        for kind, relative in spill_paths.items():
            if relative is not None:
                path = self.spill_dir.parent / relative
                spilled[kind] = {"path": relative, "bytes": path.stat().st_size}
        end_offset, next_line = raw_chunk.end or (None, None)  # None: a reader without offsets
        entry = {
            "chunk_id": chunk_id,
            "input": {
                "start_offset": previous["input"]["end_offset"] if previous else None,
                "end_offset": end_offset,
                "first_line": raw_chunk.line_numbers[0],
                "last_line": raw_chunk.line_numbers[-1],
                "next_line": next_line,
                "records": len(raw_chunk),
                "records_done": self._records_done,
            },
            "spill": spilled,
            "record": self.log.last_record,
        }
        state = {
            "model": self.model,
            "rolling": self.rolling,
            "chunk_size": self.budget.sizer.current,
            "training_wall_s": self.training_wall_s,
            "spill_s": self.spill_s,
            "elapsed_s": time.perf_counter() - self.started,
            "held_out_columns": self.held_out.columns,
        }
        files = [self.spill_dir.parent / item["path"] for item in spilled.values()]
        self.journal.commit(entry, state, self.held_out, files)

    def _spill(self, chunk_id: int, transformed) -> tuple[dict, float]:
        if self.spill_dir is None:
            return {"X": None, "y": None}, 0.0
        started = time.perf_counter()
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        tables = {"X": transformed.frame(), "y": pd.DataFrame({"salary": transformed.y})}
        for kind, table in tables.items():
            path = self.spill_dir / f"stream_chunk_{chunk_id}_{kind}.csv"
            temporary = path.with_name(path.name + ".tmp")
            table.to_csv(temporary, index=False, lineterminator="\n")
            os.replace(temporary, path)
            paths[kind] = f"{self.spill_dir.name}/{path.name}"
        spent = time.perf_counter() - started
        self.spill_s += spent
        return paths, spent

    def _record(
        self, chunk_id, raw_chunk, transformed, outcome, pause_s, update_s, spill_paths, spill_s
    ) -> dict:
        input_bytes = raw_chunk.input_bytes
        return {
            "chunk_id": chunk_id,
            "rows": transformed.rows_read,
            "rows_processed": int(len(transformed.X)),
            "rows_quarantined": int(len(transformed.quarantine)),
            "rows_train": int(transformed.is_train.sum()),
            "first_line": raw_chunk.line_numbers[0],
            "latency_s": outcome.busy_s,
            "throughput_rows_s": transformed.rows_read / outcome.busy_s,
            "batch_size": self.config.batch_size,
            "chunk_size": len(raw_chunk),
            "chunk_size_configured": self.config.chunk_size,
            "memory_before_mb": outcome.memory_before_mb,
            "memory_after_mb": self.budget.watch.sample(),
            "memory_peak_mb": self.budget.watch.chunk_peak_mb,
            "memory_budget_mb": self.budget.watch.budget_mb,
            "memory_exceeded": outcome.exceeded,
            "cpu_percent": 100.0 * outcome.cpu_s / outcome.busy_s,
            "system_memory_percent": system_memory_percent() if self.config.telemetry else None,
            "retries": outcome.retries,
            "spill_paths": spill_paths,
            "spill_s": spill_s,
            "operator_profile_s": transformed.timings,
            "model_update_s": update_s,
            "throttle_pause_s": pause_s,
            "input_bytes": input_bytes,
            "estimated_input_bandwidth_mb_s": input_bytes / 1e6 / outcome.busy_s,
        }


def _memory_section(budget: _Budget, log: ChunkLog, fit_stats: dict) -> dict:
    return {
        "budget_mb": budget.watch.budget_mb,
        "peak_rss_mb": budget.watch.peak_mb,
        "samples": budget.watch.samples,
        "chunks_over_budget": log.totals["memory_exceeded"],
        "retries": log.totals["retries"],
        "fit_pass_chunks_over_budget": fit_stats["memory_exceeded_chunks"],
        "fit_pass_retries": fit_stats["retries"],
        "measurement": "process RSS (psutil) sampled after every operator of every chunk",
        "enforcement": "adaptive split-and-retry of the chunk when a sample exceeds the budget"
        if budget.sizer.adaptive
        else "measured only (adaptive chunk resize disabled)",
    }


def _compute_section(budget: _Budget, clock: CpuClock) -> dict:
    return {
        "cap": budget.throttle.cap,
        "mechanism": budget.throttle.mechanism,
        "throttle_pause_s": budget.throttle.paused_s,
        **clock.utilization(),
    }
