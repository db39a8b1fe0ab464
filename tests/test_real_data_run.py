"""Full runs on the real NBA2K table, named only by NBA_PIPELINE_REAL_DATA (never copied).

``nba-pipeline run --profile edge`` and ``python run_pipeline.py --config <edge template>``
run side by side once for the module; every test reads their output directories.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REAL_DATA_ENV = "NBA_PIPELINE_REAL_DATA"
REAL_ROWS = 439
REPO = Path(__file__).resolve().parents[1]
EDGE_TEMPLATE = REPO / "configs" / "pipeline.edge.template.json"
_SCRIPT = Path(sys.executable).with_name("nba-pipeline")
NBA_PIPELINE = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "nba_pipeline.cli"]

pytestmark = pytest.mark.skipif(
    not os.environ.get(REAL_DATA_ENV),
    reason=f"{REAL_DATA_ENV} is not set: tests on the real NBA2K table are skipped",
)


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory) -> dict[str, Path]:
    """Output directories of the two full runs, keyed "cli" and "script"."""
    data = Path(os.environ[REAL_DATA_ENV])
    if not data.is_file():
        pytest.fail(f"{REAL_DATA_ENV}={str(data)!r} does not name a readable file")
    tmp = tmp_path_factory.mktemp("real")
    commands = {
        "cli": [*NBA_PIPELINE, "run", "--profile", "edge"],
        "script": [sys.executable, str(REPO / "run_pipeline.py"), "--config", str(EDGE_TEMPLATE)],
    }
    env = dict(os.environ, MPLBACKEND="Agg")
    started = {
        name: subprocess.Popen(
            [*command, "--input", str(data), "--output-dir", str(tmp / name)],
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, command in commands.items()
    }
    for name, process in started.items():
        _, stderr = process.communicate(timeout=1200)
        assert process.returncode == 0, f"{name} run failed:\n{stderr[-3000:]}"
        assert "Traceback" not in stderr
    return {name: tmp / name for name in commands}


def read_report(out: Path) -> dict:
    return json.loads((out / "reports" / "pipeline_report.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["cli", "script"])
def test_real_run_meets_the_artifact_contract(real_runs, artifact_contract, name):
    report = artifact_contract(real_runs[name], spill=True, dataset_rows=REAL_ROWS)
    assert report["dataset_fingerprint"]["row_count"] == REAL_ROWS
    assert report["dataset_fingerprint"]["column_count"] == 15


@pytest.mark.parametrize("name", ["cli", "script"])
def test_real_run_passes_the_shared_checker(real_runs, check_artifacts_tool, name):
    check_artifacts_tool(real_runs[name], spill=True, dataset_rows=REAL_ROWS)


def test_real_run_chunk_rows_add_up(real_runs):
    lines = (real_runs["cli"] / "reports" / "streaming_chunks.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in lines.splitlines()]
    assert sum(record["rows"] for record in records) == REAL_ROWS
    assert [record["chunk_id"] for record in records] == list(range(1, len(records) + 1))


def test_real_run_model_quality(real_runs):
    report = read_report(real_runs["cli"])
    batch_r2 = report["batch"]["model"]["r2"]
    streaming_r2 = report["streaming"]["model"]["r2"]
    assert batch_r2 >= 0.5
    assert abs(streaming_r2 - batch_r2) <= 0.15


def test_run_pipeline_script_matches_the_console_command(real_runs):
    by_cli = read_report(real_runs["cli"])
    by_script = read_report(real_runs["script"])
    cli_config = by_cli["reproducibility"]["config"]
    script_config = by_script["reproducibility"]["config"]
    assert by_cli["run"]["output_dir"] == str(real_runs["cli"])
    assert by_script["run"]["output_dir"] == str(real_runs["script"])
    assert cli_config == script_config
    assert cli_config["spill_to_disk"] is True
    assert cli_config["max_compute_units"] == 0.4
    assert by_cli["dataset_fingerprint"]["sha256"] == by_script["dataset_fingerprint"]["sha256"]
    # Batch mode is deterministic for one seed and one table.
    assert by_cli["batch"]["model"]["r2"] == by_script["batch"]["model"]["r2"]
