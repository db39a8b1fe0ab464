"""Every measured run in a fresh worker process, with its limits enforced from outside.

Workers are forked from a fork server that has imported the pipeline's modes and nothing
else (no plotting, no statistics), so a worker starts in milliseconds with the same lean
baseline every time, and nothing one measurement imports, caches or allocates can leak
into the next.

The parent enforces the CPU cap on the worker by duty-cycling it with SIGSTOP / SIGCONT at a
short period (the worker runs ``cap * period``, then is stopped for the rest), and pins it
to ``n_jobs`` cores.  The worker reports the operating system's own accounting of itself
(``getrusage``: user and system CPU seconds, peak RSS) and its RSS right after start-up,
before any work (the baseline).  A worker that dies or raises becomes a failed result with
its error; the caller decides whether that ends the run or only one sweep setting.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import signal
import sys
import tempfile
import threading
import time
import traceback
import types
from dataclasses import dataclass, field

import psutil

from .config import PipelineConfig
from .errors import PipelineError
from .ingestion import InputSource

logger = logging.getLogger(__name__)

TICK_S = 0.01
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["nba_pipeline.worker_warmup"])


class BaselineOverBudget(Exception):
    """The worker's memory right after start-up is already above the budget."""


@dataclass
class WorkerOutcome:
    """What a worker returned and what the operating system measured of it."""

    result: object | None
    error: str | None
    wall_s: float
    user_s: float | None = None
    system_s: float | None = None
    peak_rss_mb: float | None = None
    baseline_rss_mb: float | None = None
    allowed_cores: int = 1
    cpu_mechanism: str = "none (cap 1.0)"
    exit_code: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def measured_cpu_utilization(self) -> float | None:
        """CPU seconds over wall seconds, per allowed core."""
        if self.user_s is None or self.wall_s <= 0:
            return None
        return (self.user_s + self.system_s) / self.wall_s / self.allowed_cores

    def accounting(self) -> dict:
        """The parent's and the operating system's figures, for the report."""
        return {
            "isolation": "fresh worker process forked from a lean fork server",
            "wall_s": self.wall_s,
            "user_s": self.user_s,
            "system_s": self.system_s,
            "peak_rss_mb": self.peak_rss_mb,
            **self.extra,
            "baseline_rss_mb": self.baseline_rss_mb,
            "allowed_cores": self.allowed_cores,
            "cpu_mechanism": self.cpu_mechanism,
            "measured_cpu_utilization": self.measured_cpu_utilization,
            "exit_code": self.exit_code,
            "error": self.error,
        }


def run_isolated(
    mode: str, source: InputSource, config: PipelineConfig, **options
) -> WorkerOutcome:
    """Run ``mode`` ("batch" or "streaming") in a fresh worker under the config's limits."""
    cores = _allowed_cores(config.n_jobs)
    limits = _KernelLimits(config, len(cores))
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    worker = _CONTEXT.Process(
        target=_worker_main,
        args=(sender, mode, source, config, cores, options, _log_setup(), limits.group),
        daemon=True,
    )
    started = time.perf_counter()
    with _main_module_hidden():
        worker.start()
    sender.close()
    peaks = {"rss_mb": 0.0}
    message = _await_result(worker, receiver, limits.signal_cap, peaks)
    worker.join()
    oom_kills = limits.release()

    outcome = WorkerOutcome(
        result=None,
        error=None,
        wall_s=time.perf_counter() - started,
        allowed_cores=len(cores),
        cpu_mechanism=limits.cpu_mechanism,
        exit_code=worker.exitcode,
        extra=limits.accounting(),
    )
    if message is None:
        outcome.error = limits.death_message(worker.exitcode, oom_kills)
        return outcome
    outcome.result, outcome.error = message["result"], message["error"]
    _load_records(outcome.result)
    outcome.wall_s = message["wall_s"]
    outcome.user_s, outcome.system_s = message["user_s"], message["system_s"]
    outcome.baseline_rss_mb = message["baseline_mb"]
    # getrusage's peak of a forked child leaves out pages it shares with the fork server, so
    # the parent's and the worker's own RSS samples are taken into account too.
    outcome.peak_rss_mb = max(message["peak_rss_mb"], message["sampled_peak_mb"], peaks["rss_mb"])
    outcome.extra.update(
        peak_rss_getrusage_mb=message["peak_rss_mb"],
        peak_rss_parent_sampled_mb=peaks["rss_mb"],
    )
    return outcome


class _KernelLimits:
    """The control group of one worker, when the machine allows one, and what it enforces.

    With a group, the kernel holds the CPU cap (a CFS quota) and the hard memory limit; without
    one, the parent duty-cycles the worker with signals and there is no hard memory limit.
    """

    def __init__(self, config: PipelineConfig, cores: int) -> None:
        from .cgroups import create_worker_group

        self.cap = config.max_compute_units
        self.capped = self.cap < 1.0
        factor = config.memory_hard_limit_factor
        self.hard_limit_mb = None if factor is None else factor * config.max_memory_mb
        self.soft_budget_mb = config.max_memory_mb
        use_cgroup_cpu = self.capped and config.cpu_cap_mechanism != "signals"
        self.group, self.reason = create_worker_group(
            self.cap * cores if use_cgroup_cpu else None, self.hard_limit_mb
        )
        if config.cpu_cap_mechanism == "cgroup" and self.capped and self.group is None:
            raise MeasuredRunFailed(
                f"cpu_cap_mechanism is 'cgroup' but no control group could be made: {self.reason}"
            )
        self.cgroup_cpu = self.group is not None and self.group.cpu_dir is not None
        self.cores = cores

    @property
    def signal_cap(self) -> float | None:
        """The cap the parent enforces with signals, or None when the kernel does."""
        return self.cap if self.capped and not self.cgroup_cpu else None

    @property
    def cpu_mechanism(self) -> str:
        if not self.capped:
            return _mechanism(self.cap)
        if self.cgroup_cpu:
            return self.group.cpu_mechanism(self.cores)
        return _mechanism(self.cap)

    def release(self) -> int:
        """Read the group's OOM-kill count and remove it; returns the count."""
        if self.group is None:
            return 0
        kills = self.group.oom_kills()
        self.group.remove()
        return kills

    def accounting(self) -> dict:
        has_memory = self.group is not None and self.group.memory_dir is not None
        return {
            "memory_hard_limit_mb": self.group.memory_limit_mb if has_memory else None,
            "memory_hard_limit_mechanism": (
                f"cgroup v{self.group.version} memory limit" if has_memory else None
            ),
            "cgroup_unavailable_reason": self.reason,
        }

    def death_message(self, exit_code: int | None, oom_kills: int) -> str:
        if oom_kills:
            return (
                f"worker killed by the kernel: over its hard memory limit of "
                f"{self.hard_limit_mb:.0f} MB (cgroup; soft budget {self.soft_budget_mb:.0f} MB)"
            )
        return f"worker ended without a result (exit code {exit_code})"


_STARTING = threading.Lock()


def start_fork_server(wait: bool = True) -> None:
    """Start this process's fork server and wait until it has imported and warmed up the
    worker modules (a second or two), by forking one worker that does nothing.

    With ``wait=False`` the server is only launched: it warms up while this process goes on
    with other work, and the first worker forked waits for it.
    """
    try:
        if not wait:
            with _main_module_hidden():
                multiprocessing.forkserver.ensure_running()
            return
        worker = _CONTEXT.Process(target=time.sleep, args=(0,), daemon=True)
        with _main_module_hidden():
            worker.start()
        worker.join()
    except OSError as exc:
        folder = tempfile.gettempdir()
        raise PipelineError(
            f"cannot start the worker fork server ({exc}): its socket goes in the temporary "
            f"folder {folder} ({len(folder)} characters), and a Unix socket's path must stay "
            "under about 100; set TMPDIR to a shorter folder, or isolate_runs to false"
        ) from None


@contextlib.contextmanager
def _main_module_hidden():
    """Keep the parent's ``__main__`` out of sight while a worker starts.

    multiprocessing would otherwise have every worker import the parent's main script
    before it runs (the ``nba-pipeline`` script, pytest, or a Dask worker's command, which
    imports dask), so the program that started a measurement would add its imports to the
    worker's baseline memory and CPU seconds.  The worker's entry point lives in this
    package and needs nothing from ``__main__``.  The lock keeps threads that start workers
    at the same time (a Dask worker with several threads) from restoring each other's
    stand-in.
    """
    with _STARTING:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is None:
                del sys.modules["__main__"]
            else:
                sys.modules["__main__"] = main


def _mechanism(cap: float) -> str:
    if cap >= 1.0:
        return "none (cap 1.0)"
    return (
        f"SIGSTOP/SIGCONT of the worker by the parent, keeping its CPU time at the cap "
        f"of its wall time (checked every {TICK_S * 1000:.0f} ms)"
    )


def _allowed_cores(n_jobs: int) -> list[int]:
    available = sorted(os.sched_getaffinity(0))
    return available[: max(1, min(n_jobs, len(available)))]


def _await_result(worker, receiver, cap: float | None, peaks: dict) -> dict | None:
    """Wait for the worker's message, enforcing the cap and sampling its RSS meanwhile.

    The cap is enforced by feedback on the operating system's count of the worker's CPU
    time: whenever the worker has used more than ``cap`` of the wall time since it started,
    it is stopped until it is back under; otherwise it runs.
    """
    process = _ProcessMeter(worker.pid)
    started = time.perf_counter()
    stopped = False
    try:
        return _wait_loop(worker, receiver, cap, peaks, process, started, stopped)
    finally:
        process.close()


def _wait_loop(worker, receiver, cap, peaks, process, started, stopped) -> dict | None:
    while True:
        if receiver.poll(TICK_S):
            _signal(worker, signal.SIGCONT)
            try:
                return receiver.recv()
            except EOFError:
                return None
        if not worker.is_alive():
            return receiver.recv() if receiver.poll(0) else None
        try:
            peaks["rss_mb"] = max(peaks["rss_mb"], process.rss_mb())
            if cap is None:
                continue
            cpu_s = process.cpu_seconds()
        except (OSError, psutil.NoSuchProcess):
            continue
        over = cpu_s > cap * (time.perf_counter() - started)
        if over != stopped:
            _signal(worker, signal.SIGSTOP if over else signal.SIGCONT)
            stopped = over


class _ProcessMeter:
    """The worker's CPU seconds and RSS, read cheaply from ``/proc`` (psutil elsewhere).

    The parent reads them every few milliseconds, so the reads must cost microseconds:
    two ``pread`` calls on descriptors kept open, instead of psutil's per-call overhead.
    """

    def __init__(self, pid: int) -> None:
        try:
            self._stat = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
            self._statm = os.open(f"/proc/{pid}/statm", os.O_RDONLY)
            self._psutil = None
        except OSError:
            self._stat = self._statm = None
            self._psutil = psutil.Process(pid)

    def cpu_seconds(self) -> float:
        if self._psutil is not None:
            times = self._psutil.cpu_times()
            return times.user + times.system
        fields = os.pread(self._stat, 1024, 0).rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def rss_mb(self) -> float:
        if self._psutil is not None:
            return self._psutil.memory_info().rss / MB
        return int(os.pread(self._statm, 128, 0).split()[1]) * _PAGE_SIZE / MB

    def close(self) -> None:
        for descriptor in (self._stat, self._statm):
            if descriptor is not None:
                os.close(descriptor)


def _signal(worker, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the worker may have just exited
        os.kill(worker.pid, number)


def _log_setup() -> tuple[int, str | None, str | None]:
    """The parent's log level and format, for the worker to log the same way.

    Only plain values cross to the worker: a formatter object may hold things that cannot
    be pickled (a test runner's terminal writer, for one).
    """
    root = logging.getLogger()
    formatter = root.handlers[0].formatter if root.handlers else None
    if formatter is None:
        return root.level, None, None
    if type(formatter).__name__ == "JsonLogFormatter":
        return root.level, "json", None
    return root.level, "text", getattr(formatter, "_fmt", None)


def _configure_worker_logging(level: int, kind: str | None, text_format: str | None) -> None:
    handler = logging.StreamHandler()
    if kind == "json":
        from .terminal import JsonLogFormatter

        handler.setFormatter(JsonLogFormatter())
    elif kind == "text":
        handler.setFormatter(logging.Formatter(text_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _worker_main(sender, mode, source, config, cores, options, log_setup, group=None) -> None:
    """Entry point inside the worker: join its control group, pin, measure the baseline,
    run, report."""
    if group is not None:
        group.join()
    # Wall time and CPU time are both counted from here: the CPU the child spent between the
    # fork and this line (multiprocessing's start-up, unpickling the arguments) is left out
    # of both, so that utilisation compares the same interval.
    started = time.perf_counter()
    usage_at_start = resource.getrusage(resource.RUSAGE_SELF)
    from .worker_entry import rss_mb, run_mode

    _configure_worker_logging(*log_setup)
    os.sched_setaffinity(0, cores)
    baseline = rss_mb()
    message = {"result": None, "error": None, "baseline_mb": baseline}
    try:
        if baseline > config.max_memory_mb:
            raise BaselineOverBudget(
                f"memory budget {config.max_memory_mb:.0f} MB is below the worker's baseline "
                f"RSS after start-up, {baseline:.0f} MB"
            )
        message["result"] = run_mode(mode, source, config, len(cores), options)
    except Exception as exc:  # reported to the parent, which decides what fails
        message["error"] = f"{type(exc).__name__}: {exc}"
        logger.debug("worker failed:\n%s", traceback.format_exc())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    message.update(
        user_s=usage.ru_utime - usage_at_start.ru_utime,
        system_s=usage.ru_stime - usage_at_start.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,
        sampled_peak_mb=max(baseline, rss_mb()),
        wall_s=time.perf_counter() - started,
    )
    sender.send(message)
    sender.close()


class MeasuredRunFailed(Exception):
    """A measured run could not complete; the message says why."""


def measure(mode: str, source: InputSource, config: PipelineConfig, **options):
    """Run ``mode`` as a measurement and return ``(result, accounting)``.

    With ``config.isolate_runs`` the run happens in a fresh worker (see :func:`run_isolated`);
    otherwise in this process, which is faster to debug but lets runs share memory and
    imports.  Raises :class:`MeasuredRunFailed` when the run fails.
    """
    if not config.isolate_runs:
        from .worker_entry import run_mode

        started = time.perf_counter()
        result = run_mode(
            mode,
            source,
            config,
            len(_allowed_cores(config.n_jobs)),
            options,
            compute_enforced_outside=False,
        )
        _load_records(result)
        return result, {"isolation": "in-process", "wall_s": time.perf_counter() - started}
    outcome = run_isolated(mode, source, config, **options)
    if not outcome.ok:
        raise MeasuredRunFailed(outcome.error)
    accounting = outcome.accounting()
    _attach(outcome.result.section, accounting)
    return outcome.result, accounting


def _load_records(result) -> None:
    # Streaming leaves its chunk records on disk; they are read here, outside the worker.
    if hasattr(result, "load_chunk_records"):
        result.load_chunk_records()


def _attach(section: dict, accounting: dict) -> None:
    """The worker's own figures are joined by the operating system's."""
    section["worker"] = accounting
    # The worker cannot tell whether its parent duty-cycles it or the kernel caps its group;
    # the parent, which applied the cap, names the mechanism.
    section["compute"]["mechanism"] = accounting["cpu_mechanism"]
    section["compute"]["measured_cpu_utilization"] = accounting["measured_cpu_utilization"]
    section["compute"]["measurement"] = "getrusage CPU seconds / worker wall seconds per core"
    section["memory"]["peak_rss_mb"] = accounting["peak_rss_mb"]
    section["memory"]["baseline_rss_mb"] = accounting["baseline_rss_mb"]
