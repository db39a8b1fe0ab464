"""Kernel control groups for one worker: a CPU quota and a hard memory limit.

When this process may create control groups (as root, on a writable cgroup v1 ``cpu`` or
``memory`` hierarchy, or on cgroup v2 with those controllers enabled), every measured worker
gets a group of its own, created inside the group this process already belongs to, so any
limit the machine already puts on us still applies on top.  The kernel then enforces the CPU
cap (CFS bandwidth control: ``quota`` microseconds of CPU time per ``period`` on all the
worker's cores together) and a hard memory limit behind the pipeline's own soft budget: a
worker that goes over the hard limit is killed by the kernel, and the group's counters say so.

Where groups cannot be created, :func:`create_worker_group` returns ``None`` with the reason,
and the caller falls back to duty-cycling the worker with signals.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .resources import pid_alive

logger = logging.getLogger(__name__)

#: The CFS period of the CPU quota: short, so the worker never runs or waits long in a row.
PERIOD_US = 20_000
#: The kernel refuses quotas below one millisecond.
MIN_QUOTA_US = 1_000
MB = 1024 * 1024
_NAMES = itertools.count()


@dataclass
class WorkerGroup:
    """The control group(s) one worker joins; :meth:`join` runs inside the worker."""

    version: int
    cpu_dir: Path | None = None
    memory_dir: Path | None = None
    quota_us: int | None = None
    memory_limit_mb: float | None = None
    directories: list[Path] = field(default_factory=list)

    def join(self, pid: int | None = None) -> None:
        """Move ``pid`` (this process by default) into every directory of the group."""
        text = str(pid or os.getpid())
        for directory in self.directories:
            (directory / "cgroup.procs").write_text(text)

    def cpu_mechanism(self, cores: int) -> str:
        period_ms = PERIOD_US / 1000
        setting = "cpu.max" if self.version == 2 else "cpu.cfs_quota_us"
        return (
            f"cgroup v{self.version} {setting}: {self.quota_us} us of CPU time per "
            f"{period_ms:g} ms period over {cores} core(s), enforced by the kernel"
        )

    def oom_kills(self) -> int:
        """How many times the kernel killed a process of the group for its memory limit."""
        if self.memory_dir is None:
            return 0
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError):
            for line in (self.memory_dir / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self, wait_s: float = 2.0) -> None:
        """Delete the group's directories.

        The kernel refuses while a process is still inside: a worker forked by the fork
        server may not have been reaped yet when its result arrives, so this retries for up
        to ``wait_s`` seconds.
        """
        deadline = time.monotonic() + wait_s
        for directory in self.directories:
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as error:
                    if time.monotonic() > deadline:
                        logger.warning("could not remove control group %s: %s", directory, error)
                        break
                    time.sleep(0.005)


def create_worker_group(
    cpu_cores: float | None, memory_limit_mb: float | None
) -> tuple[WorkerGroup | None, str | None]:
    """A new group with a CPU quota of ``cpu_cores`` cores and a memory limit, if possible.

    Returns the group, or ``None`` and the reason no group could be made.  ``None`` for a
    limit leaves that controller alone.
    """
    if cpu_cores is None and memory_limit_mb is None:
        return None, "no limit asked for"
    if os.geteuid() != 0:
        return None, "control groups need root"
    mounts = _cgroup_mounts()
    if not mounts["v1"] and not mounts["v2"]:
        return None, "no writable cgroup file system is mounted"
    group = WorkerGroup(version=1 if mounts["v1"] else 2)
    try:
        if group.version == 1:
            _create_v1(group, mounts["v1"], cpu_cores, memory_limit_mb)
        else:
            _create_v2(group, mounts["v2"], cpu_cores, memory_limit_mb)
    except (OSError, _Unavailable) as error:
        group.remove()
        return None, str(error)
    return group, None


class _Unavailable(Exception):
    """A controller the limit needs is not there or not writable."""


def _create_v1(group: WorkerGroup, mounts: dict[str, Path], cpu_cores, memory_limit_mb) -> None:
    name = _unique_name()
    if cpu_cores is not None:
        group.cpu_dir = _make_dir(mounts, "cpu", name, group)
        group.quota_us = _quota_us(cpu_cores)
        (group.cpu_dir / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group.cpu_dir / "cpu.cfs_quota_us").write_text(str(group.quota_us))
    if memory_limit_mb is not None:
        group.memory_dir = _make_dir(mounts, "memory", name, group)
        limit = str(int(memory_limit_mb * MB))
        (group.memory_dir / "memory.limit_in_bytes").write_text(limit)
        # Pages the worker charged before it joined move with it (anonymous and file).
        with contextlib.suppress(OSError):
            (group.memory_dir / "memory.move_charge_at_immigrate").write_text("3")
        group.memory_limit_mb = memory_limit_mb


def _create_v2(group: WorkerGroup, root: Path, cpu_cores, memory_limit_mb) -> None:
    parent = root / _own_path("")
    enabled = (parent / "cgroup.subtree_control").read_text().split()
    needed = (["cpu"] if cpu_cores is not None else []) + (
        ["memory"] if memory_limit_mb is not None else []
    )
    missing = [name for name in needed if name not in enabled]
    if missing:
        raise _Unavailable(f"cgroup v2 controllers not enabled for children: {missing}")
    _remove_orphans(parent)
    directory = parent / _unique_name()
    directory.mkdir()
    group.directories.append(directory)
    if cpu_cores is not None:
        group.cpu_dir, group.quota_us = directory, _quota_us(cpu_cores)
        (directory / "cpu.max").write_text(f"{group.quota_us} {PERIOD_US}")
    if memory_limit_mb is not None:
        group.memory_dir, group.memory_limit_mb = directory, memory_limit_mb
        (directory / "memory.max").write_text(str(int(memory_limit_mb * MB)))


def _make_dir(mounts: dict[str, Path], controller: str, name: str, group: WorkerGroup) -> Path:
    mount = mounts.get(controller)
    if mount is None:
        raise _Unavailable(f"no cgroup v1 hierarchy with the {controller} controller")
    parent = mount / _own_path(controller)
    _remove_orphans(parent)
    directory = parent / name
    directory.mkdir()
    group.directories.append(directory)
    return directory


def _remove_orphans(parent: Path) -> None:
    """Remove empty groups left by a pipeline process that was killed before it cleaned up."""
    for directory in parent.glob("nba-pipeline-*-*"):
        owner = directory.name.split("-")[2]
        if owner.isdigit() and not pid_alive(int(owner)):
            with contextlib.suppress(OSError):
                directory.rmdir()


def _quota_us(cores: float) -> int:
    return max(MIN_QUOTA_US, round(cores * PERIOD_US))


def _unique_name() -> str:
    return f"nba-pipeline-{os.getpid()}-{next(_NAMES)}"


def _cgroup_mounts() -> dict:
    """The v1 hierarchies by controller, and the v2 mount, from ``/proc/self/mounts``."""
    found: dict = {"v1": {}, "v2": None}
    with contextlib.suppress(OSError), open("/proc/self/mounts") as mounts:
        for line in mounts:
            _device, point, kind, options, *_ = line.split()
            if kind == "cgroup2":
                found["v2"] = found["v2"] or Path(point)
            elif kind == "cgroup":
                for option in options.split(","):
                    if option in ("cpu", "memory") and os.access(point, os.W_OK):
                        found["v1"][option] = Path(point)
    return found


def _own_path(controller: str) -> str:
    """This process's group in the hierarchy of ``controller`` ("" for cgroup v2)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _number, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (controller == "" and controllers == ""):
            return path.lstrip("/")
    raise _Unavailable(f"this process is in no {controller or 'v2'} control group")
