"""Faults around a run: a full disk, an unwritable output directory, an input file that
changes under the run, and many runs at once.

Each fault is produced for real where this machine allows it (a small tmpfs when the tests
run as root and may mount, a file-size limit otherwise) and the test says so when it is
skipped.  Every run here is a real ``nba-pipeline`` process, apart from one in-process run
that changes its input from the progress callback; the twenty concurrent runs are processes
forked from one that has imported the package, each running the command's ``main()`` (see
``run_forked_commands`` in conftest.py).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from nba_pipeline.artifacts import LOCK_NAME
from nba_pipeline.config import PipelineConfig
from nba_pipeline.errors import InputChangedError
from nba_pipeline.inspection import verify_run
from nba_pipeline.runner import PipelineRunner
from nba_pipeline.synth import write_synthetic_csv

_SCRIPT = Path(sys.executable).with_name("nba-pipeline")
NBA_PIPELINE = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "nba_pipeline.cli"]
TIMEOUT_S = 600
CONCURRENT_RUNS = 20
SMALL_RUN = {
    "benchmark_runs": 1,
    "max_compute_units": 1.0,
    "sweep_chunk_sizes": [64],
    "sweep_memory_limits_mb": [4096],
    "sweep_compute_limits": [1.0],
    "data_size_fractions": [1.0],
}


def _env() -> dict[str, str]:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    env.pop("NBA_PIPELINE_REAL_DATA", None)
    return env


def cli(*args: str, cwd: Path, **options) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*NBA_PIPELINE, *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        **options,
    )


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*NBA_PIPELINE, *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def error_line(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert lines, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[-1].startswith("nba-pipeline: error: ")
    return lines[-1]


def write_config(path: Path, **overrides) -> Path:
    path.write_text(json.dumps({**SMALL_RUN, **overrides}), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------
# Small filesystems: tmpfs when this process may mount one
# --------------------------------------------------------------------------------------


def _mount_tmpfs(target: Path, options: str) -> str | None:
    """Mount a tmpfs at ``target``; returns why not when that is impossible here."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount and umount are not installed"
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return f"mount -t tmpfs is not permitted here: {done.stderr.strip()}"
    return None


@contextmanager
def tmpfs(target: Path, options: str):
    """A tmpfs at ``target`` for the duration of the block; skips the test if impossible."""
    reason = _mount_tmpfs(target, options)
    if reason is not None:
        pytest.skip(reason)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


# --------------------------------------------------------------------------------------
# Disk full while spilling -> exit code 4
# --------------------------------------------------------------------------------------


def _assert_spill_failure(done, out: Path, errno_text: str) -> None:
    assert done.returncode == 4, done.stderr[-3000:]
    line = error_line(done)
    assert "streaming run could not write under" in line
    assert str(out) in line
    assert errno_text in line
    assert "--output-dir" in line
    # The run released its directory and wrote no report.
    assert not (out / LOCK_NAME).exists()
    assert not (out / "reports" / "pipeline_report.json").exists()


def test_disk_full_while_spilling_is_an_output_error(tmp_path):
    disk = tmp_path / "disk"
    with tmpfs(disk, "size=64k"):
        out = disk / "out"
        done = cli(
            "run",
            "--mode",
            "streaming",
            "--spill-to-disk",
            "--output-dir",
            str(out),
            "--quiet",
            cwd=tmp_path,
        )
        # The output folders and the lock fit; the disk fills up while chunks are spilled.
        _assert_spill_failure(done, out, "No space left on device")


def test_file_size_limit_while_spilling_is_an_output_error(tmp_path):
    """Where no filesystem can be mounted: a 16 kB file-size limit on the run (and the
    workers it starts) makes the first spill file too large to write."""
    out = tmp_path / "out"

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))

    done = cli(
        "run",
        "--mode",
        "streaming",
        "--spill-to-disk",
        "--output-dir",
        str(out),
        "--quiet",
        cwd=tmp_path,
        preexec_fn=limit_file_size,
    )
    _assert_spill_failure(done, out, "File too large")


# --------------------------------------------------------------------------------------
# Output directory not writable -> exit code 4
# --------------------------------------------------------------------------------------


@contextmanager
def unwritable_directory(tmp_path: Path):
    """A directory this process cannot write to: read-only by permissions for a normal user,
    a read-only tmpfs for root (which ignores permissions)."""
    if os.geteuid() != 0:
        directory = tmp_path / "locked"
        directory.mkdir()
        directory.chmod(0o555)
        try:
            yield directory
        finally:
            directory.chmod(0o755)
        return
    target = tmp_path / "readonly"
    reason = _mount_tmpfs(target, "ro,size=1m")
    if reason is not None:
        pytest.skip(
            f"running as root, which ignores permissions, and {reason}; running the run as "
            "another user would need an interpreter outside root's home"
        )
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@pytest.mark.parametrize("layout", ["directory itself", "folder inside it"])
def test_unwritable_output_directory_is_refused_before_any_work(tmp_path, layout):
    with unwritable_directory(tmp_path) as directory:
        out = directory if layout == "directory itself" else directory / "runs" / "first"
        done = cli("run", "--mode", "batch", "--output-dir", str(out), "--quiet", cwd=tmp_path)
        assert done.returncode == 4, done.stderr[-3000:]
        line = error_line(done)
        assert f"output directory {out}" in line
        assert "cannot be created" in line or "is not writable" in line


# --------------------------------------------------------------------------------------
# The input changes during a run -> exit code 6, no artifacts
# --------------------------------------------------------------------------------------


def test_input_changed_during_a_run_is_detected_in_process(tmp_path):
    path = tmp_path / "players.csv"
    write_synthetic_csv(path, 400, seed=3)
    extra_row = path.read_text(encoding="utf-8").splitlines()[1]
    changed = []

    def change_input(stage: str, done: int, total: int) -> None:
        if not changed:  # at the first benchmark step, after batch and streaming ran
            with path.open("a", encoding="utf-8") as handle:
                handle.write(extra_row + "\n")
            changed.append(stage)

    out = tmp_path / "out"
    # In this process (isolate_runs false), so that the callback runs between stages.
    config = PipelineConfig.from_dict({**SMALL_RUN, "output_dir": str(out), "isolate_runs": False})
    runner = PipelineRunner(config, progress=change_input)
    with pytest.raises(InputChangedError) as caught:
        runner.run_all(path)
    assert changed
    message = str(caught.value)
    assert f"input file {path} changed during the run" in message
    assert caught.value.exit_code == 6
    assert not (out / "reports" / "pipeline_report.json").exists()
    assert not (out / LOCK_NAME).exists()


def test_input_changed_during_a_cli_run_exits_6(tmp_path):
    path = tmp_path / "players.csv"
    write_synthetic_csv(path, 400, seed=3)
    out = tmp_path / "out"
    config = write_config(tmp_path / "small.json", benchmark_runs=2)
    process = start(
        "run",
        "--input",
        str(path),
        "--config",
        str(config),
        "--spill-to-disk",
        "--output-dir",
        str(out),
        "--quiet",
        cwd=tmp_path,
    )
    # The first spill file exists only after the run fingerprinted its input.
    spilled = out / "intermediate" / "stream_chunk_1_X.csv"
    deadline = time.monotonic() + TIMEOUT_S
    while not spilled.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before its input could be changed"
    with path.open("r+b") as handle:  # same size, one byte different
        handle.seek(path.stat().st_size - 3)
        handle.write(b"1")
    stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert done.returncode == 6, stderr[-3000:]
    line = error_line(done)
    assert f"input file {path} changed during the run" in line
    assert not (out / "reports" / "pipeline_report.json").exists()


# --------------------------------------------------------------------------------------
# Load: many runs at once, and two runs into one directory
# --------------------------------------------------------------------------------------


def test_concurrent_runs_into_different_directories_all_complete(tmp_path, forked_cli):
    # Each run does its work in its own process (no fork server and measured workers): the
    # load is twenty whole runs writing side by side, not sixty processes at once.
    config = write_config(tmp_path / "small.json", isolate_runs=False)
    runs = [
        (
            ["run", "--config", config, "--spill-to-disk", "--output-dir", out, "--quiet"],
            tmp_path,
        )
        for out in (tmp_path / f"run_{index:02d}" for index in range(CONCURRENT_RUNS))
    ]
    done = forked_cli(runs, _env(), TIMEOUT_S)
    failed = [(index, run.returncode, run.stderr[-2000:]) for index, run in enumerate(done)]
    assert not [failure for failure in failed if failure[1] != 0], failed

    manifests, scores = set(), set()
    for index in range(CONCURRENT_RUNS):
        out = tmp_path / f"run_{index:02d}"
        verification = verify_run(out)
        assert verification["ok"], (index, verification)
        report = json.loads((out / "reports" / "pipeline_report.json").read_text())
        assert report["streaming"]["rows"] == report["dataset_fingerprint"]["row_count"] == 400
        assert report["quality"]["rows_accounted"]
        assert (out / "reports" / "quarantine.csv").read_text() == "line,reason,raw\n"
        assert not (out / LOCK_NAME).exists()
        manifests.add((out / "metadata" / "run_manifest.json").read_bytes())
        scores.add(
            json.dumps(
                [
                    report[mode]["model"][key]
                    for mode in ("batch", "streaming")
                    for key in ("r2", "rmse")
                ]
            )
        )
    # The same input and configuration give the same manifest and scores in every run.
    assert len(manifests) == 1
    assert len(scores) == 1


def test_second_run_into_a_held_directory_is_refused_by_the_lock(tmp_path):
    out = tmp_path / "shared"
    # Long enough (several sweep settings at a reduced CPU cap) to still be running when the
    # second run starts.
    config = write_config(
        tmp_path / "slow.json",
        benchmark_runs=3,
        sweep_chunk_sizes=[16, 32, 64],
        sweep_compute_limits=[0.5],
    )
    first = start(
        "run", "--config", str(config), "--output-dir", str(out), "--quiet", cwd=tmp_path
    )
    lock = out / LOCK_NAME
    deadline = time.monotonic() + TIMEOUT_S
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert lock.exists(), "the first run never took the lock"

    second = cli("run", "--mode", "batch", "--output-dir", str(out), "--quiet", cwd=tmp_path)
    still_running = first.poll() is None
    _, first_stderr = first.communicate(timeout=TIMEOUT_S)
    assert still_running, "the first run ended before the second one tried the directory"
    assert second.returncode == 4, second.stderr[-3000:]
    line = error_line(second)
    assert f"output directory {out} is in use by another run (pid {first.pid})" in line
    assert "choose another --output-dir" in line

    assert first.returncode == 0, first_stderr[-3000:]
    assert verify_run(out)["ok"]
    assert not lock.exists()
