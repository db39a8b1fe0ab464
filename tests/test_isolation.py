"""Measured runs in fresh workers: the operating system's accounting, the CPU cap by either
mechanism, the hard memory limit of a control group, and the baseline check.

Every test starts real worker processes; the control-group tests run only where this process
may create groups (root with a writable cgroup hierarchy) and say so when they skip.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from nba_pipeline.cgroups import create_worker_group
from nba_pipeline.config import PipelineConfig
from nba_pipeline.experiment import run_constraint_sweep
from nba_pipeline.ingestion import InputSource
from nba_pipeline.isolation import MeasuredRunFailed, measure
from nba_pipeline.synth import write_synthetic_csv

EDGE = PipelineConfig.from_profile("edge").with_overrides(
    chunk_size=256, spill_to_disk=False, max_compute_units=1.0
)


def _cgroups_available() -> str | None:
    group, reason = create_worker_group(0.5, 512.0)
    if group is None:
        return reason
    group.remove()
    return None


NO_CGROUP = _cgroups_available()
needs_cgroup = pytest.mark.skipif(
    NO_CGROUP is not None, reason=f"control groups unavailable here: {NO_CGROUP}"
)


@pytest.fixture(scope="module")
def synth_source(tmp_path_factory) -> InputSource:
    """Enough rows for a capped run to last a few seconds of wall time."""
    path = tmp_path_factory.mktemp("isolation") / "players.csv"
    write_synthetic_csv(path, rows=20_000, seed=3)
    return InputSource.from_path(path)


@pytest.fixture(scope="module")
def large_source(tmp_path_factory) -> InputSource:
    """A table whose batch run needs a few hundred MB."""
    path = tmp_path_factory.mktemp("isolation-large") / "players.csv"
    write_synthetic_csv(path, rows=100_000, seed=4)
    return InputSource.from_path(path)


def test_uncapped_worker_reports_the_operating_systems_accounting(sample_path):
    result, accounting = measure("streaming", InputSource.from_path(sample_path), EDGE)

    assert accounting["isolation"].startswith("fresh worker process")
    assert accounting["cpu_mechanism"] == "none (cap 1.0)"
    assert accounting["user_s"] > 0
    # CPU and wall time cover the same interval, so a worker pinned to its cores can never
    # show more than their whole time (a few milliseconds of clock granularity aside).
    assert 0 < accounting["measured_cpu_utilization"] <= 1.02
    assert 0 < accounting["baseline_rss_mb"] <= accounting["peak_rss_mb"]
    assert result.section["worker"] is accounting
    assert result.section["rows"] == 400


def _send_frozen_count(sender) -> None:
    sender.send(gc.get_freeze_count())


def test_workers_start_with_the_preloaded_objects_frozen(sample_path):
    # Frozen objects are skipped by every collection in the worker (and so never copied
    # into its memory by one); the preload is some hundred thousand objects.
    from nba_pipeline import isolation

    measure("batch", InputSource.from_path(sample_path), EDGE)  # the fork server is up
    receiver, sender = isolation._CONTEXT.Pipe(duplex=False)
    worker = isolation._CONTEXT.Process(target=_send_frozen_count, args=(sender,))
    worker.start()
    sender.close()
    frozen = receiver.recv()
    worker.join()
    assert frozen > 50_000


@pytest.mark.cpu_exclusive
def test_signal_duty_cycle_holds_the_cap(synth_source):
    config = EDGE.with_overrides(max_compute_units=0.3, cpu_cap_mechanism="signals")
    _, accounting = measure("streaming", synth_source, config)

    assert accounting["cpu_mechanism"].startswith("SIGSTOP/SIGCONT")
    assert 0.15 <= accounting["measured_cpu_utilization"] <= 0.36


@needs_cgroup
@pytest.mark.cpu_exclusive
def test_cgroup_quota_holds_the_cap(synth_source):
    config = EDGE.with_overrides(max_compute_units=0.3, cpu_cap_mechanism="cgroup")
    _, accounting = measure("streaming", synth_source, config)

    assert accounting["cpu_mechanism"].startswith("cgroup v")
    assert "6000 us" in accounting["cpu_mechanism"]  # 0.3 of a 20 ms period on one core
    assert 0.15 <= accounting["measured_cpu_utilization"] <= 0.36
    assert accounting["memory_hard_limit_mb"] == pytest.approx(1.5 * EDGE.max_memory_mb)


@needs_cgroup
def test_going_over_the_hard_limit_is_a_failed_run_that_says_so(large_source):
    config = PipelineConfig.from_profile("server").with_overrides(
        max_memory_mb=170.0, memory_hard_limit_factor=1.0
    )
    with pytest.raises(MeasuredRunFailed, match="over its hard memory limit of 170 MB"):
        measure("batch", large_source, config)


@needs_cgroup
def test_worker_groups_are_removed_after_the_run(sample_path):
    before = _group_dirs()
    measure(
        "streaming", InputSource.from_path(sample_path), EDGE.with_overrides(max_compute_units=0.5)
    )
    assert _group_dirs() == before


def test_budget_below_the_baseline_stops_with_both_figures(sample_path):
    config = EDGE.with_overrides(max_memory_mb=20.0, memory_hard_limit_factor=None)
    with pytest.raises(MeasuredRunFailed, match=r"budget 20 MB is below .* baseline RSS"):
        measure("streaming", InputSource.from_path(sample_path), config)


@pytest.mark.skipif(NO_CGROUP is None, reason="control groups are available here")
def test_insisting_on_a_cgroup_where_there_is_none_fails_with_the_reason(sample_path):
    config = EDGE.with_overrides(max_compute_units=0.5, cpu_cap_mechanism="cgroup")
    with pytest.raises(MeasuredRunFailed, match="no control group could be made"):
        measure("streaming", InputSource.from_path(sample_path), config)


def _group_dirs() -> set[Path]:
    roots = [Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")]
    # Only this process's groups: other pipeline processes on the machine have their own.
    pattern = f"nba-pipeline-{os.getpid()}-*"
    return {path for root in roots if root.is_dir() for path in root.rglob(pattern)}


def test_a_sweep_runs_each_setting_alone_and_a_failed_one_is_a_row(sample_path):
    config = EDGE.with_overrides(
        sweep_chunk_sizes=[64],
        sweep_memory_limits_mb=[20.0, 4096.0],
        sweep_compute_limits=[0.5, 1.0],
        memory_hard_limit_factor=None,
    )
    section = run_constraint_sweep(InputSource.from_path(sample_path), config)
    failed, ran = section["settings"][:2], section["settings"][2:]

    for row in failed:
        assert "budget 20 MB is below the worker's baseline" in row["error"]
        assert row["model_accuracy_r2"] is None and row["preprocessing_latency_s"] is None
    assert [row["compute_limit"] for row in ran] == [0.5, 1.0]
    assert all(row["error"] is None and row["measured_cpu_utilization"] > 0 for row in ran)
    capped, uncapped = ran
    assert uncapped["compute_mechanism"] == "none (cap 1.0)"
    assert capped["compute_mechanism"] != uncapped["compute_mechanism"]
    workers = [entry["worker"] for entry in section["log"][2:]]
    assert all(w["isolation"].startswith("fresh worker process") for w in workers)
    assert capped["compute_mechanism"] in section["enforcement"]["compute"]
