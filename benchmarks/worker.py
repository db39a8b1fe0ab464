"""One measurement in a fresh process, forked from a warmed fork server.

:func:`child_main` is the target of each worker process that ``benchmarks/run.py`` forks
from a ``multiprocessing`` fork server preloaded with ``nba_pipeline.worker_warmup``: the
same lean, warmed start as the pipeline's own measured runs.  The worker pins itself to
``cores`` CPUs and sizes the Arrow and BLAS thread pools to match (as the pipeline's workers
do), warms up on the packaged sample whatever the fork server has not run yet (the naive
baseline, the readers), takes its RSS (the baseline), runs the measured job once and sends
back a small dict of figures with its peak RSS from ``getrusage``.

``python benchmarks/worker.py '<json spec>'`` runs one spec in a new interpreter instead,
for debugging (its baseline RSS is higher: nothing is shared with a fork server).

Spec keys: ``kind`` (read, batch, streaming, naive, profile_batch, profile_streaming),
``path``, ``profile`` (edge or server), ``overrides`` (config keys), ``cores``, and per kind
``spill`` (streaming), ``readers`` and ``repeats`` (read), ``chunk_size`` (naive), and
``warmup`` (default true; false when the fork server has already run the pipeline's modes).
"""

from __future__ import annotations

import cProfile
import inspect
import json
import logging
import os
import pstats
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
from threadpoolctl import threadpool_limits

WARMUP_ROWS = 120
MARKER = "BENCH_RESULT "


def measure(spec: dict) -> dict:
    """Run one spec in this process and return its figures."""
    logging.getLogger().setLevel(logging.ERROR)  # quarantine warnings are not figures
    cores = _pin(int(spec.get("cores", 1)))
    with threadpool_limits(limits=cores):
        result = KINDS[spec["kind"]](spec)
    result["cores"] = cores
    result["peak_rss_getrusage_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["rss_at_end_mb"] = rss_mb()
    result["peak_rss_mb"] = max(result["peak_rss_getrusage_mb"], result["rss_at_end_mb"])
    return json.loads(json.dumps(result, default=_plain))


def child_main(connection, spec: dict) -> None:
    """Entry point of a forked worker: the figures or the error go back on ``connection``."""
    try:
        message = {"result": measure(spec), "error": None}
    except Exception as exc:  # reported to the parent, which records it and goes on
        message = {"result": None, "error": f"{type(exc).__name__}: {exc}"}
    connection.send(message)
    connection.close()


def main(argv: list[str]) -> int:
    print(MARKER + json.dumps(measure(json.loads(argv[1]))), flush=True)
    return 0


def _pin(cores: int) -> int:
    available = sorted(os.sched_getaffinity(0))
    chosen = available[: max(1, min(cores, len(available)))]
    os.sched_setaffinity(0, chosen)
    pa.set_cpu_count(len(chosen))
    return len(chosen)


def rss_mb() -> float:
    with open("/proc/self/statm", "rb") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _config(spec: dict):
    from nba_pipeline.config import PipelineConfig

    return PipelineConfig.from_profile(spec.get("profile", "edge")).with_overrides(
        **spec.get("overrides", {})
    )


def _sample_head():
    from nba_pipeline.ingestion import InputSource, head_source
    from nba_pipeline.synth import sample_dataset_path

    return head_source(InputSource.from_path(sample_dataset_path()), WARMUP_ROWS)


# --- pipeline modes -------------------------------------------------------------------


def run_batch_spec(spec: dict) -> dict:
    from nba_pipeline.batch import run_batch
    from nba_pipeline.ingestion import InputSource

    config = _config(spec)
    if spec.get("warmup", True):
        run_batch(_sample_head(), config)
    baseline = rss_mb()
    started = time.perf_counter()
    result = run_batch(InputSource.from_path(spec["path"]), config)
    wall = time.perf_counter() - started
    section = result.section
    return {
        "baseline_rss_mb": baseline,
        "wall_s": wall,
        **_pick(section, "latency_s", "throughput_rows_s", "rows", "rows_processed"),
        **_pick(section, "rows_quarantined", "read_s", "fit_state_s", "training_time_s"),
        "operator_profile_s": section.get("operator_profile_s", {}),
        "sampled_peak_rss_mb": section.get("memory", {}).get("peak_rss_mb"),
        "r2": section.get("model", {}).get("r2"),
    }


def run_streaming_spec(spec: dict) -> dict:
    from nba_pipeline.ingestion import InputSource

    config = _config(spec)
    spill_root = Path(tempfile.mkdtemp(prefix="nba-bench-spill-")) if spec.get("spill") else None
    try:
        if spec.get("warmup", True):
            warm_spill = spill_root / "warmup" if spill_root else None
            _stream(_sample_head(), config.with_overrides(max_memory_mb=1e6), warm_spill)
        baseline = rss_mb()
        spill_dir = spill_root / "intermediate" if spill_root else None
        started = time.perf_counter()
        result = _stream(InputSource.from_path(spec["path"]), config, spill_dir)
        wall = time.perf_counter() - started
        spill_files = len(list(spill_dir.iterdir())) if spill_dir and spill_dir.exists() else 0
    finally:
        if spill_root:
            shutil.rmtree(spill_root, ignore_errors=True)
    section = result.section
    memory = section.get("memory", {})
    return {
        "baseline_rss_mb": baseline,
        "wall_s": wall,
        **_pick(section, "latency_s", "throughput_rows_s", "rows", "rows_processed", "chunks"),
        **_pick(section, "fit_pass_s", "transform_pass_s", "spill_s", "final_chunk_size"),
        "operator_profile_s": section.get("operator_profile_s", {}),
        "sampled_peak_rss_mb": memory.get("peak_rss_mb"),
        "chunks_over_budget": memory.get("chunks_over_budget"),
        "retries": memory.get("retries"),
        "training_time_s": section.get("model", {}).get("training_time_s"),
        "r2": section.get("model", {}).get("r2"),
        "spill_files": spill_files,
        "telemetry": config.telemetry,
    }


def _stream(source, config, spill_dir=None):
    """``run_streaming`` as the pipeline's own workers call it: the chunk records stay on
    disk (their parent reads them, outside the measurement) and are deleted here."""
    from nba_pipeline.streaming import run_streaming

    options = {}
    if "load_records" in inspect.signature(run_streaming).parameters:
        options["load_records"] = False
    result = run_streaming(source, config, spill_dir, **options)
    log_path = getattr(result, "chunk_log_path", None)
    if log_path and options:
        Path(log_path).unlink(missing_ok=True)
    return result


# --- references -----------------------------------------------------------------------


def run_naive_spec(spec: dict) -> dict:
    import warnings

    from naive import run_naive
    from nba_pipeline.synth import sample_dataset_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_naive(sample_dataset_path(), spec.get("chunk_size"))
        baseline = rss_mb()
        result = run_naive(spec["path"], spec.get("chunk_size"))
    return {"baseline_rss_mb": baseline, **result}


READERS = ("pyarrow.csv.read_csv", "pandas.read_csv[c]", "pandas.read_csv[pyarrow]")


def _read(reader: str, path: str) -> int:
    if reader == "pyarrow.csv.read_csv":
        import pyarrow.csv as pa_csv

        return pa_csv.read_csv(path).num_rows
    import pandas as pd

    engine = "c" if reader.endswith("[c]") else "pyarrow"
    return len(pd.read_csv(path, engine=engine))


def run_read_spec(spec: dict) -> dict:
    from nba_pipeline.synth import sample_dataset_path

    readers = spec.get("readers", list(READERS))
    for reader in readers:
        _read(reader, str(sample_dataset_path()))
    baseline = rss_mb()
    seconds: dict[str, list[float]] = {reader: [] for reader in readers}
    rows = {}
    # Readers take turns, so a slow spell of the machine spreads over all of them.
    for _ in range(int(spec.get("repeats", 3))):
        for reader in readers:
            started = time.perf_counter()
            rows[reader] = _read(reader, spec["path"])
            seconds[reader].append(time.perf_counter() - started)
    return {"baseline_rss_mb": baseline, "seconds": seconds, "rows": rows}


# --- where the time and memory go -----------------------------------------------------


def run_profile_spec(spec: dict) -> dict:
    """cProfile of one run, self time summed per source file, plus RSS per batch phase."""
    from nba_pipeline import batch as batch_module
    from nba_pipeline.ingestion import InputSource

    streaming = spec["kind"] == "profile_streaming"
    config = _config(spec)
    if streaming:

        def job(source):
            return _stream(source, config)

        job(_sample_head())
    else:

        def job(source):
            return batch_module.run_batch(source, config)

        job(_sample_head())
    phases = None if streaming else _PhaseMemory(batch_module)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    job(InputSource.from_path(spec["path"]))
    profiler.disable()
    wall = time.perf_counter() - started
    if phases:
        phases.stop()
    stats = pstats.Stats(profiler)
    return {
        "profiled_wall_s": wall,
        "self_time_by_file_s": _by_file(stats),
        "top_self_time": _top_functions(stats, 15, "self_s"),
        "top_project_cumulative": _top_functions(stats, 20, "cumulative_s", project=True),
        "rss_by_phase_mb": phases.peaks if phases else None,
    }


class _PhaseMemory:
    """Samples RSS every 2 ms and files each sample under the batch phase running then."""

    PHASES = (
        "read_table",
        "read_and_clean",
        "derive_features",
        "derive",
        "transform_features",
        "fit_batch_model",
    )

    def __init__(self, module) -> None:
        self.current = "other (fit state, scoring, report)"
        self.peaks: dict[str, float] = {}
        self._running = True
        for name in self.PHASES:
            if hasattr(module, name):  # the phases batch mode has in this version
                setattr(module, name, self._wrap(getattr(module, name), name))
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _wrap(self, function, name):
        def wrapped(*args, **kwargs):
            previous, self.current = self.current, name
            try:
                return function(*args, **kwargs)
            finally:
                self.current = previous

        return wrapped

    def _sample(self) -> None:
        while self._running:
            current = rss_mb()
            self.peaks[self.current] = max(self.peaks.get(self.current, 0.0), current)
            time.sleep(0.002)

    def stop(self) -> None:
        self._running = False
        self._thread.join()


def _by_file(stats: pstats.Stats) -> dict[str, float]:
    totals: dict[str, float] = {}
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        totals[_source_name(filename)] = totals.get(_source_name(filename), 0.0) + tottime
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def _source_name(filename: str) -> str:
    """``src/nba_pipeline/x.py`` for the project's files, the package name for libraries."""
    parts = Path(filename).parts
    if "nba_pipeline" in parts:
        return "src/nba_pipeline/" + parts[-1]
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    if filename.startswith("<") or filename == "~":
        return "builtins and C calls"
    return "python stdlib"


def _top_functions(stats: pstats.Stats, count: int, key: str, project=False) -> list[dict]:
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _c) in stats.stats.items():
        if project and "nba_pipeline" not in Path(filename).parts:
            continue
        rows.append(
            {
                "function": f"{_source_name(filename)}:{line}({name})",
                "calls": calls,
                "self_s": tottime,
                "cumulative_s": cumtime,
            }
        )
    return sorted(rows, key=lambda row: -row[key])[:count]


def _pick(section: dict, *keys: str) -> dict:
    return {key: section.get(key) for key in keys}


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


KINDS = {
    "batch": run_batch_spec,
    "streaming": run_streaming_spec,
    "naive": run_naive_spec,
    "read": run_read_spec,
    "profile_batch": run_profile_spec,
    "profile_streaming": run_profile_spec,
}

if __name__ == "__main__":
    sys.exit(main(sys.argv))
