"""What the runs measure about the machine and how they apply their limits.

* Memory: the process's resident set size (RSS) read from the operating system through
  psutil, sampled at every operator boundary; :class:`MemoryWatch` keeps the peak and
  raises :class:`MemoryBudgetExceeded` when a sample is over the budget.
* Compute: :class:`DutyCycleThrottle` holds the share of wall time a run spends working to
  ``max_compute_units`` by sleeping after each unit of work for ``busy * (1 - cap) / cap``;
  the utilisation actually reached is measured from the process's CPU time.
* Energy: RAPL counters from ``/sys/class/powercap`` where the kernel exposes them, and
  ``None`` with the reason where it does not.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MB = 1024 * 1024
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_PROCESS = {"pid": None, "handle": None}
RAPL_ROOT = Path("/sys/class/powercap")


def rss_mb() -> float:
    """Current resident set size of this process, in MiB.

    Read from ``/proc/<pid>/statm`` through a descriptor kept open (a couple of
    microseconds, which keeps per-chunk telemetry cheap); psutil elsewhere.
    """
    handle = _this_process()
    if isinstance(handle, int):
        resident_pages = int(os.pread(handle, 128, 0).split()[1])
        return resident_pages * _PAGE_SIZE / MB
    return handle.memory_info().rss / MB


def _this_process() -> int | psutil.Process:
    # A handle opened before a fork would still describe the parent, so it is keyed by pid.
    pid = os.getpid()
    if _PROCESS["pid"] != pid:
        try:
            handle = os.open(f"/proc/{pid}/statm", os.O_RDONLY)
        except OSError:
            handle = psutil.Process(pid)
        _PROCESS.update(pid=pid, handle=handle)
    return _PROCESS["handle"]


#: glibc's mallopt parameter for the size from which blocks get a mapping of their own.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def return_freed_blocks_promptly() -> bool:
    """Fix glibc's mmap threshold so that large freed blocks go back to the kernel at once.

    glibc raises the threshold every time a large block is freed; after that, blocks of that
    size come from the heap, where a long run of chunks leaves free space scattered that is
    never returned, so RSS creeps up with the number of chunks although nothing in it is
    alive (about 30 MB over a million rows of streaming).  With a fixed threshold every
    large block has its own mapping and is unmapped when freed.  Returns False where the C
    library has no ``mallopt`` (not glibc).
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def system_memory_percent() -> float:
    """Share of the machine's memory in use, in percent (psutil)."""
    return psutil.virtual_memory().percent


class MemoryBudgetExceeded(Exception):
    """A sample of RSS was above the budget while a chunk was being processed."""

    def __init__(self, operator: str, rss: float, budget: float) -> None:
        super().__init__(f"RSS {rss:.1f} MiB over budget {budget:.1f} MiB after {operator}")
        self.operator = operator
        self.rss_mb = rss


@dataclass
class MemoryWatch:
    """Samples RSS at checkpoints, keeps the peaks, and enforces the budget when armed."""

    budget_mb: float
    armed: bool = True
    enabled: bool = True
    peak_mb: float = field(default_factory=rss_mb)
    chunk_peak_mb: float = 0.0
    exceeded: bool = False
    samples: int = 0

    def start_chunk(self, armed: bool) -> None:
        """Reset the per-chunk peak and flag; ``armed`` decides whether a breach raises."""
        self.armed = armed
        self.exceeded = False
        self.chunk_peak_mb = self.sample()

    def sample(self) -> float:
        """Read RSS now (NaN when telemetry is off, which also disables the budget)."""
        if not self.enabled:
            return math.nan
        current = rss_mb()
        self.samples += 1
        self.peak_mb = max(self.peak_mb, current)
        self.chunk_peak_mb = max(self.chunk_peak_mb, current)
        return current

    def checkpoint(self, operator: str) -> None:
        """Called after each operator; records a breach and raises it when armed."""
        current = self.sample()
        if current > self.budget_mb:
            self.exceeded = True
            if self.armed:
                raise MemoryBudgetExceeded(operator, current, self.budget_mb)


class DutyCycleThrottle:
    """Keeps busy time over elapsed time at the compute cap by pausing after work.

    With ``enforced_outside`` the cap is applied from outside the process (see
    :mod:`nba_pipeline.isolation`, which names the mechanism in the run's report) and this
    throttle does nothing.
    """

    def __init__(self, cap: float, enforced_outside: bool = False) -> None:
        self.cap = cap
        self.enforced_outside = enforced_outside
        self.paused_s = 0.0

    @property
    def mechanism(self) -> str:
        if self.cap >= 1.0:
            return "none (cap 1.0)"
        if self.enforced_outside:
            return "applied outside the worker process by its parent"
        return "duty-cycle sleep after each unit of work in the run loop"

    def pause_after(self, busy_s: float) -> float:
        """Sleep long enough that ``busy_s`` is ``cap`` of the elapsed time; returns the pause."""
        if self.cap >= 1.0 or busy_s <= 0 or self.enforced_outside:
            return 0.0
        pause = busy_s * (1.0 - self.cap) / self.cap
        time.sleep(pause)
        self.paused_s += pause
        return pause


class CpuClock:
    """CPU seconds and wall seconds since construction, for measured utilisation."""

    def __init__(self) -> None:
        self._cpu = _cpu_seconds()
        self._wall = time.perf_counter()

    def utilization(self) -> dict:
        cpu = _cpu_seconds() - self._cpu
        wall = time.perf_counter() - self._wall
        return {
            "cpu_s": cpu,
            "wall_s": wall,
            "measured_cpu_utilization": cpu / wall if wall > 0 else None,
        }


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class EnergyMeter:
    """Package energy from Intel RAPL counters, or ``None`` with the reason."""

    def __init__(self) -> None:
        self.zones = sorted(RAPL_ROOT.glob("intel-rapl:*/energy_uj")) if RAPL_ROOT.exists() else []
        self.zones = [zone for zone in self.zones if zone.parent.name.count(":") == 1]
        self.reason = None
        self._start = self._read()

    def _read(self) -> list[int] | None:
        if not self.zones:
            self.reason = f"no RAPL energy counters under {RAPL_ROOT}"
            return None
        try:
            return [int(zone.read_text()) for zone in self.zones]
        except OSError as exc:
            self.reason = f"RAPL counters not readable: {exc.strerror}"
            return None

    def report(self) -> dict:
        end = self._read()
        if self._start is None or end is None:
            return {"energy_j": None, "source": None, "reason": self.reason}
        joules = 0.0
        for zone, before, after in zip(self.zones, self._start, end, strict=True):
            if after < before:
                after += int((zone.parent / "max_energy_range_uj").read_text())
            joules += (after - before) / 1e6
        return {"energy_j": joules, "source": "intel-rapl package counters", "reason": None}
