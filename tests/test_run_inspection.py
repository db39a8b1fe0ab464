"""``compare``, ``verify`` and ``clean`` on real run directories, through real subprocesses.

Three small full runs on the packaged sample are built once for the module: two with the
same settings and one with another chunk size.  Tests that change a run work on a copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nba_pipeline.inspection import (
    RunDirectoryError,
    clean_run,
    clean_runs_older_than,
    compare_runs,
    compute_checksums,
    verify_run,
    write_checksums,
)
from nba_pipeline.inspection.layout import CHECKSUMS, CLEANUP_LOG, LOCK_FILE_NAME

TIMEOUT_S = 300
_SCRIPT = Path(sys.executable).with_name("nba-pipeline")
NBA_PIPELINE = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "nba_pipeline.cli"]
SMALL_TEMPLATE = {
    "benchmark_runs": 2,
    "max_compute_units": 1.0,
    "sweep_chunk_sizes": [64, 128],
    "sweep_memory_limits_mb": [4096],
    "sweep_compute_limits": [1.0],
    "data_size_fractions": [1.0],
    "spill_to_disk": True,
    "chunk_size": 64,
}
KEPT = ("reports/pipeline_report.json", "metadata/run_manifest.json")
KEPT_CSV = "benchmarks/constraint_experiment.csv"
ARCHIVE = (
    "reports/streaming_chunks.jsonl",
    "profiles/operator_profile.csv",
    "benchmarks/latency_vs_accuracy.png",
    "benchmarks/memory_vs_accuracy.png",
    "benchmarks/latency_memory_accuracy.png",
)


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    env.pop("NBA_PIPELINE_REAL_DATA", None)
    return subprocess.run(
        [*NBA_PIPELINE, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Three finished runs: ``a`` and ``a_twin`` (same settings) and ``b`` (chunk size 128)."""
    base = tmp_path_factory.mktemp("runs")
    template = base / "small.json"
    template.write_text(json.dumps(SMALL_TEMPLATE), encoding="utf-8")
    built = {}
    for name, extra in (("a", []), ("a_twin", []), ("b", ["--chunk-size", "128"])):
        out = base / name
        done = cli("run", "--mode", "all", "--config", template, "--output-dir", out, *extra)
        assert done.returncode == 0, done.stderr
        write_checksums(out)
        built[name] = out
    return built


@pytest.fixture
def run_copy(runs, tmp_path):
    """A private copy of run ``a`` (file times kept), free to damage."""

    def make(name: str = "copy", parent: Path = tmp_path) -> Path:
        return Path(shutil.copytree(runs["a"], parent / name, symlinks=True))

    return make


def tree(root: Path) -> dict[str, str]:
    """Every file under root with the SHA-256 of its bytes."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def spill_files(root: Path) -> list[Path]:
    return sorted((root / "intermediate").glob("stream_chunk_*_*.csv"))


# --------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------


def test_compare_same_settings_exits_0(runs):
    done = cli("compare", runs["a"], runs["a_twin"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "identical deterministic parts: yes" in done.stdout
    assert "batch.latency_s" in done.stdout


def test_compare_other_chunk_size_exits_1_and_names_it(runs):
    done = cli("compare", runs["a"], runs["b"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "chunk_size: 64 -> 128" in done.stdout
    assert "identical deterministic parts: NO" in done.stdout


def test_compare_json_is_valid_and_complete(runs):
    done = cli("compare", runs["a"], runs["b"], "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["identical_deterministic_parts"] is False
    assert result["config_differences"] == {"chunk_size": [64, 128]}
    assert result["identity"]["config"] is False
    assert result["identity"]["dataset_sha256"] is True
    # The scores do not depend on chunking; the spilled chunks do.
    assert result["identity"]["model_scores"] is True
    assert result["identity"]["intermediate_files"] is False

    latency = result["metrics"]["streaming.latency_s"]
    assert latency["difference"] == pytest.approx(latency["b"] - latency["a"])
    tested = latency["repetitions"]
    assert tested["n_a"] == tested["n_b"] == 2
    assert tested["min_attainable_pvalue"] == pytest.approx(1 / 3)
    assert 0 < tested["pvalue"] <= 1
    assert tested["significant"] is False  # 2 vs 2 repetitions cannot reach 0.05
    for name in ("batch.memory.peak_rss_mb", "streaming.throughput_rows_s"):
        assert result["metrics"][name]["repetitions"]["pvalue"] > 0
    r2 = result["metrics"]["batch.model.r2"]
    assert r2["repetitions"] is None
    assert "no repetitions" in r2["note"]


def test_compare_ignores_timing_and_output_dir(runs):
    result = compare_runs(runs["a"], runs["a_twin"], seed=3)
    assert result["identical_deterministic_parts"] is True
    assert result["config_differences"] == {}
    # Older reports carry output_dir in their config: it is set aside, never a difference.
    assert set(result["location_differences"]) <= {"output_dir"}
    assert result["identity"]["intermediate_files"] is True
    assert result["intermediate_files"]["a"] == 14  # 400 rows in chunks of 64: 7 X and 7 y


def test_compare_without_spills_in_one_run_skips_that_part(runs, run_copy):
    cleaned = run_copy()
    clean_run(cleaned)
    result = compare_runs(runs["a"], cleaned)
    assert result["identity"]["intermediate_files"] is None
    assert "not compared" in result["identity_notes"]["intermediate_files"]
    assert result["identical_deterministic_parts"] is True


def test_compare_changed_model_score_is_not_identical(runs, run_copy):
    changed = run_copy()
    report_path = changed / "reports" / "pipeline_report.json"
    report = json.loads(report_path.read_text(encoding="utf-8"))
    report["streaming"]["model"]["rmse"] += 1e-6
    report_path.write_text(json.dumps(report), encoding="utf-8")
    result = compare_runs(runs["a"], changed)
    assert result["identity"]["model_scores"] is False
    assert result["identical_deterministic_parts"] is False


def test_compare_missing_run_exits_3_and_usage_error_exits_2(runs, tmp_path):
    missing = cli("compare", runs["a"], tmp_path / "nope")
    assert missing.returncode == 3
    assert "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    not_a_run = cli("compare", runs["a"], tmp_path)
    assert not_a_run.returncode == 3
    assert "not a run directory" in not_a_run.stderr
    assert cli("compare", runs["a"]).returncode == 2


# --------------------------------------------------------------------------------------
# checksums and verify
# --------------------------------------------------------------------------------------


def test_checksums_cover_every_file_in_the_agreed_format(runs, run_copy):
    run = run_copy()
    (run / LOCK_FILE_NAME).write_text("999999\n", encoding="utf-8")
    manifest = compute_checksums(run)
    assert manifest["algorithm"] == "sha256"
    files = manifest["files"]
    assert list(files) == sorted(files)
    on_disk = {path: digest for path, digest in tree(run).items()}
    del on_disk[CHECKSUMS], on_disk[LOCK_FILE_NAME]
    assert files == on_disk
    assert "intermediate/stream_chunk_1_X.csv" in files


def test_write_checksums_is_deterministic_and_atomic(run_copy):
    run = run_copy()
    first = write_checksums(run).read_bytes()
    assert write_checksums(run).read_bytes() == first
    assert json.loads(first) == compute_checksums(run)
    assert not list((run / "metadata").glob("*.tmp"))


def test_verify_fresh_run_passes(runs):
    done = cli("verify", runs["a"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": ok" in done.stdout
    result = json.loads(cli("verify", runs["a"], "--json").stdout)
    assert result["ok"] is True
    assert result["checked"] == len(compute_checksums(runs["a"])["files"])


def test_verify_names_modified_and_deleted_artifacts(run_copy):
    run = run_copy()
    with (run / "benchmarks" / "significance_tests.csv").open("a", encoding="utf-8") as handle:
        handle.write("tampered\n")
    (run / "intermediate" / "stream_chunk_3_y.csv").unlink()
    (run / "notes.txt").write_text("mine", encoding="utf-8")

    done = cli("verify", run)
    assert done.returncode == 1
    assert "benchmarks/significance_tests.csv: content differs" in done.stdout
    assert "intermediate/stream_chunk_3_y.csv: listed in checksums.json but missing" in done.stdout
    assert "notes.txt: present but not listed" in done.stdout
    result = verify_run(run)
    assert result["changed"] == ["benchmarks/significance_tests.csv"]
    assert result["missing"] == ["intermediate/stream_chunk_3_y.csv"]
    assert result["unlisted"] == ["notes.txt"]


def test_verify_checks_the_layout_against_the_report(run_copy):
    run = run_copy()
    (run / "benchmarks" / "resource_vs_accuracy.csv").unlink()
    write_checksums(run)  # checksums agree; the contract still wants the file
    result = verify_run(run)
    assert result["ok"] is False
    assert result["layout_missing"] == ["benchmarks/resource_vs_accuracy.csv"]
    assert result["missing"] == []


def test_verify_reports_missing_checksums_clearly(run_copy, tmp_path):
    run = run_copy()
    (run / CHECKSUMS).unlink()
    done = cli("verify", run)
    assert done.returncode == 1
    assert "metadata/checksums.json is missing" in done.stdout
    assert cli("verify", tmp_path / "nope").returncode == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("verify", empty).returncode == 3


def test_verify_does_not_follow_symlinks(run_copy, tmp_path):
    run = run_copy()
    outside = tmp_path / "outside.csv"
    outside.write_text("x\n", encoding="utf-8")
    (run / "reports" / "elsewhere.csv").symlink_to(outside)
    result = verify_run(run)
    assert result["symlinks"] == ["reports/elsewhere.csv"]
    assert result["ok"] is False
    assert "reports/elsewhere.csv" not in compute_checksums(run)["files"]


# --------------------------------------------------------------------------------------
# clean
# --------------------------------------------------------------------------------------


def test_clean_intermediate_removes_only_spills_and_verify_still_passes(run_copy):
    run = run_copy()
    before = tree(run)
    spills = {path.relative_to(run).as_posix() for path in spill_files(run)}
    spill_bytes = sum(path.stat().st_size for path in spill_files(run))

    done = cli("clean", run, "--intermediate", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["deleted"]) == spills
    assert result["bytes_freed"] == spill_bytes
    assert result["checksums"].startswith("updated")
    assert not (run / "intermediate").exists()

    after = tree(run)
    assert set(before) - set(after) == spills
    for path, digest in after.items():
        if path not in (CHECKSUMS, CLEANUP_LOG):
            assert before[path] == digest, path
    assert cli("verify", run).returncode == 0


def test_clean_keeps_earlier_damage_visible(run_copy):
    run = run_copy()
    (run / "benchmarks" / "latency_vs_data_size.csv").write_text("x\n", encoding="utf-8")
    clean_run(run)
    assert verify_run(run)["changed"] == ["benchmarks/latency_vs_data_size.csv"]


def test_clean_dry_run_deletes_nothing(run_copy):
    run = run_copy()
    before = tree(run)
    done = cli("clean", run, "--intermediate", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "would delete 14 file(s)" in done.stdout
    assert tree(run) == before


def test_clean_refuses_a_directory_that_is_not_a_run(tmp_path):
    stranger = tmp_path / "stranger"
    (stranger / "intermediate").mkdir(parents=True)
    spill = stranger / "intermediate" / "stream_chunk_1_X.csv"
    spill.write_text("a\n", encoding="utf-8")
    done = cli("clean", stranger, "--intermediate")
    assert done.returncode == 3
    assert "not a run directory" in done.stderr
    assert spill.is_file()
    with pytest.raises(RunDirectoryError, match="not a run directory"):
        clean_run(stranger)


def test_clean_never_follows_symlinks_out_of_the_run(run_copy, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "stream_chunk_99_X.csv"
    victim.write_text("keep me\n", encoding="utf-8")

    linked_file = run_copy("linked_file")
    (linked_file / "intermediate" / victim.name).symlink_to(victim)
    result = clean_run(linked_file)
    assert {"path": f"intermediate/{victim.name}", "reason": "symbolic link, not followed"} in (
        result["skipped"]
    )
    assert victim.read_text(encoding="utf-8") == "keep me\n"

    linked_dir = run_copy("linked_dir")
    shutil.rmtree(linked_dir / "intermediate")
    (linked_dir / "intermediate").symlink_to(outside, target_is_directory=True)
    result = clean_run(linked_dir)
    assert result["deleted"] == []
    assert victim.is_file()


def test_clean_refuses_a_run_being_written(run_copy):
    run = run_copy()
    (run / LOCK_FILE_NAME).write_text(f"{os.getpid()}\n", encoding="utf-8")
    with pytest.raises(RunDirectoryError, match="in use by a live run"):
        clean_run(run)
    assert spill_files(run)
    assert any("writing into this directory" in p for p in verify_run(run)["problems"])


def test_older_than_cleans_old_runs_and_leaves_recent_ones(run_copy, tmp_path):
    parent = tmp_path / "runs"
    parent.mkdir()
    old, recent = run_copy("old", parent), run_copy("recent", parent)
    (parent / "not_a_run").mkdir()
    past = time.time() - 40 * 86_400
    os.utime(old / "reports" / "pipeline_report.json", (past, past))
    recent_before = tree(recent)

    done = cli("clean", parent, "--older-than", "30", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [run["run_dir"] for run in result["cleaned"]] == [str(old.resolve())]
    assert [run["run"] for run in result["recent"]] == ["recent"]
    assert result["cleaned"][0]["age_days"] == pytest.approx(40, abs=0.1)

    assert tree(recent) == recent_before
    assert not spill_files(old)
    for path in ARCHIVE:
        assert not (old / path).exists(), path
    for path in (*KEPT, KEPT_CSV):
        assert (old / path).is_file(), path
    verified = verify_run(old)
    assert verified["ok"] is True, verified["problems"]
    assert sorted(verified["removed_by_clean"]) == sorted(ARCHIVE)


def test_older_than_dry_run_deletes_nothing(run_copy, tmp_path):
    parent = tmp_path / "runs"
    parent.mkdir()
    old = run_copy("old", parent)
    past = time.time() - 40 * 86_400
    os.utime(old / "reports" / "pipeline_report.json", (past, past))
    before = tree(old)
    done = cli("clean", parent, "--older-than", "30", "--include-reports", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "would clean 1 run(s)" in done.stdout
    assert tree(old) == before


def test_older_than_include_reports_retires_the_run(run_copy, tmp_path):
    parent = tmp_path / "runs"
    parent.mkdir()
    old = run_copy("old", parent)
    (old / "my_notes.txt").write_text("not the pipeline's\n", encoding="utf-8")
    past = time.time() - 40 * 86_400
    os.utime(old / "reports" / "pipeline_report.json", (past, past))

    result = clean_runs_older_than(parent, 30, include_reports=True)
    cleaned = result["cleaned"][0]
    assert cleaned["kept"] == ["my_notes.txt"]
    assert [path.name for path in old.iterdir()] == ["my_notes.txt"]
    (old / "my_notes.txt").unlink()
    run_copy("again", parent)
    os.utime(parent / "again" / "reports" / "pipeline_report.json", (past, past))
    assert clean_runs_older_than(parent, 30, include_reports=True)["cleaned"][0]["run_removed"]
    assert not (parent / "again").exists()


def test_retiring_removes_the_live_spool_and_distributed_parts(run_copy, tmp_path):
    parent = tmp_path / "runs"
    parent.mkdir()
    old = run_copy("old", parent)
    (old / "input").mkdir()
    (old / "input" / "received.csv").write_text("name\n", encoding="utf-8")
    (old / "features.parquet").mkdir()
    (old / "features.parquet" / "part-00000.parquet").write_bytes(b"PAR1")
    (old / "features.parquet" / "notes.txt").write_text("mine\n", encoding="utf-8")
    past = time.time() - 40 * 86_400
    os.utime(old / "reports" / "pipeline_report.json", (past, past))

    cleaned = clean_runs_older_than(parent, 30, include_reports=True)["cleaned"][0]

    assert "input/received.csv" in cleaned["deleted"]
    assert "features.parquet/part-00000.parquet" in cleaned["deleted"]
    assert not (old / "input").exists()
    assert [path.name for path in (old / "features.parquet").iterdir()] == ["notes.txt"]


def test_older_than_usage_errors(runs, tmp_path):
    assert cli("clean", runs["a"], "--older-than", "30").returncode == 3  # a run, not a parent
    assert cli("clean", tmp_path, "--older-than", "-1").returncode == 2
    assert cli("clean", tmp_path, "--intermediate", "--include-reports").returncode == 2
    assert cli("clean", tmp_path).returncode == 2  # --intermediate or --older-than
