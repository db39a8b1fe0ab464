"""Benchmark repetitions and sweep settings on a Dask cluster (``--scheduler``, ``n_jobs > 1``).

A real ``dask scheduler`` and two ``dask worker`` processes run on 127.0.0.1 for the module;
a sweep through them must produce, in grid order, the same deterministic results as a run on
this machine alone, with every setting's worker recorded, its limits still enforced, and no
setting lost when a worker is killed in the middle of the sweep.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nba_pipeline.config import PipelineConfig
from nba_pipeline.distributed.cluster import (
    core_slots,
    max_concurrency,
    open_executor,
    redact_address,
)
from nba_pipeline.errors import ConfigError
from nba_pipeline.inspection import compare_runs
from nba_pipeline.report_fields import deterministic_view
from nba_pipeline.reproducibility import reproducibility_section
from nba_pipeline.runner import PipelineRunner
from nba_pipeline.synth import sample_dataset_path

distributed = pytest.importorskip("distributed")

BIN = Path(sys.executable).parent
DASK = [str(BIN / "dask")] if (BIN / "dask").is_file() else [sys.executable, "-m", "dask"]
_SCRIPT = BIN / "nba-pipeline"
NBA_PIPELINE = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "nba_pipeline.cli"]
SAMPLE_ROWS = 400
START_TIMEOUT_S = 120
RUN_TIMEOUT_S = 300

# Two repetitions and a 2 x 1 x 2 sweep on the packaged sample (as in test_cli).
SMALL = {
    "benchmark_runs": 2,
    "max_compute_units": 1.0,
    "sweep_chunk_sizes": [64, 128],
    "sweep_memory_limits_mb": [4096],
    "sweep_compute_limits": [0.5, 1.0],
    "data_size_fractions": [0.5, 1.0],
}


# --------------------------------------------------------------------------------------
# Address redaction, overlap counting, configuration
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "redacted"),
    [
        ("tls://user:pw@host:8786", "tls://host:8786"),
        ("tcp://alice@10.0.0.5:8786", "tcp://10.0.0.5:8786"),
        ("tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"),
        ("tls://u:p%40ss@sched.example.org:8786?token=abc#x", "tls://sched.example.org:8786"),
        ("user:pw@host:8786", "host:8786"),
        ("host:8786", "host:8786"),
        (None, None),
    ],
)
def test_scheduler_address_is_redacted(address, redacted):
    assert redact_address(address) == redacted


def test_overlap_is_counted_per_host_from_start_and_end_times():
    tasks = [
        {"host": "a", "started": 0.0, "finished": 2.0},
        {"host": "a", "started": 1.0, "finished": 3.0},
        {"host": "a", "started": 2.0, "finished": 4.0},  # starts as the first ends
        {"host": "b", "started": 1.0, "finished": 3.0},
        {"host": "c", "started": None, "finished": None},  # lost: no times
    ]
    assert max_concurrency(tasks) == {"a": 2, "b": 1}


def test_core_slots_are_disjoint_shares():
    available = sorted(os.sched_getaffinity(0))
    slots = core_slots(len(available))
    assert [len(slot) for slot in slots] == [1] * len(available)
    assert sorted(core for slot in slots for core in slot) == available
    assert all(slot for slot in core_slots(len(available) + 3))


def test_scheduler_key_is_validated_without_echoing_credentials():
    assert PipelineConfig().scheduler is None
    assert PipelineConfig(scheduler=" tcp://10.0.0.5:8786 ").scheduler == "tcp://10.0.0.5:8786"
    assert PipelineConfig.from_dict({"scheduler": None}).scheduler is None
    with pytest.raises(ConfigError, match=r"scheduler must be a Dask scheduler address.*got 5"):
        PipelineConfig(scheduler=5)
    with pytest.raises(ConfigError, match="scheduler must be") as raised:
        PipelineConfig(scheduler="tcp://user:secret@host:8786/with/path")
    assert "secret" not in str(raised.value)


def test_an_address_with_credentials_stops_before_connecting():
    config = PipelineConfig(scheduler="tls://alice:secret@127.0.0.1:1")
    expected = r"'tls://127\.0\.0\.1:1' was given with a user"
    with pytest.raises(ConfigError, match=expected) as raised, open_executor(config):
        pass
    assert "secret" not in str(raised.value)


def test_the_manifest_leaves_the_scheduler_out():
    config = PipelineConfig(scheduler="tls://user:secret@host:8786")
    assert "scheduler" not in reproducibility_section(config)["config"]
    assert config.to_dict()["scheduler"] == "tls://user:secret@host:8786"


def test_the_plain_path_never_imports_dask(tmp_path):
    code = (
        "import sys\n"
        "from nba_pipeline import PipelineConfig, PipelineRunner\n"
        f"config = PipelineConfig(**{SMALL!r}, output_dir={str(tmp_path / 'out')!r})\n"
        "runner = PipelineRunner(config.with_overrides(sweep_chunk_sizes=[128],"
        " sweep_compute_limits=[1.0]))\n"
        "runner.run_constraint_experiment()\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]\n"
        "assert not loaded, loaded\n"
        "print(runner.report['constraint_experiment']['settings'][0]['worker'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "local"


# --------------------------------------------------------------------------------------
# A scheduler and two workers on 127.0.0.1
# --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """A ``dask scheduler`` and its ``dask worker`` processes, each in its own process group."""

    def __init__(self, log_dir: Path, workers: int = 2) -> None:
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []
        self.logs: list = []
        port = self.address.rsplit(":", 1)[1]
        self._start(
            "scheduler",
            [*DASK, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"],
        )
        cores = sorted(os.sched_getaffinity(0))
        for index in range(workers):
            # Each worker on its own core where the machine has enough, so that the two do
            # not share one core (the measured runs take their cores from the worker's).
            pinnable = len(cores) >= workers and shutil.which("taskset")
            pin = ["taskset", "-c", str(cores[index])] if pinnable else []
            command = [
                *DASK,
                "worker",
                self.address,
                "--nworkers",
                "1",
                "--nthreads",
                "1",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
            ]
            self._start(f"worker{index}", [*pin, *command])
        try:
            with self.client() as client:
                client.wait_for_workers(workers, timeout=START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    def _start(self, name: str, command: list[str]) -> None:
        log = (self.log_dir / f"{name}.log").open("wb")
        self.logs.append(log)
        self.processes.append(
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def client(self):
        return distributed.Client(self.address, timeout=START_TIMEOUT_S, set_as_default=False)

    def close(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        for log in self.logs:
            log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        yield started
    finally:
        started.close()


def _env() -> dict[str, str]:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    env.pop("NBA_PIPELINE_REAL_DATA", None)
    return env


def _start_run(tmp: Path, name: str, *flags: str) -> subprocess.Popen:
    template = tmp / "small.json"
    template.write_text(json.dumps(SMALL), encoding="utf-8")
    return subprocess.Popen(
        [
            *NBA_PIPELINE,
            "run",
            "--config",
            str(template),
            "--output-dir",
            str(tmp / name),
            "--quiet",
            *flags,
        ],
        cwd=tmp,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr


def _report(out: Path) -> dict:
    return json.loads((out / "reports" / "pipeline_report.json").read_text(encoding="utf-8"))


def _log(out: Path) -> list[dict]:
    lines = (out / "reports" / "constraint_experiment_log.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in lines.splitlines()]


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory) -> dict[str, Path]:
    """The small run through the scheduler and the same run on this machine alone."""
    tmp = tmp_path_factory.mktemp("runs")
    started = {
        "dask": _start_run(tmp, "dask", "--scheduler", cluster.address),
        "sequential": _start_run(tmp, "sequential"),
    }
    for process in started.values():
        _finish(process)
    return {name: tmp / name for name in started}


def test_every_setting_ran_on_a_cluster_worker(runs, cluster):
    report = _report(runs["dask"])
    scaling = report["scaling"]
    assert scaling["engine"] == "dask"
    assert scaling["parallel_enabled"] is True
    assert scaling["scheduler"] == cluster.address
    assert scaling["workers"] == 2 and scaling["threads"] == 2
    workers = set(scaling["worker_addresses"])
    assert len(workers) == 2

    settings = report["constraint_experiment"]["settings"]
    grid = [(64, 0.5), (64, 1.0), (128, 0.5), (128, 1.0)]
    assert [(row["chunk_size_requested"], row["compute_limit"]) for row in settings] == grid
    assert all(row["error"] is None and row["worker"] in workers for row in settings)
    assert [entry["worker"]["ran_on"]["address"] for entry in _log(runs["dask"])] == [
        row["worker"] for row in settings
    ]

    tasks = scaling["tasks"]
    stages = [task["stage"] for task in tasks]
    assert stages.count("benchmark") == 2 * (SMALL["benchmark_runs"] + 1)
    # Two sizes; the whole input's point is the benchmark's own repetitions, not run again.
    assert stages.count("latency_vs_data_size") == 2 * SMALL["benchmark_runs"]
    assert stages.count("constraint_experiment") == len(grid)
    assert all(task["worker"] in workers and task["error"] is None for task in tasks)
    assert all(task["finished"] >= task["started"] for task in tasks)
    assert {task["worker"] for task in tasks} == workers  # both workers took tasks
    hosts = {task["host"] for task in tasks}
    assert set(scaling["max_concurrent_per_host"]) == hosts
    assert 1 <= max(scaling["max_concurrent_per_host"].values()) <= 2


def test_limits_are_still_enforced_on_the_workers(runs):
    settings = _report(runs["dask"])["constraint_experiment"]["settings"]
    for row, entry in zip(settings, _log(runs["dask"]), strict=True):
        assert row["measured_cpu_utilization"] is not None
        assert entry["worker"]["isolation"].startswith("fresh worker process")
        assert entry["compute"]["cap"] == row["compute_limit"]
        if row["compute_limit"] < 1.0:
            assert not row["compute_mechanism"].startswith("none"), row["compute_mechanism"]
        else:
            assert row["compute_mechanism"] == "none (cap 1.0)"


def test_results_match_a_run_on_this_machine(runs):
    on_cluster, here = _report(runs["dask"]), _report(runs["sequential"])
    assert here["scaling"]["engine"] == "sequential"
    assert here["scaling"]["parallel_enabled"] is False
    assert deterministic_view(on_cluster) == deterministic_view(here)
    comparison = compare_runs(runs["sequential"], runs["dask"])
    assert comparison["identical_deterministic_parts"], comparison["identity"]


def test_the_run_meets_the_artifact_contract(runs, artifact_contract, check_artifacts_tool):
    artifact_contract(runs["dask"], spill=False, dataset_rows=SAMPLE_ROWS)
    check_artifacts_tool(runs["dask"], spill=False, dataset_rows=SAMPLE_ROWS)


def test_a_local_cluster_for_n_jobs_above_one(runs, tmp_path):
    runner = PipelineRunner(PipelineConfig(**SMALL, n_jobs=2, output_dir=str(tmp_path / "out")))
    section = runner.run_constraint_experiment(sample_dataset_path())
    scaling = runner._scaling()
    assert scaling["engine"] == "dask-local"
    assert scaling["n_jobs"] == 2 and scaling["workers"] == 2 and scaling["threads"] == 2
    assert scaling["scheduler"] is None
    workers = set(scaling["worker_addresses"])
    assert all(address.startswith("tcp://127.0.0.1:") for address in workers)
    assert {row["worker"] for row in section["settings"]} <= workers
    assert len(scaling["tasks"]) == len(section["settings"])

    # Each measured run is pinned inside its worker's share of the cores.
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert {entry["worker"]["allowed_cores"] for entry in runner._sweep_log} == {share}

    sequential = deterministic_view(_report(runs["sequential"]))["constraint_experiment"]
    assert deterministic_view({"constraint_experiment": section}) == {
        "constraint_experiment": sequential
    }


# --------------------------------------------------------------------------------------
# A worker killed in the middle of the sweep
# --------------------------------------------------------------------------------------


def _processing_sweep_worker(client) -> str | None:
    """The address of a worker that is running a sweep setting right now, if any."""
    for address, keys in client.processing().items():
        if any(str(key).startswith("constraint_experiment-") for key in keys):
            return address
    return None


def test_a_worker_killed_mid_sweep_loses_no_setting(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        config = PipelineConfig(
            **{**SMALL, "sweep_compute_limits": [0.25, 1.0]},
            output_dir=str(tmp_path / "out"),
            scheduler=cluster.address,
        )
        runner = PipelineRunner(config)
        sweep = threading.Thread(
            target=runner.run_constraint_experiment, args=(sample_dataset_path(),)
        )
        with cluster.client() as client:
            sweep.start()
            deadline = time.monotonic() + START_TIMEOUT_S
            victim = None
            while victim is None and sweep.is_alive() and time.monotonic() < deadline:
                victim = _processing_sweep_worker(client)
                time.sleep(0.02)
            assert victim is not None, "no sweep setting was seen running"
            pid = client.run(os.getpid, workers=[victim])[victim]
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        sweep.join(timeout=RUN_TIMEOUT_S)
        assert not sweep.is_alive()
    finally:
        cluster.close()

    section = runner.report["constraint_experiment"]
    rows = section["settings"]
    grid = [(64, 0.25), (64, 1.0), (128, 0.25), (128, 1.0)]
    assert [(row["chunk_size_requested"], row["compute_limit"]) for row in rows] == grid
    for row in rows:
        # Either it ran to the end (on the surviving worker, for the killed one's setting)
        # or its row says why not; no setting is missing.
        if row["error"] is None:
            assert row["model_accuracy_r2"] is not None and row["worker"].startswith("tcp://")
        else:
            assert row["model_accuracy_r2"] is None
    assert any(row["error"] is None and row["worker"] != victim for row in rows)
