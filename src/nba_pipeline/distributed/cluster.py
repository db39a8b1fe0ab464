"""Where measured runs execute: one after another here, or as tasks on a Dask cluster.

An executor takes a list of measured runs (mode, input, configuration) and returns their
outcomes in the order given, whichever worker finished first.  Each run still happens in
its own isolated, limit-enforced process (:func:`nba_pipeline.isolation.measure`), started
on the machine that takes the task; the executor only decides which machine that is.

- ``sequential``: in this process, one run at a time; dask is never imported.
- ``dask-local``: a local cluster of ``n_jobs`` single-threaded worker processes on
  127.0.0.1, each pinned to its own share of this machine's cores.
- ``dask``: the scheduler named by ``--scheduler``; the input path must be readable by
  every worker under the same name (same machine or a shared file system).

Every task records the worker that ran it, its host and its start and end times, so the
report can say how many runs overlapped on each machine (:func:`max_concurrency`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

from ..config import PipelineConfig
from ..errors import ConfigError, PipelineError
from ..ingestion import InputSource
from .tasks import prepare_worker, run_measured

logger = logging.getLogger(__name__)

#: How often Dask re-runs a task that raised (a worker that dies is handled by the
#: scheduler itself, which hands the task to another worker).
TASK_RETRIES = 2
CONNECT_TIMEOUT_S = 30

Run = tuple[str, InputSource, PipelineConfig]


def redact_address(address: str | None) -> str | None:
    """The scheduler address without credentials, query or fragment.

    >>> redact_address("tls://user:secret@scheduler.example:8786")
    'tls://scheduler.example:8786'
    >>> redact_address("alice@10.0.0.5:8786")
    '10.0.0.5:8786'
    """
    if address is None:
        return None
    if "://" not in address:
        return address.rsplit("@", 1)[-1].split("?", 1)[0].split("#", 1)[0]
    parts = urlsplit(address)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def max_concurrency(tasks: list[dict]) -> dict[str, int]:
    """Per host, the largest number of tasks whose [started, finished] intervals overlap.

    Times are each host's own clock, so intervals are only compared within a host.  A task
    that ends exactly when another starts does not overlap it.
    """
    events: dict[str, list[tuple[float, int]]] = {}
    for task in tasks:
        if task.get("started") is None or task.get("finished") is None:
            continue
        host_events = events.setdefault(task["host"], [])
        host_events += [(task["started"], 1), (task["finished"], -1)]
    peaks = {}
    for host, host_events in events.items():
        running = peak = 0
        for _, step in sorted(host_events):  # -1 sorts before +1 at the same instant
            running += step
            peak = max(peak, running)
        peaks[host] = peak
    return dict(sorted(peaks.items()))


class SequentialExecutor:
    """Measured runs one after another in this process's own worker processes."""

    engine = "sequential"

    def __init__(self) -> None:
        self.tasks: list[dict] = []

    def describe(self) -> dict:
        return {
            "engine": self.engine,
            "scheduler": None,
            "workers": 1,
            "threads": 1,
            "worker_addresses": [],
        }

    def run_all(self, stage: str, runs: list[Run], tick: Callable[[], None]) -> list[dict]:
        outcomes = []
        for mode, source, config in runs:
            outcomes.append(run_measured(mode, source, config))
            tick()
        self._record(stage, runs, outcomes)
        return outcomes

    def _record(self, stage: str, runs: list[Run], outcomes: list[dict]) -> None:
        for index, ((mode, _, _), outcome) in enumerate(zip(runs, outcomes, strict=True)):
            ran_on = outcome.get("ran_on") or {}
            self.tasks.append(
                {
                    "stage": stage,
                    "index": index,
                    "mode": mode,
                    "worker": ran_on.get("address"),
                    "host": ran_on.get("host"),
                    "started": outcome.get("started"),
                    "finished": outcome.get("finished"),
                    "error": outcome.get("error"),
                }
            )


class DaskExecutor(SequentialExecutor):
    """Measured runs as tasks on a Dask cluster, gathered back in submission order."""

    def __init__(self, client, engine: str, scheduler: str | None, core_slots=None) -> None:
        super().__init__()
        self.client = client
        self.engine = engine
        self.scheduler = scheduler
        self.core_slots = core_slots
        # Workers that join later warm up on their first task instead.
        client.run(prepare_worker)

    def describe(self) -> dict:
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        return {
            "engine": self.engine,
            "scheduler": redact_address(self.scheduler),
            "workers": len(workers),
            "threads": sum(info.get("nthreads", 0) for info in workers.values()),
            "worker_addresses": sorted(workers),
        }

    def run_all(self, stage: str, runs: list[Run], tick: Callable[[], None]) -> list[dict]:
        from distributed import as_completed

        futures = [
            self.client.submit(
                run_measured,
                mode,
                source,
                config,
                core_slots=self.core_slots,
                key=f"{stage}-{index}-{mode}-{uuid.uuid4().hex}",
                pure=False,
                retries=TASK_RETRIES,
            )
            for index, (mode, source, config) in enumerate(runs)
        ]
        for _ in as_completed(futures, loop=self.client.loop, raise_errors=False):
            tick()
        outcomes = [_gathered(future) for future in futures]
        self._record(stage, runs, outcomes)
        return outcomes


def _gathered(future) -> dict:
    """A task's outcome, or a failed one naming the error when the task itself was lost."""
    try:
        return future.result()
    except Exception as exc:  # KilledWorker, a worker that could not run the task, ...
        logger.warning("task %s failed on the cluster: %s", future.key, exc)
        return {"error": f"{type(exc).__name__}: {exc}", "ran_on": None}


@contextlib.contextmanager
def open_executor(config: PipelineConfig) -> Iterator[SequentialExecutor]:
    """The executor the configuration asks for, closed (cluster and client) on exit."""
    if config.scheduler is None and config.n_jobs == 1:
        yield SequentialExecutor()
        return

    from distributed import Client

    if config.scheduler is not None:
        with _connected(config.scheduler) as client:
            yield DaskExecutor(client, "dask", config.scheduler)
        return

    with _local_cluster(config.n_jobs) as cluster, Client(cluster, set_as_default=False) as client:
        logger.info("local Dask cluster of %d worker processes", config.n_jobs)
        yield DaskExecutor(client, "dask-local", None, core_slots=core_slots(config.n_jobs))


@contextlib.contextmanager
def _connected(address: str):
    """A client of the scheduler at ``address`` with at least one worker, or a
    :class:`PipelineError` that names the address without its credentials."""
    from distributed import Client
    from distributed.comm.addressing import parse_address, parse_host_port

    shown = redact_address(address)
    try:
        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls") and "@" in location:
            raise ConfigError(
                f"scheduler {shown!r} was given with a user or password, which Dask's "
                f"{scheme} addresses cannot carry; give {scheme}://host:port (TLS "
                "certificates go in Dask's own configuration)"
            )
        if scheme in ("tcp", "tls"):
            parse_host_port(location)
    except ValueError as exc:
        raise ConfigError(
            f"scheduler {shown!r} is not an address Dask can connect to "
            f"({_without_credentials(str(exc), address)})"
        ) from None

    logger.info("connecting to the Dask scheduler at %s", shown)
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        reason = _without_credentials(str(exc), address)
        raise PipelineError(
            f"cannot reach the Dask scheduler at {shown} within {CONNECT_TIMEOUT_S} s "
            f"({type(exc).__name__}: {reason}); start it (dask scheduler) or fix --scheduler"
        ) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise PipelineError(
                f"the Dask scheduler at {shown} has no worker after {CONNECT_TIMEOUT_S} s; "
                f"start one (dask worker {shown})"
            ) from None
        yield client


def _without_credentials(text: str, address: str) -> str:
    """``text`` with the address's user and password taken out wherever they appear."""
    netloc = address.split("://", 1)[-1].split("/", 1)[0]
    if "@" in netloc:
        text = text.replace(netloc.rsplit("@", 1)[0] + "@", "")
    return text


@contextlib.contextmanager
def _local_cluster(n_workers: int):
    import dask
    from distributed import LocalCluster

    # Worker processes must be allowed children: each measured run is one.
    with dask.config.set({"distributed.worker.daemon": False}):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # No dashboard; the scheduler's small HTTP server (health checks) still starts,
            # on a free port of 127.0.0.1 instead of 8787, which another cluster may hold.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            memory_limit=0,  # each measured run enforces its own budget
            silence_logs=logging.WARNING,  # the cluster's start and stop are not news
        )
    try:
        yield cluster
    finally:
        cluster.close()


def core_slots(n_workers: int) -> list[list[int]]:
    """This machine's allowed cores split into ``n_workers`` disjoint shares (one each at
    least; shares repeat when there are more workers than cores)."""
    available = sorted(os.sched_getaffinity(0))
    per_worker = max(1, len(available) // n_workers)
    return [available[(i * per_worker) % len(available) :][:per_worker] for i in range(n_workers)]
