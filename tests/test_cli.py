"""The command line, run as real subprocesses: ``nba-pipeline`` and ``python run_pipeline.py``.

Errors a user can fix end with one line on stderr and the exit code of their kind (2 for a
configuration problem, 3 for input data) and no traceback unless ``--verbose``; settings
layer as defaults, then template or profile, then the flags actually typed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nba_pipeline.config import PipelineConfig
from nba_pipeline.synth import sample_dataset_path

REPO = Path(__file__).resolve().parents[1]
EDGE_TEMPLATE = REPO / "configs" / "pipeline.edge.template.json"
RUN_PIPELINE = REPO / "run_pipeline.py"
TIMEOUT_S = 300

_SCRIPT = Path(sys.executable).with_name("nba-pipeline")
NBA_PIPELINE = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "nba_pipeline.cli"]
ENTRY_POINTS = {
    "nba-pipeline run": [*NBA_PIPELINE, "run"],
    "python -m nba_pipeline.cli run": [sys.executable, "-m", "nba_pipeline.cli", "run"],
    "python run_pipeline.py": [sys.executable, str(RUN_PIPELINE)],
}

# A full run kept small: two repetitions and a 2 x 1 x 2 sweep on the packaged sample.
SMALL_TEMPLATE = {
    "benchmark_runs": 2,
    "max_compute_units": 1.0,
    "sweep_chunk_sizes": [64, 128],
    "sweep_memory_limits_mb": [4096],
    "sweep_compute_limits": [0.5, 1.0],
    "data_size_fractions": [0.5, 1.0],
}


def _env() -> dict[str, str]:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    env.pop("NBA_PIPELINE_REAL_DATA", None)
    return env


def run(command: list[str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def run_ok(command: list[str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = run(command, *args, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return done


def read_report(out: Path) -> dict:
    return json.loads((out / "reports" / "pipeline_report.json").read_text(encoding="utf-8"))


def write_json(path: Path, values) -> Path:
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------
# Errors: one line, the right exit code, no traceback
# --------------------------------------------------------------------------------------


def _bad_json(tmp: Path) -> list[str]:
    path = tmp / "broken.json"
    path.write_text('{\n  "chunk_size": 64\n  "batch_size": 96\n}\n', encoding="utf-8")
    return ["--config", str(path)]


# name -> (arguments given a scratch folder, exit code, texts the stderr line must contain)
ERROR_CASES = {
    "unknown key": (
        lambda tmp: ["--config", str(write_json(tmp / "typo.json", {"chunk_sise": 64}))],
        2,
        ["typo.json", "unknown key(s) 'chunk_sise'", "accepted keys are"],
    ),
    "chunk_size 0": (lambda tmp: ["--chunk-size", "0"], 2, ["chunk_size", ">= 1", "got 0"]),
    "batch_size -1": (lambda tmp: ["--batch-size=-1"], 2, ["batch_size", ">= 1", "got -1"]),
    "max_compute_units 0": (
        lambda tmp: ["--max-compute-units", "0"],
        2,
        ["max_compute_units", "(0, 1]", "got 0.0"],
    ),
    "max_compute_units 1.5": (
        lambda tmp: ["--max-compute-units", "1.5"],
        2,
        ["max_compute_units", "(0, 1]", "got 1.5"],
    ),
    "max_memory_mb 0": (lambda tmp: ["--max-memory-mb", "0"], 2, ["max_memory_mb", "> 0"]),
    "template chunk_size 0": (
        lambda tmp: ["--config", str(write_json(tmp / "zero.json", {"chunk_size": 0}))],
        2,
        ["chunk_size", ">= 1"],
    ),
    "spill_to_disk as string": (
        lambda tmp: ["--config", str(write_json(tmp / "s.json", {"spill_to_disk": "true"}))],
        2,
        ["spill_to_disk", "true or false", "'true'"],
    ),
    "adaptive_chunk_resize as string": (
        lambda tmp: [
            "--config",
            str(write_json(tmp / "a.json", {"adaptive_chunk_resize": "false"})),
        ],
        2,
        ["adaptive_chunk_resize", "true or false", "'false'"],
    ),
    "unreadable JSON": (_bad_json, 2, ["broken.json", "not valid JSON", "line 3"]),
    "missing template": (
        lambda tmp: ["--config", str(tmp / "absent.template.json")],
        2,
        ["absent.template.json", "does not exist"],
    ),
    "missing input": (
        lambda tmp: ["--input", str(tmp / "no_such_players.csv")],
        3,
        ["no_such_players.csv", "does not exist"],
    ),
}
# Every case runs through nba-pipeline; these also through run_pipeline.py (same main()).
RUN_PIPELINE_CASES = ("unknown key", "chunk_size 0", "spill_to_disk as string", "missing input")
ERROR_RUNS = [("nba-pipeline run", name) for name in ERROR_CASES] + [
    ("python run_pipeline.py", name) for name in RUN_PIPELINE_CASES
]
# Other failing runs, started in the same pool: name -> arguments given a scratch folder.
OTHER_FAILING_RUNS = {
    "verbose": lambda tmp: ["--chunk-size", "0", "--verbose"],
    "nan in template": lambda tmp: ["--config", str(_nan_template(tmp))],
    "spill-to-disk maybe": lambda tmp: ["--spill-to-disk", "maybe"],
    "profile tiny": lambda tmp: ["--profile", "tiny"],
}


def _nan_template(tmp: Path) -> Path:
    # Python's json reads NaN, so this template loads and then reaches validation.
    path = tmp / "nan.json"
    path.write_text('{"chunk_size": NaN}', encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def failing_runs(tmp_path_factory) -> dict:
    """Every failing run of this module, started together: each spends most of its time
    importing the package, so running them side by side keeps the suite fast."""
    commands = {
        (entry, name): (ENTRY_POINTS[entry], ERROR_CASES[name][0]) for entry, name in ERROR_RUNS
    }
    for name, make_args in OTHER_FAILING_RUNS.items():
        commands["nba-pipeline run", name] = (ENTRY_POINTS["nba-pipeline run"], make_args)
    started = {}
    for key, (command, make_args) in commands.items():
        tmp = tmp_path_factory.mktemp("failing")
        args = [*make_args(tmp), "--output-dir", str(tmp / "out")]
        process = subprocess.Popen(
            [*command, *args],
            cwd=tmp,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started[key] = (process, tmp)
    results = {}
    for key, (process, tmp) in started.items():
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        results[key] = (process.returncode, stdout, stderr, tmp)
    return results


@pytest.mark.parametrize(("entry", "name"), ERROR_RUNS, ids=[f"{e}: {n}" for e, n in ERROR_RUNS])
def test_error_exits_with_one_line_and_no_traceback(failing_runs, entry, name):
    returncode, _, stderr, tmp = failing_runs[entry, name]
    _, expected_code, expected_texts = ERROR_CASES[name]
    assert returncode == expected_code, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("nba-pipeline: error: ")
    for text in expected_texts:
        assert text in lines[0]
    # The run stopped before any work: nothing was written.
    assert not (tmp / "out").exists()


def test_nan_in_template_is_a_config_error(failing_runs):
    returncode, _, stderr, _ = failing_runs["nba-pipeline run", "nan in template"]
    assert "Traceback" not in stderr
    assert returncode == 2
    assert "chunk_size" in stderr


@pytest.mark.parametrize(
    ("name", "flag"), [("spill-to-disk maybe", "--spill-to-disk"), ("profile tiny", "--profile")]
)
def test_bad_flag_value_is_a_usage_error(failing_runs, name, flag):
    returncode, _, stderr, _ = failing_runs["nba-pipeline run", name]
    assert returncode == 2
    assert "Traceback" not in stderr
    assert flag in stderr.strip().splitlines()[-1]


def test_verbose_shows_the_traceback(failing_runs):
    returncode, _, stderr, _ = failing_runs["nba-pipeline run", "verbose"]
    assert returncode == 2
    assert "Traceback (most recent call last)" in stderr
    assert "ConfigError: chunk_size must be an integer >= 1, got 0" in stderr
    assert stderr.strip().splitlines()[-1].startswith("nba-pipeline: error: chunk_size")


HEAVY_LIBRARIES = ("pandas", "scipy", "sklearn", "matplotlib", "dask")


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["run", "--chunk-size", "0"],
        ["run", "--config", "missing.json"],
        ["verify", "missing-run"],
        ["clean", "missing-run", "--intermediate"],
    ],
    ids=" ".join,
)
def test_help_errors_and_inspection_answer_without_the_heavy_libraries(tmp_path, argv):
    # Each of these loads in a fraction of the time a run's libraries take to import.
    code = (
        "import sys\n"
        "from nba_pipeline.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        f"loaded = sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY_LIBRARIES)!r})\n"
        "print('loaded:', loaded, 'exit:', code, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert done.stderr.strip().splitlines()[-1].startswith("loaded: [] exit:"), done.stderr


# --------------------------------------------------------------------------------------
# Layering: defaults, then template or profile, then the flags given
# --------------------------------------------------------------------------------------


def test_flags_override_the_template_and_the_rest_is_kept(tmp_path):
    run_ok(
        ENTRY_POINTS["nba-pipeline run"],
        *("--config", str(EDGE_TEMPLATE), "--mode", "batch", "--output-dir", "out"),
        *("--chunk-size", "32", "--random-seed", "7", "--spill-to-disk", "false"),
        "--disable-adaptive-chunk-resize",
        cwd=tmp_path,
    )
    report = read_report(tmp_path / "out")
    reproducibility = report["reproducibility"]
    config = reproducibility["config"]
    # Given on the command line.
    assert config["chunk_size"] == 32
    assert config["random_seed"] == 7 == reproducibility["random_seed"]
    assert config["spill_to_disk"] is False
    assert config["adaptive_chunk_resize"] is False
    # Where a run was written is not part of how it ran, so the manifest leaves it out.
    assert "output_dir" not in config
    assert report["run"]["output_dir"] == "out"
    # Not given: the template's values survive.
    assert config["batch_size"] == 96
    assert config["n_jobs"] == 1
    assert config["max_memory_mb"] == 256.0
    assert config["max_compute_units"] == 0.4
    assert config["benchmark_runs"] == 3
    assert config["max_chunk_retries"] == 3
    # Not in the template either: the defaults.
    assert config["sweep_chunk_sizes"] == list(PipelineConfig().sweep_chunk_sizes)


@pytest.fixture(scope="module")
def edge_batch_runs(tmp_path_factory) -> dict[str, Path]:
    """``--profile edge`` and ``--config <edge template>`` in batch mode, each in its own
    folder and without ``--output-dir``, so both write to the template's artifacts_edge."""
    outputs = {}
    for name, args in {
        "profile": ["--profile", "edge"],
        "config": ["--config", str(EDGE_TEMPLATE)],
    }.items():
        cwd = tmp_path_factory.mktemp(name)
        run_ok(ENTRY_POINTS["nba-pipeline run"], *args, "--mode", "batch", cwd=cwd)
        outputs[name] = cwd / "artifacts_edge"
    return outputs


def test_profile_and_template_give_the_same_config(edge_batch_runs):
    by_profile = read_report(edge_batch_runs["profile"])
    by_template = read_report(edge_batch_runs["config"])
    config = by_profile["reproducibility"]["config"]
    assert config == by_template["reproducibility"]["config"]
    expected = PipelineConfig.from_profile("edge").to_dict()
    assert by_profile["run"]["output_dir"] == expected.pop("output_dir") == "artifacts_edge"
    assert expected.pop("scheduler") is None  # where runs go is not in the manifest either
    assert config == expected
    # Same config, same data, same seed: the same model.
    assert by_profile["batch"]["model"]["r2"] == by_template["batch"]["model"]["r2"]


def test_batch_mode_writes_a_batch_report_without_streaming(edge_batch_runs):
    out = edge_batch_runs["profile"]
    report = read_report(out)
    assert "batch" in report
    assert "streaming" not in report
    assert {"dataset_fingerprint", "reproducibility", "scaling"} <= set(report)
    assert isinstance(report["batch"]["model"]["r2"], float)
    manifest = json.loads((out / "metadata" / "run_manifest.json").read_text(encoding="utf-8"))
    assert manifest == report["reproducibility"]
    # Spilling is on in the edge profile but only streaming spills.
    assert not (out / "reports" / "streaming_chunks.jsonl").exists()
    assert not (out / "intermediate").exists()


def test_run_without_input_uses_the_packaged_sample(edge_batch_runs):
    sample = sample_dataset_path()
    fingerprint = read_report(edge_batch_runs["config"])["dataset_fingerprint"]
    assert fingerprint["row_count"] == 400
    assert fingerprint["column_count"] == 15
    assert fingerprint["sha256"] == hashlib.sha256(sample.read_bytes()).hexdigest()
    assert Path(fingerprint["source"]).resolve() == sample.resolve()


# --------------------------------------------------------------------------------------
# Streaming mode and spilling
# --------------------------------------------------------------------------------------


def test_streaming_mode_with_spill_writes_chunks_and_spill_files(tmp_path):
    out = tmp_path / "out"
    (out / "intermediate").mkdir(parents=True)
    (out / "intermediate" / "stream_chunk_99_X.csv").write_text("stale\n", encoding="utf-8")
    run_ok(
        ENTRY_POINTS["python run_pipeline.py"],
        *("--mode", "streaming", "--spill-to-disk", "--output-dir", "out"),
        cwd=tmp_path,
    )
    report = read_report(out)
    assert "streaming" in report
    assert "batch" not in report
    assert report["reproducibility"]["config"]["spill_to_disk"] is True

    lines = (out / "reports" / "streaming_chunks.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len(report["streaming"]["chunk_metrics"])
    assert sum(record["rows"] for record in records) == 400
    assert all('"memory_exceeded": ' in line for line in lines)
    assert (out / "benchmarks" / "streaming_chunks.csv").is_file()
    assert (out / "profiles" / "operator_profile.csv").is_file()

    # Exactly one X and one y per chunk; the stale file of an earlier run is gone.
    spilled = sorted(path.name for path in (out / "intermediate").iterdir())
    expected = sorted(
        f"stream_chunk_{record['chunk_id']}_{kind}.csv" for record in records for kind in "Xy"
    )
    assert spilled == expected
    for record in records:
        y_lines = (out / record["spill_paths"]["y"]).read_text(encoding="utf-8").splitlines()
        assert y_lines[0] == "salary"
        assert len(y_lines) == record["rows"] + 1


def test_streaming_mode_without_spill_writes_no_spill_files(tmp_path):
    run_ok(
        ENTRY_POINTS["nba-pipeline run"],
        *("--profile", "edge", "--mode", "streaming", "--spill-to-disk", "false"),
        *("--output-dir", "out", "--max-compute-units", "1.0"),
        cwd=tmp_path,
    )
    out = tmp_path / "out"
    assert not (out / "intermediate").exists()
    lines = (out / "reports" / "streaming_chunks.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines
    assert all(json.loads(line)["spill_paths"] == {"X": None, "y": None} for line in lines)


# --------------------------------------------------------------------------------------
# synth
# --------------------------------------------------------------------------------------


def test_synth_writes_the_requested_rows_deterministically(tmp_path):
    # Through the console script itself, not python -m.
    for name in ("f.csv", "g.csv"):
        run_ok(
            NBA_PIPELINE, "synth", "--rows", "1000", "--seed", "3", "--output", name, cwd=tmp_path
        )
    run_ok(
        NBA_PIPELINE, "synth", "--rows", "1000", "--seed", "4", "--output", "h.csv", cwd=tmp_path
    )

    first = (tmp_path / "f.csv").read_bytes()
    lines = first.decode("utf-8").splitlines()
    assert len(lines) == 1001
    assert lines[0].startswith("full_name,rating,jersey,team,position")
    assert first == (tmp_path / "g.csv").read_bytes()


# --------------------------------------------------------------------------------------
# One full run on the packaged sample
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    """``--mode all`` with spilling, on a small template, through run_pipeline.py."""
    cwd = tmp_path_factory.mktemp("full")
    template = write_json(cwd / "small.template.json", SMALL_TEMPLATE)
    run_ok(
        ENTRY_POINTS["python run_pipeline.py"],
        *("--config", str(template), "--spill-to-disk", "--output-dir", "out"),
        cwd=cwd,
    )
    return cwd / "out"


def test_full_run_meets_the_artifact_contract(full_run, artifact_contract):
    report = artifact_contract(full_run, spill=True, dataset_rows=400)
    config = report["reproducibility"]["config"]
    assert config["benchmark_runs"] == 2
    assert config["sweep_chunk_sizes"] == [64, 128]
    assert config["spill_to_disk"] is True
    assert len(report["constraint_experiment"]["settings"]) == 4


def test_full_run_passes_the_shared_checker(full_run, check_artifacts_tool):
    check_artifacts_tool(full_run, spill=True, dataset_rows=400)
