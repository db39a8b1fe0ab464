"""Shared fixtures: the real table (through NBA_PIPELINE_REAL_DATA only), the packaged sample,
and small raw CSV files written by the tests themselves."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import pytest

from nba_pipeline.synth import HEADER, sample_dataset_path

REAL_DATA_ENV = "NBA_PIPELINE_REAL_DATA"
CPU_LOCK_DIR_ENV = "NBA_PIPELINE_TEST_CPU_LOCKS"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cpu_exclusive: measures the CPU share a capped worker gets, so it runs while no other "
        "test process runs a test",
    )
    if os.environ.get("PYTEST_XDIST_WORKER") is None and CPU_LOCK_DIR_ENV not in os.environ:
        # The controller makes the lock folder once; the xdist workers inherit its name.
        os.environ[CPU_LOCK_DIR_ENV] = tempfile.mkdtemp(prefix="nba-pipeline-test-locks-")
        config.add_cleanup(lambda: shutil.rmtree(os.environ.pop(CPU_LOCK_DIR_ENV), True))
        _compile_package()


def _compile_package() -> None:
    """Write the package's bytecode once, before any test starts a process.

    The suite starts a few hundred Python processes (commands, fork servers, workers); where
    PYTHONDONTWRITEBYTECODE is set, as on some CI machines, each of them would compile every
    module of the package again (about 0.2 CPU s a process).  compileall writes the files
    whatever that variable says, and reading them is always allowed.
    """
    import compileall

    import nba_pipeline

    compileall.compile_dir(Path(nba_pipeline.__file__).parent, quiet=1, workers=1)


# The files whose tests start many whole runs, the heaviest first.  pytest-xdist hands out
# whole files (--dist loadfile) in collection order; starting the long ones first lets the
# test processes finish together instead of one idling while the other runs a long file.
HEAVY_FILES = (
    "test_faults.py",
    "test_cli.py",
    "test_output_integrity.py",
    "test_resume.py",
    "test_run_inspection.py",
    "test_bad_input.py",
    "test_distributed_sweep.py",
    "test_real_data_run.py",
    "test_terminal.py",
    "test_live_input.py",
    "test_determinism.py",
    "test_html_report.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(HEAVY_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    """Tests run side by side in pytest-xdist's processes, except ``cpu_exclusive`` ones.

    A test that measures the CPU share of a capped worker would measure the contention of
    a test running next to it, not the cap.  Every test holds a shared lock while it runs
    (setup, call and teardown); an exclusive test takes the lock alone.  A turnstile lock
    that exclusive tests hold while they wait keeps new tests from starving them.
    """
    folder = os.environ.get(CPU_LOCK_DIR_ENV)
    if folder is None:
        yield
        return
    exclusive = item.get_closest_marker("cpu_exclusive") is not None
    with (
        open(Path(folder) / "turnstile", "a") as turnstile,
        open(Path(folder) / "running", "a") as running,
    ):
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        if not exclusive:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        fcntl.flock(running, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        if exclusive:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(running, fcntl.LOCK_UN)


# One well-formed raw row in the real table's formats (LeBron James' NBA2k20 row).
BASE_ROW: dict[str, str] = {
    "full_name": "LeBron James",
    "rating": "97",
    "jersey": "#23",
    "team": "Los Angeles Lakers",
    "position": "F",
    "b_day": "12/30/84",
    "height": "6-9 / 2.06",
    "weight": "250 lbs. / 113.4 kg.",
    "salary": "$37436858",
    "country": "USA",
    "draft_year": "2003",
    "draft_round": "1",
    "draft_peak": "1",
    "college": "",
    "version": "NBA2k20",
}


@pytest.fixture
def real_data_path() -> Path:
    """Path of the real nba2k-full.csv, taken from NBA_PIPELINE_REAL_DATA; skips when unset."""
    value = os.environ.get(REAL_DATA_ENV)
    if not value:
        pytest.skip(f"{REAL_DATA_ENV} is not set: tests on the real NBA2K table are skipped")
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"{REAL_DATA_ENV}={value!r} does not name a readable file")
    return path


@pytest.fixture
def sample_path() -> Path:
    """The packaged synthetic sample (400 rows), available everywhere."""
    return sample_dataset_path()


def write_raw_csv(path: Path, rows: Iterable[Mapping[str, str]]) -> Path:
    """Write rows (each a partial mapping over BASE_ROW) as a raw CSV with the real header."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(HEADER), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**BASE_ROW, **row})
    return path


@pytest.fixture
def raw_csv(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``raw_csv([{"height": "6-9"}, ...], name="x.csv")`` writes a CSV in tmp_path.

    Every row starts from BASE_ROW and the given fields replace its values, so a test only
    spells out the cells it is about.  The first data row is on file line 2.
    """

    def make(rows: Iterable[Mapping[str, str]], name: str = "players.csv") -> Path:
        return write_raw_csv(tmp_path / name, rows)

    return make


# --------------------------------------------------------------------------------------
# The artifact contract of a finished `nba-pipeline run` (used by test_cli and the real run)
# --------------------------------------------------------------------------------------

REPORT_SECTIONS = (
    "dataset_fingerprint",
    "reproducibility",
    "batch",
    "streaming",
    "benchmark",
    "constraint_experiment",
    "quality",
    "scaling",
)
TRADEOFF_PLOTS = (
    "latency_vs_accuracy.png",
    "memory_vs_accuracy.png",
    "latency_memory_accuracy.png",
)
CHECK_ARTIFACTS_TOOL = Path("/work/shared/tools/check_artifacts.py")


def assert_artifact_contract(out: Path, *, spill: bool, dataset_rows: int | None = None) -> dict:
    """Assert the essentials of a full run's output directory and return its report.

    Every report section in order, manifest == report['reproducibility'], JSON lines written
    with the standard separators, chunk rows adding up to the dataset, one spilled X and y
    per chunk (y with the single header ``salary``) and the three plots.
    """
    report = json.loads((out / "reports" / "pipeline_report.json").read_text(encoding="utf-8"))
    # The contract's sections in order, then where the run went and the field-kind rule.
    assert list(report) == [*REPORT_SECTIONS, "run", "field_kinds"]
    manifest = json.loads((out / "metadata" / "run_manifest.json").read_text(encoding="utf-8"))
    assert manifest == report["reproducibility"]
    rows = report["dataset_fingerprint"]["row_count"]
    if dataset_rows is not None:
        assert rows == dataset_rows

    lines = (out / "reports" / "streaming_chunks.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert records
    for line, record in zip(lines, records, strict=True):
        assert '"memory_exceeded": ' in line
        assert line == json.dumps(record)  # ", " and ": " separators, one record per line
    assert len(records) == len(report["streaming"]["chunk_metrics"])
    assert sum(record["rows"] for record in records) == rows

    if spill:
        spilled = sorted((out / "intermediate").glob("stream_chunk_*_*.csv"))
        assert len(spilled) == 2 * len(records)
        for record in records:
            chunk_id = record["chunk_id"]
            assert record["spill_paths"] == {
                "X": f"intermediate/stream_chunk_{chunk_id}_X.csv",
                "y": f"intermediate/stream_chunk_{chunk_id}_y.csv",
            }
            y_lines = (out / record["spill_paths"]["y"]).read_text(encoding="utf-8").splitlines()
            assert y_lines[0] == "salary"
            assert "salary" not in y_lines[1:]
            assert len(y_lines) - 1 == record["rows"]
            x_lines = (out / record["spill_paths"]["X"]).read_text(encoding="utf-8").splitlines()
            assert len(x_lines) - 1 == record["rows"]

    for name in TRADEOFF_PLOTS:
        assert (out / "benchmarks" / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), name
    return report


def run_check_artifacts(out: Path, *, spill: bool, dataset_rows: int | None = None) -> str:
    """Run the shared contract checker on ``out``; skips when this machine lacks it."""
    if not CHECK_ARTIFACTS_TOOL.is_file():
        pytest.skip(f"{CHECK_ARTIFACTS_TOOL} is not on this machine")
    command = [sys.executable, str(CHECK_ARTIFACTS_TOOL), str(out)]
    command += ["--spill"] if spill else []
    command += ["--dataset-rows", str(dataset_rows)] if dataset_rows is not None else []
    checked = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip().splitlines()[-1].endswith(" 0 failed")
    return checked.stdout


@pytest.fixture
def artifact_contract() -> Callable[..., dict]:
    """``artifact_contract(out, spill=True, dataset_rows=439)`` asserts the essentials."""
    return assert_artifact_contract


@pytest.fixture
def check_artifacts_tool() -> Callable[..., str]:
    """``check_artifacts_tool(out, spill=True)`` runs the shared checker or skips."""
    return run_check_artifacts


@pytest.fixture(scope="session")
def write_csv() -> Callable[[Path, Iterable[Mapping[str, str]]], Path]:
    """The writer behind ``raw_csv``, for fixtures with a wider scope than one test."""
    return write_raw_csv


# --------------------------------------------------------------------------------------
# Many command-line runs at once, forked from one process that has imported the package
# --------------------------------------------------------------------------------------

# The children are forked after the imports, as the pipeline's own fork server forks its
# workers: a dozen runs side by side without a dozen times the few CPU seconds of imports,
# which none of the tests that start them is about.  Each child changes to its folder,
# writes its stdout and stderr to its own files, runs the command's main() and exits with
# the code the console script would exit with.
FORKING_LAUNCHER = """
import json, os, sys, traceback
import matplotlib.figure, scipy.stats, sklearn.linear_model, sklearn.metrics  # noqa: F401
import nba_pipeline.plots, nba_pipeline.runner  # noqa: F401
from nba_pipeline.cli import main

children = []
for run in json.load(sys.stdin):
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.chdir(run["cwd"])
            for fd, name in ((1, "stdout"), (2, "stderr")):
                os.dup2(os.open(run[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
            code = main(run["argv"])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    children.append(pid)
print(json.dumps([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]))
"""


def run_forked_commands(
    runs: Sequence[tuple[Sequence[str], Path]], env: Mapping[str, str], timeout: float = 600
) -> list[subprocess.CompletedProcess]:
    """Run ``nba-pipeline ARGV`` in each folder, all at once, each in a forked process.

    ``runs`` holds (arguments after ``nba-pipeline``, working folder) pairs; the result of
    each has its exit code, stdout and stderr, in the same order.
    """
    spec = []
    for index, (argv, cwd) in enumerate(runs):
        logs = {name: str(Path(cwd) / f".forked-{index}.{name}") for name in ("stdout", "stderr")}
        spec.append({"argv": [str(arg) for arg in argv], "cwd": str(cwd), **logs})
    launched = subprocess.run(
        [sys.executable, "-c", FORKING_LAUNCHER],
        input=json.dumps(spec),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    codes = json.loads(launched.stdout.strip().splitlines()[-1])
    results = []
    for run, code in zip(spec, codes, strict=True):
        stdout, stderr = (
            Path(run[name]).read_text(encoding="utf-8") for name in ("stdout", "stderr")
        )
        results.append(subprocess.CompletedProcess(run["argv"], code, stdout, stderr))
    return results


@pytest.fixture(scope="session")
def forked_cli() -> Callable[..., list[subprocess.CompletedProcess]]:
    """:func:`run_forked_commands`, for tests and fixtures of any scope."""
    return run_forked_commands


# --------------------------------------------------------------------------------------
# Hypothesis profiles: "ci" (the default) is deterministic and bounded, so every run of the
# suite tries the same examples; HYPOTHESIS_PROFILE=dev searches longer with fresh examples.
# --------------------------------------------------------------------------------------

from hypothesis import HealthCheck, settings  # noqa: E402

HYPOTHESIS_PROFILE_ENV = "HYPOTHESIS_PROFILE"

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=100,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=2000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get(HYPOTHESIS_PROFILE_ENV, "ci"))
