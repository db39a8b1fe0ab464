"""The Python API: run any part of the pipeline and collect a report that can be written.

>>> from nba_pipeline import PipelineConfig, PipelineRunner
>>> runner = PipelineRunner(PipelineConfig.from_profile("edge"), output_dir="out")
>>> batch = runner.run_batch("players.csv")       # doctest: +SKIP
>>> batch["model"]["r2"]                          # doctest: +SKIP

Every method takes a CSV path or a DataFrame (or nothing, for the packaged sample table),
returns the plain-data report section it produced and keeps it for :meth:`write_artifacts`;
:meth:`run_all` runs everything and writes the full artifact set.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
from threadpoolctl import threadpool_limits

from . import artifacts
from .artifacts import OutputDirLock
from .batch import BatchResult
from .benchmark import MODES, run_benchmark
from .config import PipelineConfig
from .distributed.cluster import SequentialExecutor, max_concurrency, open_executor
from .errors import ConfigError, OutputError, ResourceError, ResumeError
from .experiment import latency_vs_data_size, run_constraint_sweep
from .html_report import write_html_report
from .ingestion import InputSource, as_source, fingerprint, require_columns
from .inspection import write_checksums
from .isolation import MeasuredRunFailed, measure
from .live import SPOOL_PATH, is_stdin, run_live
from .progress import Progress
from .quality import (
    InputCheck,
    build_quality,
    check_input,
    quarantine_table,
    verify_input_unchanged,
    verify_row_accounting,
)
from .report_fields import field_kinds
from .reproducibility import reproducibility_section
from .resume import check_resumable, finish, identity, resume_dir, start_journal
from .streaming import StreamingResult
from .synth import sample_dataset_path
from .validation import REQUIRED_COLUMNS

logger = logging.getLogger(__name__)

# OSError numbers of a failed write: EACCES, EFBIG, ENOSPC, EROFS, EDQUOT.
_WRITE_FAILURE = re.compile(r"^(?:OSError|PermissionError): \[Errno (?:13|27|28|30|122)\]")

Data = str | Path | pd.DataFrame | None
REPORT_SECTIONS = (
    "dataset_fingerprint",
    "reproducibility",
    "batch",
    "streaming",
    "benchmark",
    "constraint_experiment",
    "quality",
    "scaling",
    "run",
    "field_kinds",
)


class PipelineRunner:
    """Runs the pipeline's stages with one validated configuration."""

    def __init__(
        self,
        config: PipelineConfig | None = None,
        progress: Progress = None,
        resume: bool = False,
        **overrides,
    ) -> None:
        """``progress``, when given, is called as ``progress(stage, done, total)`` while
        long stages (benchmark repetitions, sweep settings) advance.  ``resume`` continues
        the streaming run journalled in ``output_dir`` by a run that was killed (see
        :mod:`nba_pipeline.resume`) instead of starting it over."""
        self.config = (config or PipelineConfig()).with_overrides(**overrides)
        self.resume = resume
        self._journalled = False  # this runner's streaming run was journalled
        self.progress = progress
        self.report: dict = {}
        self._batch: BatchResult | None = None
        self._dask_batch = None  # a DaskBatchResult with engine="dask"
        self._streaming: StreamingResult | None = None
        self._sweep_log: list[dict] = []
        self._data_size: list[dict] = []
        self._fingerprinted: str | None = None
        self._input_check: InputCheck | None = None  # bad input: set by _source
        # Where benchmark repetitions and sweep settings ran (see _engine and _scaling).
        self._executor: SequentialExecutor | None = None
        self._engine_description: dict | None = None
        self._tasks: list[dict] = []
        self._lock = OutputDirLock(self.output_dir)

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    def run_batch(self, data: Data = None) -> dict:
        """Batch mode on the whole table; returns the ``batch`` section.

        With ``engine="dask"``, ``data`` names partitioned input (a glob, a directory or a
        file) and batch mode runs as Dask tasks (see :mod:`nba_pipeline.distributed`)."""
        if self.config.engine == "dask":
            return self._run_dask_batch(data)
        source = self._source(data)
        with self._thread_limit():
            self._batch = self._measure("batch", source)
        self.report["batch"] = self._batch.section
        return self._batch.section

    def run_streaming(self, data: Data = None) -> dict:
        """Streaming mode, spilling chunks when configured; returns the ``streaming`` section.

        ``data="-"`` streams standard input as it arrives (see :meth:`run_live`)."""
        if is_stdin(data):
            self.run_live()
            return self.report["streaming"]
        source = self._source(data)
        with self.holding_output_dir(), self._thread_limit():
            options = self._journal_options(source)
            spill_dir = self._spill_dir() if self.config.spill_to_disk else None
            self._streaming = self._measure("streaming", source, spill_dir=spill_dir, **options)
        self.report["streaming"] = self._streaming.section
        return self._streaming.section

    def benchmark(self, data: Data = None) -> dict:
        """Repeated runs of both modes with their statistics; returns ``benchmark``."""
        source = self._source(data)
        with self._thread_limit(), self._engine() as executor:
            section = run_benchmark(source, self.config, self.progress, executor)
            self._data_size = latency_vs_data_size(
                source,
                self.config,
                self.report["dataset_fingerprint"]["row_count"],
                self.progress,
                executor,
                full_size_latencies={mode: section[mode]["latency_s"] for mode in MODES},
            )
        section["latency_vs_data_size"] = self._data_size
        self.report["benchmark"] = section
        return section

    def run_constraint_experiment(self, data: Data = None) -> dict:
        """The constraint sweep; returns the ``constraint_experiment`` section."""
        source = self._source(data)
        with self._thread_limit(), self._engine() as executor:
            section = run_constraint_sweep(source, self.config, self.progress, executor)
        self._sweep_log = section.pop("log")
        self.report["constraint_experiment"] = section
        return section

    def run_quality(self, data: Data = None) -> dict:
        """Data quality of the input (runs batch mode first if it has not run)."""
        self._refuse_dask_engine("the quality section")
        source = self._source(data)
        if self._batch is None:
            self.run_batch(data)
        self.report["quality"] = build_quality(source, self._batch)
        return self.report["quality"]

    def run_all(self, data: Data = None) -> dict:
        """Batch, streaming, benchmark, sweep and quality, then every artifact."""
        self._refuse_dask_engine("--mode all")
        with self.holding_output_dir():
            if self.resume:  # refuse before any work when there is nothing to resume
                self.check_resume(data)
            live = is_stdin(data)
            if live:  # streaming as the rows arrive; the other stages read what was received
                data = self.run_live()
            self.run_batch(data)
            if not live:
                self.run_streaming(data)
            with self._engine():  # one cluster (or connection) for both stages
                self.benchmark(data)
                self.run_constraint_experiment(data)
            self.run_quality(data)
            self.write_artifacts()
        return self.report

    def run_live(self, fd: int = 0) -> Path:
        """Live input (``--input -``): streaming mode on the rows of ``fd`` as they arrive,
        until the input ends or SIGINT (see :mod:`nba_pipeline.live`).

        It runs in this process, which owns standard input.  Every byte received is kept in
        ``input/received.csv`` under ``output_dir``; that file is fingerprinted and checked
        like any input, and returned, so that the other stages run on exactly those rows.
        """
        if self.resume:
            raise ConfigError("--resume continues a file's run; a live feed cannot be replayed")
        spool = self.output_dir / SPOOL_PATH
        with self.holding_output_dir(), self._thread_limit():
            spill_dir = self._spill_dir() if self.config.spill_to_disk else None
            self._streaming = run_live(self.config, spool, spill_dir, fd)
        self.report["streaming"] = self._streaming.section
        self._source(spool)
        return spool

    def check_resume(self, data: Data = None) -> int:
        """Refuse (:class:`~nba_pipeline.errors.ResumeError`) unless ``output_dir`` holds
        the journal of a run of this input and configuration; returns its committed chunks."""
        self._source(data)  # fingerprints the input
        with self.holding_output_dir():
            ident = identity(self.config, self.report["dataset_fingerprint"])
            committed = check_resumable(self.output_dir, ident)
        logger.info(
            "resuming the run in %s: %d streaming chunk(s) committed", self.output_dir, committed
        )
        return committed

    def _journal_options(self, source: InputSource) -> dict:
        """Journal the streaming run (spill on only), or continue the journalled one."""
        if not self.config.spill_to_disk and not self.resume:
            return {}
        if self.resume:
            self.check_resume(source)
        else:
            start_journal(
                self.output_dir, identity(self.config, self.report["dataset_fingerprint"])
            )
        self._journalled = True
        return {"journal_dir": resume_dir(self.output_dir), "resume": self.resume}

    def holding_output_dir(self) -> OutputDirLock:
        """Hold ``output_dir`` for this run: another live run cannot write into it."""
        return self._lock

    def write_artifacts(self) -> Path:
        """Write the artifacts of every stage that has run into ``output_dir``."""
        with self.holding_output_dir():
            return self._write_artifacts()

    def _write_artifacts(self) -> Path:
        out = self.output_dir
        # Bad input: nothing is written unless the input is still the file the run started
        # with (a change would also upset the counts) and every row is accounted for; then
        # every quarantined row goes to quarantine.csv.
        verify_input_unchanged(self.report, self._input_check)
        verify_row_accounting(self.report, self._input_check)
        self._write_quarantine(out)
        if self._streaming is not None:
            self._write_streaming(out)
        if "benchmark" in self.report:
            self._write_benchmark(out)
        if "constraint_experiment" in self.report:
            self._write_experiment(out)

        # Versions are read last, once every library the run used has been imported.
        self.report["reproducibility"] = reproducibility_section(self.config)
        self.report["scaling"] = self._scaling()
        self.report["run"] = {
            "output_dir": str(self.config.output_dir),
            "input": self._fingerprinted,
        }
        self.report["field_kinds"] = field_kinds()
        ordered = {key: self.report[key] for key in REPORT_SECTIONS if key in self.report}
        artifacts.write_json(out / "reports" / "pipeline_report.json", ordered)
        artifacts.write_json(
            out / "metadata" / "run_manifest.json", self.report["reproducibility"]
        )
        write_html_report(out)
        if self._journalled:
            finish(out)  # the run is complete: nothing is left to resume
        # Last, so that the checksums cover every other artifact of the run.
        write_checksums(out)
        logger.info("artifacts written to %s", out)
        return out

    def _source(self, data: Data) -> InputSource:
        if is_stdin(data):
            raise ConfigError(
                "live input (--input -) is read once, as it arrives: it goes with --mode all or "
                "--mode streaming (the other stages read the rows received once the feed has "
                "ended), and not with --resume"
            )
        source = as_source(sample_dataset_path() if data is None else data, self.config.encoding)
        require_columns(source, REQUIRED_COLUMNS)
        if self._fingerprinted != source.name or isinstance(data, pd.DataFrame):
            self.report["dataset_fingerprint"] = fingerprint(source)
            # Before any measured run: no data rows, too many quarantined rows
            # (max_quarantine_ratio) or no training / held-out row stop the run here.
            self._input_check = check_input(source, self.config)
            self._fingerprinted = source.name
        return source

    def _measure(self, mode: str, source: InputSource, **options):
        try:
            return measure(mode, source, self.config, **options)[0]
        except MeasuredRunFailed as failure:
            if str(failure).startswith("ResumeError: "):
                raise ResumeError(str(failure).removeprefix("ResumeError: ")) from None
            # A worker that could not write its spill files (disk full, file size limit,
            # read-only or forbidden directory) has an output problem, not a resource one.
            if _WRITE_FAILURE.search(str(failure)):
                raise OutputError(
                    f"{mode} run could not write under {self.output_dir}: {failure}; free "
                    "space there or choose another --output-dir"
                ) from None
            raise ResourceError(f"{mode} run failed: {failure}") from None

    @contextlib.contextmanager
    def _engine(self):
        """The executor of benchmark repetitions and sweep settings: the one already open,
        or one opened for the configuration (a local or remote Dask cluster, or none) and
        closed when the outermost stage using it ends."""
        if self._executor is not None:
            yield self._executor
            return
        with open_executor(self.config) as executor:
            self._executor = executor
            self._engine_description = executor.describe()
            try:
                yield executor
            finally:
                self._tasks += executor.tasks
                self._executor = None

    def _thread_limit(self):
        # n_jobs bounds the BLAS / OpenMP pools of numpy and scikit-learn and Arrow's pool.
        pa.set_cpu_count(self.config.n_jobs)
        return threadpool_limits(limits=self.config.n_jobs)

    def _spill_dir(self) -> Path:
        spill_dir = self.output_dir / "intermediate"
        spill_dir.mkdir(parents=True, exist_ok=True)
        if self.resume:
            return spill_dir  # the resumed worker keeps the committed chunks' files
        for stale in spill_dir.glob("stream_chunk_*_*.csv"):
            stale.unlink()
        return spill_dir

    def _scaling(self) -> dict:
        """Where the measured runs went: engine, scheduler (without credentials), workers,
        and per task which worker and host ran it, with the measured overlap per host."""
        engine = self._engine_description or SequentialExecutor().describe()
        parallel = engine["engine"] != "sequential"
        notes = {
            "sequential": "stages and sweep settings run one after another; n_jobs limits "
            "the numpy/scikit-learn thread pools",
            "dask-local": "benchmark repetitions and sweep settings ran as tasks on a local "
            "Dask cluster of n_jobs single-threaded workers, each measured run pinned to its "
            "worker's share of the cores; runs that overlapped share the machine, so their "
            "timings are not those of a run alone",
            "dask": "benchmark repetitions and sweep settings ran as tasks on the Dask "
            "scheduler named here, each in an isolated process on the worker that took it; "
            "timings from different machines, or from runs that overlapped on one machine, "
            "are not comparable with each other",
        }
        return {
            "n_jobs": self.config.n_jobs,
            "parallel_enabled": parallel,
            **engine,
            "isolation": "each measured run in a fresh worker process"
            if self.config.isolate_runs
            else "in-process",
            "blas_threads_limit": self.config.n_jobs,
            "max_concurrent_per_host": max_concurrency(self._tasks),
            "note": notes[engine["engine"]],
            "tasks": self._tasks,
        }

    def _run_dask_batch(self, data: Data) -> dict:
        """Batch mode as Dask tasks; its fingerprint covers every input file."""
        from .distributed.batch_engine import run_dask_batch  # Dask only when asked for

        if data is None or isinstance(data, pd.DataFrame):
            raise ConfigError(
                "engine 'dask' reads files: give --input a CSV or Parquet file, a directory "
                "or a quoted glob such as 'data/*.csv'"
            )
        with self.holding_output_dir(), self._thread_limit():
            self._dask_batch = run_dask_batch(data, self.config, self.output_dir)
        self.report["dataset_fingerprint"] = self._dask_batch.fingerprint
        self._fingerprinted = self._dask_batch.fingerprint["source"]
        self.report["batch"] = self._dask_batch.section
        return self._dask_batch.section

    def _refuse_dask_engine(self, what: str) -> None:
        if self.config.engine == "dask":
            raise ConfigError(
                f"engine 'dask' runs batch mode only, not {what}: use --mode batch, or "
                "--engine local"
            )

    def _write_quarantine(self, out: Path) -> None:
        """``reports/quarantine.csv``: every quarantined row (line, reason, raw), header always;
        from the batch result, or the streaming one in a streaming-only run.  A Dask batch run
        adds a first column, ``file``: the input file the line belongs to."""
        if self._dask_batch is not None:
            table = self._dask_batch.quarantine
            artifacts.write_csv(
                out / "reports" / "quarantine.csv",
                table[["file", *quarantine_table(table).columns]],
            )
            return
        if self._batch is not None:
            quarantine = self._batch.transformed.quarantine
        elif self._streaming is not None:
            quarantine = self._streaming.quarantine
        else:
            return
        artifacts.write_csv(out / "reports" / "quarantine.csv", quarantine_table(quarantine))

    def _write_streaming(self, out: Path) -> None:
        records = self._streaming.chunk_records
        chunks, profile = artifacts.chunk_tables(records)
        artifacts.write_jsonl(out / "reports" / "streaming_chunks.jsonl", records)
        artifacts.write_csv(out / "benchmarks" / "streaming_chunks.csv", chunks)
        artifacts.write_csv(out / "profiles" / "operator_profile.csv", profile)

    def _write_benchmark(self, out: Path) -> None:
        significance = self.report["benchmark"]["significance"]
        artifacts.write_csv(out / "benchmarks" / "significance_tests.csv", [significance])
        artifacts.write_csv(out / "benchmarks" / "latency_vs_data_size.csv", self._data_size)

    def _write_experiment(self, out: Path) -> None:
        from .plots import write_tradeoff_plots  # plotting is only needed here

        rows = pd.DataFrame(self.report["constraint_experiment"]["settings"])
        artifacts.write_csv(out / "benchmarks" / "constraint_experiment.csv", rows)
        artifacts.write_jsonl(out / "reports" / "constraint_experiment_log.jsonl", self._sweep_log)
        artifacts.write_csv(
            out / "benchmarks" / "throughput_vs_memory.csv",
            rows[
                [
                    "memory_limit_mb",
                    "chunk_size",
                    "compute_limit",
                    "throughput_rows_s",
                    "peak_memory_mb",
                    "chunks_over_budget",
                    "retries",
                ]
            ],
        )
        artifacts.write_csv(
            out / "benchmarks" / "resource_vs_accuracy.csv",
            rows[
                [
                    "chunk_size",
                    "memory_limit_mb",
                    "compute_limit",
                    "measured_cpu_utilization",
                    "model_accuracy_r2",
                    "model_rmse",
                    "preprocessing_latency_s",
                    "training_time_s",
                ]
            ],
        )
        write_tradeoff_plots(rows, out / "benchmarks")
