"""Benchmark suite of the pipeline: ``python benchmarks/run.py [--quick] [--output FILE]``.

Inputs are generated with ``nba-pipeline synth`` into a temporary folder.  Every measured run
happens in a fresh interpreter (``benchmarks/worker.py``) that warms the code path up on the
packaged sample before it measures, so each peak RSS belongs to one run; the input file is
read once beforehand so that every run finds it in the page cache.  Each figure is the median
of its repetitions with the minimum and maximum next to it.  Combinations whose single run
is estimated (from the smaller sizes) to take longer than ``--max-run-seconds`` are skipped
and listed with the estimate.

Sections: the bare read ceiling (pyarrow and pandas readers), batch preprocessing end to
end, streaming at three chunk sizes, the naive baseline (``benchmarks/naive.py``), the
operator profile, the overhead of telemetry and of spilling, the peak RSS of edge streaming
at two sizes, the wall time of full ``nba-pipeline run`` jobs on the real table, where the
time and memory go (cProfile, RSS per batch phase), and the targets, each met or missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

import worker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Workers fork from a server that has imported and warmed the pipeline's modes, exactly as
# the pipeline's own measured runs do, so their baseline RSS is the pipeline's.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["nba_pipeline.worker_warmup"])
MIB_PER_GB = 1024
OPERATORS = ("preprocess_s", "feature_engineering_s", "feature_selection_s", "encode_scale_s")

PLANS = {
    "full": {
        "sizes": [10_000, 100_000, 1_000_000, 5_000_000],
        "chunk_sizes": [64, 1_024, 16_384],
        "max_reps": 5,
        "combination_budget_s": 40.0,
        "max_run_s": 180.0,
        "read_max_reps": 5,
        "naive_whole_max_rows": 1_000_000,
        "naive_chunked_max_rows": 100_000,
        "overhead_rows": 30_000,
        "overhead_reps": 4,
        "edge_rows": [100_000, 2_000_000],
        "full_run_reps": 3,
        "profile_batch_rows": 1_000_000,
        "profile_streaming_rows": 20_000,
    },
    "quick": {
        "sizes": [10_000, 50_000],
        "chunk_sizes": [64, 1_024, 16_384],
        "max_reps": 3,
        "combination_budget_s": 10.0,
        "max_run_s": 30.0,
        "read_max_reps": 3,
        "naive_whole_max_rows": 50_000,
        "naive_chunked_max_rows": 10_000,
        "overhead_rows": 10_000,
        "overhead_reps": 3,
        "edge_rows": [10_000, 100_000],
        "full_run_reps": 1,
        "profile_batch_rows": 50_000,
        "profile_streaming_rows": 5_000,
    },
}

# Batch runs as a server would (all cores, no CPU cap); streaming runs under the edge
# budget with the CPU cap lifted so that throughput is the code's, not the cap's.
BATCH_PROFILE = "server"
STREAMING_PROFILE = "edge"
THROUGHPUT_OVERRIDES = {"max_compute_units": 1.0, "spill_to_disk": False}

TARGETS = {
    "batch_vs_read_ceiling": 1 / 3,
    "streaming_16384_vs_batch": 1 / 2,
    "streaming_64_rows_s": 20_000,
    "batch_peak_rss_1m_mb": 1 * MIB_PER_GB,
    "streaming_rss_flat_tolerance": 0.20,
    "full_run_s": 15.0,
}


class BenchmarkError(RuntimeError):
    """A worker or a command failed; the message carries the end of its error output."""


# --- running things -------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_worker(spec: dict, timeout_s: float = 3_600) -> dict:
    """Run one measurement in a fresh worker forked from the warmed fork server.

    While waiting, the parent samples the worker's RSS every 5 ms (as the pipeline's own
    isolation does), because ``getrusage`` in a forked child leaves out pages it still
    shares with the fork server; the peak reported is the larger of the two.
    """
    if spec["kind"] in ("batch", "streaming"):
        spec = {**spec, "warmup": False}  # the fork server has run both modes already
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    process = _CONTEXT.Process(target=worker.child_main, args=(sender, spec), daemon=True)
    process.start()
    sender.close()
    handle = psutil.Process(process.pid)
    deadline = time.monotonic() + timeout_s
    sampled, message = 0.0, None
    while True:
        if receiver.poll(0.005) or not process.is_alive():
            with contextlib.suppress(EOFError):
                message = receiver.recv() if receiver.poll(0) else None
            break
        if time.monotonic() > deadline:
            process.kill()
            process.join()
            raise BenchmarkError(f"worker timed out after {timeout_s:.0f} s: {spec}")
        with contextlib.suppress(psutil.NoSuchProcess):
            sampled = max(sampled, handle.memory_info().rss / 2**20)
    process.join()
    if message is None:
        raise BenchmarkError(f"worker ended without a result (exit code {process.exitcode})")
    if message["error"]:
        raise BenchmarkError(message["error"])
    result = message["result"]
    result["load_average_1m_after"] = os.getloadavg()[0]
    result["peak_rss_parent_sampled_mb"] = sampled
    result["peak_rss_mb"] = max(result["peak_rss_mb"], sampled)
    return result


def cli_command() -> list[str]:
    """``nba-pipeline`` of this interpreter's environment, or the module as a fallback."""
    script = Path(sys.executable).with_name("nba-pipeline")
    if script.exists():
        return [str(script)]
    found = shutil.which("nba-pipeline")
    return [found] if found else [sys.executable, "-m", "nba_pipeline.cli"]


def warm_page_cache(path: Path) -> None:
    with path.open("rb") as handle:
        while handle.read(1 << 23):
            pass


def stats(values) -> dict | None:
    values = [float(value) for value in values if value is not None]
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }


def median(summary: dict | None) -> float | None:
    return None if summary is None else summary["median"]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def repetitions(plan: dict, estimate_s: float | None) -> int:
    """As many runs as fit the per-combination budget, at least 2 when two fit in 1.5 times
    the budget, else 1, and at most the plan's maximum."""
    if estimate_s is None or estimate_s <= 0:
        return plan["max_reps"]
    fitting = int(plan["combination_budget_s"] // estimate_s)
    floor = 2 if 2 * estimate_s <= 1.5 * plan["combination_budget_s"] else 1
    return max(floor, min(plan["max_reps"], fitting))


def available_memory_mb() -> float:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


# --- the suite ------------------------------------------------------------------------------


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.plan = dict(PLANS["quick" if args.quick else "full"])
        if args.sizes:
            self.plan["sizes"] = sorted(args.sizes)
        if args.max_run_seconds:
            self.plan["max_run_s"] = args.max_run_seconds
        self.cores = len(os.sched_getaffinity(0))
        self.workdir = Path(tempfile.mkdtemp(prefix="nba-bench-"))
        self.inputs: dict[int, dict] = {}
        self.results: dict = {
            "meta": self._meta(),
            "plan": self.plan,
            "inputs": [],
            "read_ceiling": [],
            "batch": [],
            "streaming": [],
            "naive": [],
            "overheads": {},
            "edge_memory": {},
            "full_runs": {},
            "profiles": {},
            "targets": [],
            "skipped": [],
            "errors": [],
        }

    # inputs ---------------------------------------------------------------------------------

    def input(self, rows: int) -> Path:
        if rows not in self.inputs:
            path = self.workdir / f"synth_{rows}.csv"
            command = [*cli_command(), "synth", "--rows", str(rows)]
            command += ["--seed", str(self.args.seed), "--output", str(path)]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise BenchmarkError(f"synth failed: {done.stderr[-2000:]}")
            record = {
                "rows": rows,
                "seed": self.args.seed,
                "bytes": path.stat().st_size,
                "synth_s": time.perf_counter() - started,
                "file": path.name,
            }
            self.inputs[rows] = record
            self.results["inputs"].append(record)
            log(f"input: {rows:,} rows, {record['bytes'] / 1e6:.1f} MB")
        path = self.workdir / self.inputs[rows]["file"]
        warm_page_cache(path)
        return path

    def skip(self, what: str, reason: str, estimate_s: float | None = None) -> None:
        self.results["skipped"].append({"what": what, "reason": reason, "estimate_s": estimate_s})
        log(f"skipped {what}: {reason}")

    def error(self, what: str, exc: Exception) -> None:
        self.results["errors"].append({"what": what, "error": str(exc)})
        log(f"FAILED {what}: {exc}")

    # read ceiling ---------------------------------------------------------------------------

    def read_ceiling(self) -> None:
        for rows in self.plan["sizes"]:
            path = self.input(rows)
            probe = run_worker({"kind": "read", "path": str(path), "repeats": 1, "cores": 99})
            per_round = sum(sum(times) for times in probe["seconds"].values())
            reps = max(2, min(self.plan["read_max_reps"], int(30 // max(per_round, 1e-3))))
            result = run_worker({"kind": "read", "path": str(path), "repeats": reps, "cores": 99})
            size_mb = self.inputs[rows]["bytes"] / 1e6
            for reader, seconds in result["seconds"].items():
                summary = stats(seconds)
                self.results["read_ceiling"].append(
                    {
                        "rows": rows,
                        "reader": reader,
                        "threads": result["cores"],
                        "seconds": summary,
                        "rows_per_s": stats(rows / s for s in seconds),
                        "mb_per_s": stats(size_mb / s for s in seconds),
                    }
                )
            best = self.ceiling(rows)
            log(f"read ceiling {rows:,} rows: {best['reader']} {median(best['rows_per_s']):,.0f}")

    def ceiling(self, rows: int) -> dict | None:
        candidates = [r for r in self.results["read_ceiling"] if r["rows"] == rows]
        return max(candidates, key=lambda r: median(r["rows_per_s"]), default=None)

    # pipeline modes -------------------------------------------------------------------------

    def measure(self, section: str, key: dict, spec: dict, rows: int, reps: int) -> dict | None:
        """``reps`` fresh-process runs of ``spec``; one aggregated record in ``section``."""
        runs = []
        label = f"{section} {key} {rows:,} rows"
        for rep in range(reps):
            try:
                runs.append(run_worker(spec))
            except BenchmarkError as exc:
                self.error(label, exc)
                break
            log(f"{label}: run {rep + 1}/{reps} {runs[-1]['latency_s']:.2f} s")
        if not runs:
            return None
        record = {**key, "rows": rows, "reps": len(runs), **aggregate(runs, rows)}
        record["runs"] = runs
        self.results[section].append(record)
        return record

    def estimate(self, section: str, key: dict, rows: int) -> tuple[float | None, dict | None]:
        """Seconds for ``rows`` at the throughput of the largest smaller size measured."""
        done = [
            r
            for r in self.results[section]
            if r["rows"] < rows and all(r.get(k) == v for k, v in key.items())
        ]
        if not done:
            return None, None
        last = max(done, key=lambda r: r["rows"])
        rate = median(last["rows_per_s"])
        return (rows / rate if rate else None), last

    def memory_fits(self, label: str, rows: int, previous: dict | None) -> bool:
        if previous is None:
            return True
        peak, base = median(previous["peak_rss_mb"]), median(previous["baseline_rss_mb"])
        expected = base + (peak - base) * rows / previous["rows"]
        allowed = 0.8 * available_memory_mb()
        if expected > allowed:
            reason = f"estimated peak RSS {expected:,.0f} MiB > 80% of available memory"
            self.skip(label, reason)
            return False
        return True

    def batch(self) -> None:
        overrides = {"max_compute_units": 1.0, "n_jobs": self.cores}
        for rows in self.plan["sizes"]:
            label = f"batch at {rows:,} rows"
            estimate, previous = self.estimate("batch", {}, rows)
            if estimate and estimate > self.plan["max_run_s"]:
                self.skip(label, f"estimated {estimate:.0f} s per run", estimate)
                continue
            if not self.memory_fits(label, rows, previous):
                continue
            spec = {
                "kind": "batch",
                "path": str(self.input(rows)),
                "profile": BATCH_PROFILE,
                "overrides": overrides,
                "cores": self.cores,
            }
            record = self.measure("batch", {}, spec, rows, repetitions(self.plan, estimate))
            if record:
                best = self.ceiling(rows)
                if best:
                    record["read_ceiling_reader"] = best["reader"]
                    record["ratio_to_read_ceiling"] = ratio(
                        median(record["rows_per_s"]), median(best["rows_per_s"])
                    )

    def streaming_spec(self, rows: int, chunk: int, spill: bool = False, **overrides) -> dict:
        return {
            "kind": "streaming",
            "path": str(self.input(rows)),
            "profile": STREAMING_PROFILE,
            "overrides": {**THROUGHPUT_OVERRIDES, "chunk_size": chunk, **overrides},
            "cores": 1,
            "spill": spill,
        }

    def streaming(self) -> None:
        for chunk in self.plan["chunk_sizes"]:
            for rows in self.plan["sizes"]:
                label = f"streaming chunk {chunk:,} at {rows:,} rows"
                key = {"chunk_size": chunk}
                estimate, _ = self.estimate("streaming", key, rows)
                if estimate and estimate > self.plan["max_run_s"]:
                    self.skip(label, f"estimated {estimate:.0f} s per run", estimate)
                    continue
                spec = self.streaming_spec(rows, chunk)
                record = self.measure(
                    "streaming", key, spec, rows, repetitions(self.plan, estimate)
                )
                if record:
                    batch = self.find("batch", rows)
                    record["ratio_to_batch"] = ratio(
                        median(record["rows_per_s"]), batch and median(batch["rows_per_s"])
                    )

    def find(self, section: str, rows: int, **key) -> dict | None:
        for record in self.results[section]:
            if record["rows"] == rows and all(record.get(k) == v for k, v in key.items()):
                return record
        return None

    # naive baseline -------------------------------------------------------------------------

    def naive(self) -> None:
        modes = [None, *self.plan["chunk_sizes"]]
        for chunk in modes:
            for rows in self.plan["sizes"]:
                limit = "naive_whole_max_rows" if chunk is None else "naive_chunked_max_rows"
                if rows > self.plan[limit]:
                    continue
                label = f"naive {'whole table' if chunk is None else f'chunk {chunk:,}'}"
                label += f" at {rows:,} rows"
                key = {"chunk_size": chunk}
                estimate, previous = self.estimate("naive", key, rows)
                if estimate and estimate > self.plan["max_run_s"]:
                    self.skip(label, f"estimated {estimate:.0f} s per run", estimate)
                    continue
                if chunk is None and not self.memory_fits(label, rows, previous):
                    continue
                spec = {"kind": "naive", "path": str(self.input(rows)), "chunk_size": chunk}
                record = self.measure("naive", key, spec, rows, repetitions(self.plan, estimate))
                if not record:
                    continue
                pipeline = (
                    self.find("batch", rows)
                    if chunk is None
                    else self.find("streaming", rows, chunk_size=chunk)
                )
                record["compared_with"] = "batch" if chunk is None else f"streaming {chunk}"
                record["pipeline_rows_per_s"] = pipeline and median(pipeline["rows_per_s"])
                record["speedup"] = ratio(
                    record["pipeline_rows_per_s"], median(record["rows_per_s"])
                )

    # overheads ------------------------------------------------------------------------------

    def overheads(self) -> None:
        rows, reps = self.plan["overhead_rows"], self.plan["overhead_reps"]
        variants = {
            "base": self.streaming_spec(rows, 64),
            "telemetry_off": self.streaming_spec(rows, 64, telemetry=False),
            "spill_on": self.streaming_spec(rows, 64, spill=True),
        }
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        # Variants take turns so that a slow spell of the machine hits all of them.
        for rep in range(reps):
            for name, spec in variants.items():
                try:
                    runs[name].append(run_worker(spec))
                except BenchmarkError as exc:
                    self.error(f"overhead {name}", exc)
            log(f"overheads at {rows:,} rows, chunk 64: round {rep + 1}/{reps}")
        summary = {name: aggregate(result, rows) for name, result in runs.items() if result}
        base = summary.get("base")
        self.results["overheads"] = {
            "rows": rows,
            "chunk_size": 64,
            "reps": reps,
            "variants": summary,
            **on_off("telemetry_latency", base, summary.get("telemetry_off"), "latency_s", True),
            **on_off("spill_wall", base, summary.get("spill_on"), "wall_s", False),
            **on_off("spill_latency", base, summary.get("spill_on"), "latency_s", False),
        }

    # edge memory ----------------------------------------------------------------------------

    def edge_memory(self) -> None:
        points = {}
        for rows in self.plan["edge_rows"]:
            reused = self.find("streaming", rows, chunk_size=64)
            if reused:
                points[rows] = {"source": "streaming chunk 64 runs", **pick_memory(reused)}
                continue
            try:
                run = run_worker(self.streaming_spec(rows, 64))
            except BenchmarkError as exc:
                self.error(f"edge memory at {rows:,} rows", exc)
                continue
            record = aggregate([run], rows)
            points[rows] = {"source": "own run", **pick_memory(record)}
            points[rows]["rows_per_s"] = median(record["rows_per_s"])
            log(f"edge memory at {rows:,} rows: peak {run['peak_rss_mb']:.0f} MiB")
        small, large = (points.get(rows) for rows in self.plan["edge_rows"])
        difference = (
            abs(large["peak_rss_mb"] - small["peak_rss_mb"]) / small["peak_rss_mb"]
            if small and large
            else None
        )
        self.results["edge_memory"] = {
            "config": "edge profile, chunk 64, max_memory_mb 256, max_compute_units 1.0, no spill",
            "points": {str(rows): point for rows, point in points.items()},
            "relative_difference": difference,
            "within_20_percent": None if difference is None else difference < 0.20,
        }

    # full runs ------------------------------------------------------------------------------

    def full_runs(self) -> None:
        table = self.args.real_table
        if not table or not Path(table).is_file():
            self.skip("full runs on the real table", f"{table} not found")
            return
        for profile in ("edge", "server"):
            walls, phases = [], None
            for rep in range(self.plan["full_run_reps"]):
                out = self.workdir / f"run_{profile}_{rep}"
                command = [*cli_command(), "run", "--profile", profile, "--input", str(table)]
                command += ["--output-dir", str(out)]
                started, epoch = time.perf_counter(), time.time()
                done = subprocess.run(command, capture_output=True, text=True)
                wall = time.perf_counter() - started
                shutil.rmtree(out, ignore_errors=True)
                if done.returncode != 0:
                    self.error(f"full run {profile}", BenchmarkError(done.stderr[-2000:]))
                    break
                walls.append(wall)
                if phases is None:
                    phases = run_phases(done.stderr, epoch, epoch + wall)
                log(f"full run --profile {profile}: {wall:.1f} s")
            self.results["full_runs"][profile] = {
                "command": f"nba-pipeline run --profile {profile} --input {Path(table).name}",
                "wall_s": stats(walls),
                "phases_s": phases,
            }

    # profiles -------------------------------------------------------------------------------

    def profiles(self) -> None:
        rows = self.plan["profile_batch_rows"]
        spec = {
            "kind": "profile_batch",
            "path": str(self.input(rows)),
            "profile": BATCH_PROFILE,
            "overrides": {"max_compute_units": 1.0, "n_jobs": self.cores},
            "cores": self.cores,
        }
        for name, spec_ in (
            ("batch", spec),
            (
                "streaming_chunk_64",
                {
                    **self.streaming_spec(self.plan["profile_streaming_rows"], 64),
                    "kind": "profile_streaming",
                },
            ),
        ):
            try:
                result = run_worker(spec_)
            except BenchmarkError as exc:
                self.error(f"profile {name}", exc)
                continue
            rows_ = rows if name == "batch" else self.plan["profile_streaming_rows"]
            self.results["profiles"][name] = {"rows": rows_, **result}
            log(f"profile {name} at {rows_:,} rows: {result['profiled_wall_s']:.1f} s")

    # targets --------------------------------------------------------------------------------

    def targets(self) -> None:
        sizes = self.plan["sizes"]
        reference = 1_000_000 if 1_000_000 in sizes else max(sizes)
        out = self.results["targets"]
        batch = self.find("batch", reference)
        value = batch and batch.get("ratio_to_read_ceiling")
        out.append(
            target(
                f"batch rows/s at {reference:,} >= 1/3 of the read ceiling",
                value,
                TARGETS["batch_vs_read_ceiling"],
                ">=",
                "ratio",
            )
        )
        stream = self.find("streaming", reference, chunk_size=16_384)
        out.append(
            target(
                f"streaming chunk 16,384 at {reference:,} >= 1/2 of batch rows/s",
                stream and stream.get("ratio_to_batch"),
                TARGETS["streaming_16384_vs_batch"],
                ">=",
                "ratio",
            )
        )
        small = [r for r in self.results["streaming"] if r["chunk_size"] == 64]
        at = 100_000 if any(r["rows"] == 100_000 for r in small) else None
        at = at or max((r["rows"] for r in small), default=None)
        stream64 = self.find("streaming", at, chunk_size=64) if at else None
        out.append(
            target(
                f"streaming chunk 64 at {at or 0:,} rows >= 20,000 rows/s",
                stream64 and median(stream64["rows_per_s"]),
                TARGETS["streaming_64_rows_s"],
                ">=",
                "rows/s",
            )
        )
        out.append(
            target(
                f"batch peak RSS at {reference:,} rows < 1 GB (1,024 MiB)",
                batch and median(batch["peak_rss_mb"]),
                TARGETS["batch_peak_rss_1m_mb"],
                "<",
                "MiB",
            )
        )
        flat = self.flatness()
        items = flat["per_chunk_size"].values()
        low = min((i["from_rows"] for i in items), default=100_000)
        high = max((i["to_rows"] for i in items), default=max(sizes))
        out.append(
            target(
                f"streaming peak RSS flat from {low:,} up to {high:,} rows (within 20%)",
                flat["worst_relative_change"],
                TARGETS["streaming_rss_flat_tolerance"],
                "<",
                "relative change",
                detail=flat,
            )
        )
        edge = self.results["edge_memory"]
        rows_a, rows_b = self.plan["edge_rows"]
        out.append(
            target(
                f"edge streaming peak RSS at {rows_a:,} vs {rows_b:,} rows differ by < 20%",
                edge.get("relative_difference"),
                0.20,
                "<",
                "relative change",
            )
        )
        for profile in ("edge", "server"):
            run = self.results["full_runs"].get(profile)
            out.append(
                target(
                    f"full `nba-pipeline run --profile {profile}` on the real table < 15 s",
                    run and median(run["wall_s"]),
                    TARGETS["full_run_s"],
                    "<",
                    "s",
                )
            )

    def flatness(self) -> dict:
        """Per chunk size: peak RSS at 100k (or the smallest size) vs the largest size run."""
        per_chunk = {}
        for chunk in self.plan["chunk_sizes"]:
            records = sorted(
                (r for r in self.results["streaming"] if r["chunk_size"] == chunk),
                key=lambda r: r["rows"],
            )
            if len(records) < 2:
                continue
            start = next((r for r in records if r["rows"] >= 100_000), records[0])
            end = records[-1]
            if end is start:
                start = records[0]
            change = median(end["peak_rss_mb"]) / median(start["peak_rss_mb"]) - 1
            sampled = ratio(
                median(end["sampled_peak_rss_mb"]), median(start["sampled_peak_rss_mb"])
            )
            per_chunk[str(chunk)] = {
                "from_rows": start["rows"],
                "to_rows": end["rows"],
                "from_peak_rss_mb": median(start["peak_rss_mb"]),
                "to_peak_rss_mb": median(end["peak_rss_mb"]),
                "relative_change": change,
                # The pipeline's own samples, taken during the chunk loop only.
                "loop_sampled_from_mb": median(start["sampled_peak_rss_mb"]),
                "loop_sampled_to_mb": median(end["sampled_peak_rss_mb"]),
                "loop_sampled_relative_change": None if sampled is None else sampled - 1,
            }
        changes = [abs(item["relative_change"]) for item in per_chunk.values()]
        return {"per_chunk_size": per_chunk, "worst_relative_change": max(changes, default=None)}

    # the whole run --------------------------------------------------------------------------

    def run(self) -> dict:
        started = time.perf_counter()
        stages = [
            self.read_ceiling,
            self.batch,
            self.streaming,
            self.naive,
            self.overheads,
            self.edge_memory,
            self.full_runs,
            self.profiles,
        ]
        try:
            for stage in stages:
                if stage.__name__ in self.args.skip:
                    self.skip(stage.__name__, "--skip")
                    continue
                stage_started = time.perf_counter()
                try:
                    stage()
                except BenchmarkError as exc:
                    self.error(stage.__name__, exc)
                self.results["meta"].setdefault("stage_s", {})[stage.__name__] = (
                    time.perf_counter() - stage_started
                )
            self.targets()
        finally:
            meta = self.results["meta"]
            meta["duration_s"] = time.perf_counter() - started
            meta["load_average_end"] = os.getloadavg()
            meta["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
            if not self.args.keep_inputs:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return self.results

    def _meta(self) -> dict:
        versions = {}
        for package in ("nba_pipeline", "numpy", "pandas", "pyarrow", "sklearn", "psutil"):
            try:
                module = __import__(package)
                versions[package] = getattr(module, "__version__", "unknown")
            except ImportError:
                versions[package] = None
        return {
            "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
            "plan": "quick" if self.args.quick else "full",
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpu": cpu_model(),
                "cores_available": len(os.sched_getaffinity(0)),
                "memory_total_mb": total_memory_mb(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "versions": versions,
            "load_average_start": os.getloadavg(),
            "batch_config": f"{BATCH_PROFILE} profile, max_compute_units 1.0, n_jobs = all cores",
            "streaming_config": f"{STREAMING_PROFILE} profile, max_compute_units 1.0, no spill",
            "method": (
                "each run in a fresh interpreter warmed up on the packaged sample, input in the "
                "page cache; median, min and max over the runs; peak RSS from getrusage"
            ),
        }


def aggregate(runs: list[dict], rows: int) -> dict:
    """Median, min and max of every figure of a list of worker results."""
    record = {
        "latency_s": stats(r.get("latency_s") for r in runs),
        "rows_per_s": stats(rows / r["latency_s"] for r in runs if r.get("latency_s")),
        "wall_s": stats(r.get("wall_s") for r in runs),
        "peak_rss_mb": stats(r.get("peak_rss_mb") for r in runs),
        "baseline_rss_mb": stats(r.get("baseline_rss_mb") for r in runs),
        "sampled_peak_rss_mb": stats(r.get("sampled_peak_rss_mb") for r in runs),
        "operator_profile_s": {
            name: stats(r.get("operator_profile_s", {}).get(name) for r in runs)
            for name in OPERATORS
        },
    }
    for name in (
        "read_s",
        "fit_state_s",
        "training_time_s",
        "fit_pass_s",
        "transform_pass_s",
        "spill_s",
    ):
        summary = stats(r.get(name) for r in runs)
        if summary:
            record[name] = summary
    extra = runs[0]
    for name in ("chunks", "final_chunk_size", "chunks_over_budget", "retries", "r2"):
        if name in extra:
            record[name] = extra[name]
    return record


def on_off(name: str, base: dict | None, other: dict | None, key: str, base_is_on: bool):
    """``{name}_ratio_on_off`` of the medians and ``{name}_ratio_on_off_min`` of the fastest
    runs (the minimum is the least disturbed by other work on the machine)."""
    if not base or not other:
        return {f"{name}_ratio_on_off": None, f"{name}_ratio_on_off_min": None}
    on, off = (base, other) if base_is_on else (other, base)
    return {
        f"{name}_ratio_on_off": ratio(median(on[key]), median(off[key])),
        f"{name}_ratio_on_off_min": ratio(on[key]["min"], off[key]["min"]),
    }


def pick_memory(record: dict) -> dict:
    return {
        "peak_rss_mb": median(record["peak_rss_mb"]),
        "peak_rss_range_mb": [record["peak_rss_mb"]["min"], record["peak_rss_mb"]["max"]],
        "baseline_rss_mb": median(record["baseline_rss_mb"]),
        "sampled_peak_rss_mb": median(record["sampled_peak_rss_mb"]),
        "chunks_over_budget": record.get("chunks_over_budget"),
        "retries": record.get("retries"),
    }


def target(name, value, threshold, op, unit, detail=None) -> dict:
    met = None if value is None else (value >= threshold if op == ">=" else value < threshold)
    entry = {"target": name, "measured": value, "threshold": threshold, "op": op, "unit": unit}
    entry["met"] = met
    if detail is not None:
        entry["detail"] = detail
    return entry


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ (\S+): (.*)$")


def run_phases(stderr: str, started: float, ended: float) -> dict | None:
    """Split a full run's wall time (epoch seconds ``started`` to ``ended``) by its log lines:
    start-up, the modes with the benchmark and the data-size curve, the constraint sweep,
    and the plots, report and checksums after it."""
    stamps = []
    for line in stderr.splitlines():
        match = _LOG_LINE.match(line)
        if match:
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            stamps.append((when, match.group(3)))
    sweep = [when for when, message in stamps if message.startswith("sweep ")]
    starts = [when for when, message in stamps if message.startswith("constraint sweep:")]
    if not stamps or not sweep or not starts:
        return None
    first = stamps[0][0]
    # Settings are logged when the sweep has gathered them all; its start is logged first.
    before_sweep = starts[0]
    return {
        "start_up_until_first_log_s": first - started,
        "modes_benchmark_data_size_s": before_sweep - first,
        "constraint_sweep_s": sweep[-1] - before_sweep,
        "sweep_settings": len(sweep),
        "plots_report_checksums_s": ended - sweep[-1],
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def total_memory_mb() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            return int(handle.readline().split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None


# --- the printed report ---------------------------------------------------------------------


def fmt(value, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        value = value["median"]
    return f"{value:,.{digits}f}{unit}"


def spread(summary: dict | None, digits: int = 0) -> str:
    if not summary:
        return "-"
    if summary["n"] == 1:
        return f"{summary['median']:,.{digits}f} (n=1)"
    low, high = summary["min"], summary["max"]
    return f"{summary['median']:,.{digits}f} [{low:,.{digits}f}-{high:,.{digits}f}]"


def table(title: str, headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return f"\n{title}\n  (nothing measured)\n"
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)
    ]
    line = "  ".join("-" * width for width in widths)
    out = [f"\n{title}", "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    for row in rows:
        out.append("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(out) + "\n"


def render(results: dict) -> str:
    meta = results["meta"]
    parts = [
        f"nba-pipeline benchmark ({meta['plan']}), {meta['machine']['cpu']}, "
        f"{meta['machine']['cores_available']} cores, "
        f"{fmt(meta['machine']['memory_total_mb'])} MiB; "
        f"load average {meta['load_average_start'][0]:.1f} at start, "
        f"{meta.get('load_average_end', [0])[0]:.1f} at end; "
        f"{fmt(meta.get('duration_s'))} s in all.",
        "Figures: median [min-max] over fresh-process runs (n = runs).",
    ]
    parts.append(
        table(
            "Read ceiling (whole file, all cores)",
            ["rows", "reader", "n", "seconds", "rows/s", "MB/s"],
            [
                [
                    fmt(r["rows"]),
                    r["reader"],
                    str(r["seconds"]["n"]),
                    spread(r["seconds"], 3),
                    spread(r["rows_per_s"]),
                    spread(r["mb_per_s"], 1),
                ]
                for r in results["read_ceiling"]
            ],
        )
    )
    parts.append(
        table(
            f"Batch end to end ({meta['batch_config']})",
            ["rows", "n", "latency s", "rows/s", "x ceiling", "peak RSS MiB", "base MiB"],
            [
                [
                    fmt(r["rows"]),
                    str(r["reps"]),
                    spread(r["latency_s"], 3),
                    spread(r["rows_per_s"]),
                    fmt(r.get("ratio_to_read_ceiling"), 3),
                    spread(r["peak_rss_mb"]),
                    fmt(r["baseline_rss_mb"]),
                ]
                for r in results["batch"]
            ],
        )
    )
    parts.append(
        table(
            f"Streaming ({meta['streaming_config']})",
            ["chunk", "rows", "n", "latency s", "rows/s", "x batch", "peak RSS MiB", "chunks"],
            [
                [
                    fmt(r["chunk_size"]),
                    fmt(r["rows"]),
                    str(r["reps"]),
                    spread(r["latency_s"], 3),
                    spread(r["rows_per_s"]),
                    fmt(r.get("ratio_to_batch"), 3),
                    spread(r["peak_rss_mb"]),
                    fmt(r.get("chunks")),
                ]
                for r in results["streaming"]
            ],
        )
    )
    parts.append(
        table(
            "Naive baseline (benchmarks/naive.py) and the pipeline's speed-up over it",
            ["mode", "rows", "n", "rows/s", "pipeline rows/s", "speed-up", "peak RSS MiB"],
            [
                [
                    "whole table" if r["chunk_size"] is None else f"chunk {r['chunk_size']:,}",
                    fmt(r["rows"]),
                    str(r["reps"]),
                    spread(r["rows_per_s"]),
                    fmt(r.get("pipeline_rows_per_s")),
                    fmt(r.get("speedup"), 2, "x"),
                    spread(r["peak_rss_mb"]),
                ]
                for r in results["naive"]
            ],
        )
    )
    operator_rows = []
    for section, label in (("batch", "batch"), ("streaming", "stream"), ("naive", "naive")):
        for r in results[section]:
            operators = [median(r["operator_profile_s"][name]) for name in OPERATORS]
            fit = median(r.get("fit_state_s") or r.get("fit_pass_s"))
            latency = median(r["latency_s"]) or 0
            chunk = r.get("chunk_size")
            operator_rows.append(
                [
                    label if chunk is None else f"{label} {chunk}",
                    fmt(r["rows"]),
                    *[fmt(value, 3) for value in operators],
                    fmt(fit, 3),
                    fmt(latency - sum(v or 0 for v in operators) - (fit or 0), 3),
                    fmt(latency, 3),
                ]
            )
    parts.append(
        table(
            "Time by operator, median seconds.  Streaming operators are pass 2 only; 'fit' is "
            "fit_state_s in batch and the whole of pass 1 (read, clean, derive, accumulate) in "
            "streaming; 'other' is the rest of the latency (chunk reading, telemetry, commits)",
            [
                "run",
                "rows",
                "preprocess",
                "features",
                "selection",
                "encode/scale",
                "fit",
                "other",
                "all",
            ],
            operator_rows,
        )
    )
    overheads = results.get("overheads") or {}
    if overheads.get("variants"):
        variants = overheads["variants"]
        parts.append(
            table(
                f"Overheads: streaming chunk 64 at {fmt(overheads.get('rows'))} rows",
                ["variant", "latency s", "wall s", "spill s", "peak RSS MiB"],
                [
                    [
                        name,
                        spread(v["latency_s"], 3),
                        spread(v["wall_s"], 3),
                        spread(v.get("spill_s"), 3),
                        spread(v["peak_rss_mb"]),
                    ]
                    for name, v in variants.items()
                ],
            )
        )
        parts.append(
            "on/off ratios, of the medians (of the fastest runs): telemetry latency "
            f"{fmt(overheads.get('telemetry_latency_ratio_on_off'), 3)} "
            f"({fmt(overheads.get('telemetry_latency_ratio_on_off_min'), 3)}); spill wall "
            f"{fmt(overheads.get('spill_wall_ratio_on_off'), 3)} "
            f"({fmt(overheads.get('spill_wall_ratio_on_off_min'), 3)}); spill latency "
            f"{fmt(overheads.get('spill_latency_ratio_on_off'), 3)} "
            f"({fmt(overheads.get('spill_latency_ratio_on_off_min'), 3)}; "
            "latency excludes spill_s)\n"
        )
    edge = results.get("edge_memory") or {}
    if edge.get("points"):
        parts.append(
            table(
                f"Edge streaming peak RSS ({edge['config']})",
                ["rows", "peak RSS MiB", "baseline MiB", "sampled peak MiB", "source"],
                [
                    [
                        fmt(int(rows)),
                        fmt(p["peak_rss_mb"]),
                        fmt(p["baseline_rss_mb"]),
                        fmt(p["sampled_peak_rss_mb"]),
                        p["source"],
                    ]
                    for rows, p in edge["points"].items()
                ],
            )
        )
    flat = next((t.get("detail") for t in results["targets"] if t.get("detail")), None)
    if flat and flat["per_chunk_size"]:
        parts.append(
            table(
                "Streaming peak RSS against input size: whole worker (getrusage and parent "
                "samples) and the pipeline's own samples during the chunk loop, MiB",
                ["chunk", "rows", "peak", "rows", "peak", "change", "loop", "loop", "change"],
                [
                    [
                        fmt(int(chunk)),
                        fmt(item["from_rows"]),
                        fmt(item["from_peak_rss_mb"]),
                        fmt(item["to_rows"]),
                        fmt(item["to_peak_rss_mb"]),
                        fmt(100 * item["relative_change"], 1, "%"),
                        fmt(item["loop_sampled_from_mb"]),
                        fmt(item["loop_sampled_to_mb"]),
                        fmt(
                            None
                            if item["loop_sampled_relative_change"] is None
                            else 100 * item["loop_sampled_relative_change"],
                            1,
                            "%",
                        ),
                    ]
                    for chunk, item in flat["per_chunk_size"].items()
                ],
            )
        )
    if results.get("full_runs"):
        parts.append(
            table(
                "Full runs on the real table (wall seconds, whole process)",
                ["command", "wall s", "start-up", "modes+bench", "sweep", "plots+report"],
                [
                    [
                        run["command"],
                        spread(run["wall_s"], 1),
                        *(
                            [fmt((run["phases_s"] or {}).get(k), 1) for k in PHASE_KEYS]
                            if run["phases_s"]
                            else ["-"] * len(PHASE_KEYS)
                        ),
                    ]
                    for run in results["full_runs"].values()
                ],
            )
        )
    for name, profile in results.get("profiles", {}).items():
        files = list(profile["self_time_by_file_s"].items())[:8]
        parts.append(
            table(
                f"Where the time goes: {name} at {fmt(profile['rows'])} rows under cProfile "
                f"({fmt(profile['profiled_wall_s'], 1)} s), self time by file",
                ["file or package", "self s", "share"],
                [
                    [file, fmt(seconds, 3), fmt(100 * seconds / profile["profiled_wall_s"], 1)]
                    for file, seconds in files
                ],
            )
        )
        if profile.get("rss_by_phase_mb"):
            parts.append(
                table(
                    f"Peak RSS by batch phase at {fmt(profile['rows'])} rows",
                    ["phase", "peak RSS MiB"],
                    [[k, fmt(v)] for k, v in profile["rss_by_phase_mb"].items()],
                )
            )
    parts.append(
        table(
            "Targets",
            ["target", "measured", "threshold", "result"],
            [
                [
                    t["target"],
                    fmt(t["measured"], 0 if t["unit"] in ("rows/s", "MiB") else 3),
                    f"{t['op']} {fmt(t['threshold'], 0 if t['threshold'] >= 10 else 3)}",
                    "n/a" if t["met"] is None else ("met" if t["met"] else "MISSED"),
                ]
                for t in results["targets"]
            ],
        )
    )
    for item in results["skipped"]:
        estimate = f" (estimate {item['estimate_s']:.0f} s)" if item.get("estimate_s") else ""
        parts.append(f"skipped: {item['what']}: {item['reason']}{estimate}")
    for item in results["errors"]:
        parts.append(f"error: {item['what']}: {item['error'][:300]}")
    return "\n".join(parts)


PHASE_KEYS = (
    "start_up_until_first_log_s",
    "modes_benchmark_data_size_s",
    "constraint_sweep_s",
    "plots_report_checksums_s",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    parser.add_argument("--output", type=Path, default=Path("benchmark_results.json"))
    parser.add_argument("--sizes", type=int, nargs="+", help="row counts instead of the plan's")
    parser.add_argument("--max-run-seconds", type=float, help="skip longer single runs")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic inputs")
    default_table = os.environ.get("NBA_PIPELINE_REAL_DATA") or str(
        ROOT.parent / "shared" / "data" / "nba2k-full.csv"
    )
    parser.add_argument("--real-table", default=default_table, help="for the full runs")
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        choices=[
            "read_ceiling",
            "batch",
            "streaming",
            "naive",
            "overheads",
            "edge_memory",
            "full_runs",
            "profiles",
        ],
    )
    parser.add_argument("--keep-inputs", action="store_true", help="keep the temp folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    suite = Suite(args)
    log(f"working in {suite.workdir}")
    try:
        results = suite.run()
    except KeyboardInterrupt:
        results = suite.results
        results["errors"].append({"what": "run", "error": "interrupted"})
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(render(results))
    print(f"\nall figures: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
