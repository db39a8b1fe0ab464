"""The function a Dask worker runs for one measured run, and who it is.

Dask imports nothing from here on the plain path: :func:`run_measured` is called directly
by the sequential executor too, so every engine produces the same outcome record.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import sys
import time

from ..config import PipelineConfig
from ..ingestion import InputSource
from ..isolation import MeasuredRunFailed, measure, start_fork_server


def run_measured(
    mode: str,
    source: InputSource,
    config: PipelineConfig,
    core_slots: list[list[int]] | None = None,
) -> dict:
    """Run ``mode`` as one isolated measurement on this machine; return a plain record.

    The record holds the run's report section and the operating system's accounting, or
    the error that stopped it (a run that fails is a result, not a task failure, so Dask
    does not retry a setting that can never run), plus which worker and host ran it and
    when (wall-clock seconds of that host) it started and finished.
    """
    ran_on = worker_identity()
    _allow_children()
    started = time.time()
    with _pinned(core_slots, ran_on["name"]):
        try:
            result, accounting = measure(mode, source, config)
        except MeasuredRunFailed as failure:
            section, accounting, error = None, None, str(failure)
        else:
            section, error = result.section, None
    return {
        "section": section,
        "accounting": accounting,
        "error": error,
        "ran_on": ran_on,
        "started": started,
        "finished": time.time(),
    }


def prepare_worker() -> int:
    """Ready a Dask worker process for measured runs before the first task arrives: allow
    it children and start its fork server (which imports and warms up the pipeline once,
    a few seconds), so the first task's start and end times are those of its run."""
    _allow_children()
    start_fork_server()
    return os.getpid()


def worker_identity() -> dict:
    """Which Dask worker (address, name) and host this code runs on; ``local`` outside Dask."""
    identity = {"address": "local", "name": None, "host": socket.gethostname(), "pid": os.getpid()}
    # Only a process that already runs Dask asks it: the plain path must not import it.
    if "distributed" in sys.modules:
        from distributed import get_worker

        try:
            worker = get_worker()
        except ValueError:
            return identity
        identity.update(address=worker.address, name=worker.name)
    return identity


def _allow_children() -> None:
    """Let a Dask worker process start the measured run's process.

    Dask starts its worker processes as daemons by default, and a daemonic process may not
    start children.  The measured runs are forked by this process's fork server and ended
    with it, so the flag is cleared for this worker process (the same as running the worker
    with ``DASK_DISTRIBUTED__WORKER__DAEMON=False``).  ``_config`` is multiprocessing's own
    record of the flag; there is no public setter for the current process.
    """
    process = multiprocessing.current_process()
    if process.daemon:
        process._config["daemon"] = False


@contextlib.contextmanager
def _pinned(core_slots: list[list[int]] | None, worker_name):
    """On a local cluster, confine this task's thread (and so the measured run it starts,
    whose cores are chosen from this thread's affinity) to the worker's own share of cores."""
    if not core_slots or not isinstance(worker_name, int):
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, core_slots[worker_name % len(core_slots)])
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)
