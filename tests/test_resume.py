"""Crash resume: ``nba-pipeline run`` killed with SIGKILL at a chunk, then ``--resume``.

Each run is a real subprocess in its own process group.  The test watches the journal
(``OUTPUT_DIR/.resume/journal.jsonl``, one line per committed chunk) from outside and kills
the whole group once k chunks are committed; the resumed run must end with the same spilled
files (byte for byte), the same chunk records (timings and telemetry aside) and the same
model scores as a run that was never interrupted.  The input is the real table when
NBA_PIPELINE_REAL_DATA names it, else the packaged sample.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nba_pipeline.report_fields import MEASURED_KEYS, deterministic_view
from nba_pipeline.synth import sample_dataset_path

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("nba-pipeline")
NBA_PIPELINE = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "nba_pipeline.cli"]
TIMEOUT_S = 300
RESUME_EXIT = 8
# Small chunks (many kill points), spill on, no memory pressure (so no adaptive splits),
# and the smallest benchmark and sweep the artifact contract accepts.
TEMPLATE = {
    "chunk_size": 16,
    "batch_size": 48,
    "spill_to_disk": True,
    "max_memory_mb": 4096,
    "max_compute_units": 1.0,
    "benchmark_runs": 2,
    "sweep_chunk_sizes": [32, 64],
    "sweep_memory_limits_mb": [4096],
    "sweep_compute_limits": [1.0],
    "data_size_fractions": [1.0],
}
# Chunk-record fields that are measurements of the process that wrote the chunk.
TELEMETRY = MEASURED_KEYS | {"memory_before_mb", "memory_after_mb", "memory_peak_mb"}


def _env() -> dict[str, str]:
    return dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """The input, the template and an uninterrupted streaming run to compare against."""
    tmp = tmp_path_factory.mktemp("resume")
    real = os.environ.get("NBA_PIPELINE_REAL_DATA")
    data = Path(real) if real and Path(real).is_file() else sample_dataset_path()
    template = tmp / "template.json"
    template.write_text(json.dumps(TEMPLATE), encoding="utf-8")
    base = ["--config", str(template), "--input", str(data)]
    reference = tmp / "reference"
    done = _run([*base, "--mode", "streaming", "--output-dir", str(reference)], tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    chunks = len(_records(reference))
    assert chunks >= 10, "too few chunks to choose kill points from"
    return {"tmp": tmp, "data": data, "base": base, "reference": reference, "chunks": chunks}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*NBA_PIPELINE, "run", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def _run_and_kill(args: list[str], out: Path, cwd: Path, committed: int) -> int:
    """Start a run; SIGKILL its process group once ``committed`` chunks are journalled.

    Returns the number of journal lines at the kill.  The run must not finish first.
    """
    process = subprocess.Popen(
        [*NBA_PIPELINE, "run", *args, "--output-dir", str(out)],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    journal = out / ".resume" / "journal.jsonl"
    deadline = time.monotonic() + TIMEOUT_S
    lines = 0
    try:
        while time.monotonic() < deadline:
            try:
                lines = journal.read_bytes().count(b"\n")
            except OSError:
                lines = 0
            if lines >= committed:
                os.killpg(process.pid, signal.SIGKILL)
                break
            if process.poll() is not None:
                pytest.fail(f"the run ended before {committed} chunks were journalled")
            time.sleep(0.002)
        else:
            pytest.fail("timed out waiting for the journal")
    finally:
        process.wait(timeout=60)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    return lines


def _records(out: Path) -> list[dict]:
    lines = (out / "reports" / "streaming_chunks.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in lines.splitlines()]


def _deterministic_records(out: Path) -> list[dict]:
    return [
        {key: value for key, value in record.items() if key not in TELEMETRY}
        for record in _records(out)
    ]


def _spilled(out: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in (out / "intermediate").glob("*.csv")}


def _report(out: Path) -> dict:
    return json.loads((out / "reports" / "pipeline_report.json").read_text(encoding="utf-8"))


def _assert_same_as_reference(out: Path, reference: Path) -> None:
    assert _spilled(out) == _spilled(reference)
    assert _deterministic_records(out) == _deterministic_records(reference)
    model = deterministic_view(_report(out))["streaming"]["model"]
    assert model == deterministic_view(_report(reference))["streaming"]["model"]
    assert model["r2"] == _report(reference)["streaming"]["model"]["r2"]
    quarantine = "reports/quarantine.csv"
    assert (out / quarantine).read_bytes() == (reference / quarantine).read_bytes()
    assert not (out / ".resume").exists(), "a finished run leaves no journal"
    assert not (out / ".nba-pipeline.lock").exists()


@pytest.mark.parametrize("point", ["early", "middle"])
def test_streaming_run_killed_mid_stream_resumes_to_the_same_result(setup, point):
    chunks = setup["chunks"]
    committed = {"early": 1, "middle": chunks // 2}[point]
    out = setup["tmp"] / f"killed-{point}"
    args = [*setup["base"], "--mode", "streaming"]
    lines = _run_and_kill(args, out, setup["tmp"], committed)
    assert committed <= lines < chunks, "the kill must land inside the stream"
    if point == "middle":
        # A journal line torn by the crash (no newline yet) is not a commit.
        with (out / ".resume" / "journal.jsonl").open("ab") as journal:
            journal.write(b'{"chunk_id": 9999, "input": {"end_off')

    resumed = _run([*args, "--output-dir", str(out), "--resume"], setup["tmp"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "taking over the lock" in resumed.stderr  # the killed run's lock is stale
    assert f"after chunk {lines}" in resumed.stderr
    _assert_same_as_reference(out, setup["reference"])


def test_full_run_killed_after_the_last_chunk_resumes_and_meets_the_contract(
    setup, check_artifacts_tool
):
    """Killed after every chunk is committed (in the benchmark or sweep): the resume
    reruns batch, benchmark, sweep and quality, finishes the stream from its journal, and
    the output directory meets the artifact contract."""
    chunks = setup["chunks"]
    out = setup["tmp"] / "killed-last"
    args = list(setup["base"])
    assert _run_and_kill(args, out, setup["tmp"], chunks) == chunks

    resumed = _run([*args, "--output-dir", str(out), "--resume"], setup["tmp"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"after chunk {chunks}" in resumed.stderr
    _assert_same_as_reference(out, setup["reference"])
    rows = _report(setup["reference"])["dataset_fingerprint"]["row_count"]
    check_artifacts_tool(out, spill=True, dataset_rows=rows)
    verified = subprocess.run(
        [*NBA_PIPELINE, "verify", str(out)], capture_output=True, text=True, check=False
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.fixture(scope="module")
def interrupted(setup) -> Path:
    """A streaming run killed after two chunks; tests resume copies of it."""
    out = setup["tmp"] / "interrupted"
    _run_and_kill([*setup["base"], "--mode", "streaming"], out, setup["tmp"], 2)
    return out


@pytest.fixture
def interrupted_copy(interrupted, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(interrupted, copy)
    return copy


def _resume(setup, out: Path, *extra: str, base: list[str] | None = None):
    args = [*(base or setup["base"]), "--mode", "streaming", *extra]
    return _run([*args, "--output-dir", str(out), "--resume"], setup["tmp"])


def test_resume_refuses_a_different_input(setup, interrupted_copy, tmp_path):
    other = tmp_path / "other.csv"
    lines = Path(setup["data"]).read_bytes().splitlines(keepends=True)
    other.write_bytes(b"".join(lines[:-1]))  # one row fewer
    index = setup["base"].index("--input") + 1
    base = [*setup["base"][:index], str(other), *setup["base"][index + 1 :]]
    refused = _resume(setup, interrupted_copy, base=base)
    assert refused.returncode == RESUME_EXIT, refused.stderr
    message = refused.stderr.strip().splitlines()[-1]
    assert "different input" in message and "other.csv" in message
    assert "Traceback" not in refused.stderr
    assert (interrupted_copy / ".resume" / "journal.jsonl").is_file()  # left as it was


def test_resume_refuses_a_different_config_naming_the_keys(setup, interrupted_copy):
    refused = _resume(setup, interrupted_copy, "--chunk-size", "32", "--random-seed", "7")
    assert refused.returncode == RESUME_EXIT, refused.stderr
    message = refused.stderr.strip().splitlines()[-1]
    assert "different config" in message
    assert "chunk_size 16 != 32" in message and "random_seed 42 != 7" in message
    assert "output_dir" not in message


def test_resume_into_another_output_dir_has_nothing_to_resume(setup, tmp_path):
    refused = _resume(setup, tmp_path / "fresh")
    assert refused.returncode == RESUME_EXIT, refused.stderr
    assert "nothing to resume" in refused.stderr.strip().splitlines()[-1]


def test_resume_after_a_finished_run_has_nothing_to_resume(setup, tmp_path):
    finished = tmp_path / "finished"
    shutil.copytree(setup["reference"], finished)
    refused = _resume(setup, finished)
    assert refused.returncode == RESUME_EXIT, refused.stderr
    assert "nothing to resume" in refused.stderr


def test_resume_refuses_while_the_lock_holder_is_alive(setup, interrupted_copy):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (interrupted_copy / ".nba-pipeline.lock").write_text(f"{holder.pid}\n")
        refused = _resume(setup, interrupted_copy)
    finally:
        holder.kill()
        holder.wait()
    assert refused.returncode == 4, refused.stderr
    assert f"in use by another run (pid {holder.pid})" in refused.stderr


def test_resume_refuses_batch_mode(setup, interrupted_copy):
    refused = _run(
        [*setup["base"], "--mode", "batch", "--output-dir", str(interrupted_copy), "--resume"],
        setup["tmp"],
    )
    assert refused.returncode == 2, refused.stderr
    assert "--resume" in refused.stderr


def test_a_new_run_without_resume_discards_an_old_journal(setup, interrupted_copy):
    done = _run(
        [*setup["base"], "--mode", "streaming", "--output-dir", str(interrupted_copy)],
        setup["tmp"],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "discarding the journal of an interrupted run" in done.stderr
    _assert_same_as_reference(interrupted_copy, setup["reference"])


def test_resume_after_a_restart_of_the_machine_trusts_only_synced_chunks(setup, interrupted_copy):
    """After a reboot the page cache is gone: only chunks behind the last fsync barrier
    (``synced.json``) count; the others are recomputed, with the same result."""
    meta_path = interrupted_copy / ".resume" / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["boot_id"] = "a-boot-before-the-restart"
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    resumed = _resume(setup, interrupted_copy)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "the machine restarted since the run was journalled" in resumed.stderr
    _assert_same_as_reference(interrupted_copy, setup["reference"])
