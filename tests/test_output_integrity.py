"""Artifacts are never half-written, and one live run holds an output directory."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from nba_pipeline.artifacts import LOCK_NAME, OutputDirLock, write_json
from nba_pipeline.errors import OutputError
from nba_pipeline.resume import RESUME_DIR

SMALL_RUN = {
    "benchmark_runs": 2,
    "max_compute_units": 1.0,
    "max_memory_mb": 4096,
    "spill_to_disk": True,
    "sweep_chunk_sizes": [32, 64],
    "sweep_memory_limits_mb": [4096],
    "sweep_compute_limits": [0.5, 1.0],
    "data_size_fractions": [1.0],
}


def start_run(cwd: Path, output: str) -> subprocess.Popen:
    template = cwd / "small.json"
    template.write_text(json.dumps(SMALL_RUN))
    command = [
        sys.executable,
        "-m",
        "nba_pipeline.cli",
        "run",
        "--config",
        str(template),
        "--output-dir",
        output,
    ]
    return subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def assert_every_artifact_complete(out: Path) -> None:
    """Every JSON, JSON-lines and CSV file parses to the end; no temporary names remain
    visible as artifacts.  The resume journal (``.resume/``, binary state files) is not an
    artifact: tests/test_resume.py checks that a resume makes complete artifacts of it."""
    for path in out.rglob("*"):
        if not path.is_file() or path.name == LOCK_NAME or path.suffix == ".tmp":
            continue
        if RESUME_DIR in path.relative_to(out).parts:
            continue
        text = path.read_text(encoding="utf-8") if path.suffix != ".png" else ""
        if path.suffix == ".json":
            json.loads(text)
        elif path.suffix == ".jsonl":
            assert text.endswith("\n"), path
            for line in text.splitlines():
                json.loads(line)
        elif path.suffix == ".csv":
            assert text.endswith("\n"), path
            rows = list(csv.reader(text.splitlines()))
            assert len({len(row) for row in rows}) == 1, path


def test_a_write_is_all_or_nothing(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    write_json(target, {"complete": True})

    def failing_replace(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OutputError, match="report.json"):
        write_json(target, {"complete": False})
    assert json.loads(target.read_text()) == {"complete": True}


KILL_DELAYS_S = (0.5, 1.5, 2.5, 4.0)


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory) -> dict[float, Path]:
    """Runs killed 0.5, 1.5, 2.5 and 4 s after they started (in start-up, the main runs,
    the benchmark, the sweep or the artifacts), one after another so that each gets as far
    as a run on its own would."""
    killed = {}
    for delay_s in KILL_DELAYS_S:
        cwd = tmp_path_factory.mktemp(f"killed-{delay_s}")
        process = start_run(cwd, "out")
        time.sleep(delay_s)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        killed[delay_s] = cwd / "out"
    return killed


@pytest.mark.parametrize("delay_s", KILL_DELAYS_S)
def test_kill_during_a_run_leaves_only_complete_artifacts(killed_runs, delay_s):
    out = killed_runs[delay_s]
    if out.exists():
        assert_every_artifact_complete(out)


def test_the_next_run_into_a_killed_runs_directory_completes(killed_runs):
    # The latest run killed while holding its lock: the lock is stale, and the rerun takes
    # it over.
    held = [out for out in killed_runs.values() if (out / LOCK_NAME).exists()]
    out = held[-1] if held else killed_runs[KILL_DELAYS_S[-1]]
    rerun = start_run(out.parent, "out")
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert_every_artifact_complete(out)
    assert not list(out.rglob("*.tmp"))
    assert not (out / LOCK_NAME).exists()


def test_a_live_run_holds_its_output_directory(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from nba_pipeline.artifacts import OutputDirLock\n"
            "with OutputDirLock(sys.argv[1]):\n"
            "    print('held', flush=True); time.sleep(60)",
            str(tmp_path / "out"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        in_use = rf"in use by another run \(pid {holder.pid}\)"
        with pytest.raises(OutputError, match=in_use), OutputDirLock(tmp_path / "out"):
            pass

        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "nba_pipeline.cli",
                "run",
                "--mode",
                "batch",
                "--output-dir",
                str(tmp_path / "out"),
            ],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 4
        assert f"pid {holder.pid}" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_reentrant_and_released(tmp_path):
    lock = OutputDirLock(tmp_path / "out")
    with lock:
        with lock:
            assert (tmp_path / "out" / LOCK_NAME).read_text().strip() == str(os.getpid())
        assert (tmp_path / "out" / LOCK_NAME).exists()
    assert not (tmp_path / "out" / LOCK_NAME).exists()


def test_a_finished_run_leaves_nothing_in_the_temporary_folder(tmp_path, request):
    """Chunk logs, held-out spools and worker files are removed when the run ends, in the
    command, its fork server (which warms up by running both modes) and every worker."""
    # Not under tmp_path: the fork server's Unix socket goes in this folder, and its path
    # must stay short.
    scratch = Path(tempfile.mkdtemp(prefix="nbp-scratch-"))
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    template = tmp_path / "small.json"
    template.write_text(json.dumps(SMALL_RUN))
    done = run_with_tmpdir(
        tmp_path, scratch, "--config", str(template), "--output-dir", "out", "--quiet"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(path.name for path in scratch.iterdir()) == []


def test_a_temporary_folder_too_long_for_a_socket_is_a_clear_error(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    done = run_with_tmpdir(tmp_path, deep, "--output-dir", "out")
    assert done.returncode == 1
    assert "set TMPDIR to a shorter folder" in done.stderr
    assert "Traceback" not in done.stderr


def run_with_tmpdir(cwd: Path, tmpdir: Path, *args: str) -> subprocess.CompletedProcess:
    """``nba-pipeline run`` with ``TMPDIR`` pointing at ``tmpdir``."""
    return subprocess.run(
        [sys.executable, "-m", "nba_pipeline.cli", "run", *args],
        cwd=cwd,
        env=dict(os.environ, TMPDIR=str(tmpdir), MPLBACKEND="Agg"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
