"""The Dask batch engine equals single-machine batch mode on the concatenated input.

A synthetic table (``nba-pipeline synth``) is split into CSV files of unequal sizes, one row
of the middle file is made unusable, and the engine runs on a real LocalCluster; local
batch mode runs on the same rows as one file.  Feature matrices, quarantine, fitted state
and ridge scores must agree (floats to 1e-9, everything else exactly).  A Parquet copy of
the files must give the same matrix.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from nba_pipeline import PipelineConfig, PipelineRunner
from nba_pipeline.cli import main
from nba_pipeline.distributed.batch_engine import _histories
from nba_pipeline.distributed.merging import merge_accumulators, ordered_tree
from nba_pipeline.distributed.partitions import resolve_inputs
from nba_pipeline.errors import ConfigError, InputDataError
from nba_pipeline.features import NUMERIC_FEATURES, FeatureChunk
from nba_pipeline.fit_state import FitAccumulator

pytest.importorskip("dask.distributed")

ROWS = 3_000
SIZES = (900, 1_300, 800)  # rows per partition; the middle one holds the bad row
BAD_FILE_LINE = 41  # line of the unusable salary in part-1.csv
CONFIG = dict(max_compute_units=1.0, max_memory_mb=1_000_000.0, isolate_runs=False, n_jobs=2)
TOLERANCE = 1e-9


def _split(tmp: Path) -> tuple[Path, list[Path]]:
    """Synth rows, break one salary, write them whole and as three CSV partitions."""
    whole = tmp / "whole.csv"
    assert main(["synth", "--rows", str(ROWS), "--seed", "11", "--output", str(whole)]) == 0
    header, *body = whole.read_text(encoding="utf-8").splitlines(keepends=True)
    bad_index = SIZES[0] + BAD_FILE_LINE - 2
    fields = body[bad_index].split(",")
    salary = next(i for i, value in enumerate(fields) if value.startswith("$"))
    fields[salary] = "$12x4"
    body[bad_index] = ",".join(fields)
    whole.write_text(header + "".join(body), encoding="utf-8")
    parts, start = [], 0
    for index, size in enumerate(SIZES):
        part = tmp / "parts" / f"part-{index}.csv"
        part.parent.mkdir(exist_ok=True)
        part.write_text(header + "".join(body[start : start + size]), encoding="utf-8")
        parts.append(part)
        start += size
    return whole, parts


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distributed")
    whole, parts = _split(tmp)
    local = PipelineRunner(PipelineConfig(**CONFIG), output_dir=str(tmp / "local"))
    local.run_batch(whole)
    local.write_artifacts()
    dask = PipelineRunner(PipelineConfig(**CONFIG, engine="dask"), output_dir=str(tmp / "dask"))
    dask.run_batch(str(tmp / "parts" / "part-*.csv"))
    dask.write_artifacts()
    return {"tmp": tmp, "parts": parts, "local": local, "dask": dask}


def _offsets(parts: list[Path]) -> dict[str, int]:
    """Line of a partition's row in the concatenated file = its own line + offset."""
    offsets, total = {}, 0
    for part in parts:
        offsets[str(part)] = total
        total += len(part.read_text(encoding="utf-8").splitlines()) - 1
    return offsets


def _dask_matrix(out: Path, parts: list[Path]) -> pd.DataFrame:
    frame = pd.read_parquet(out / "features.parquet")
    frame.index = pd.Index(
        frame["line"] + frame["file"].astype(str).map(_offsets(parts)), name="line"
    )
    return frame.drop(columns=["file", "line"])


def _local_matrix(runner: PipelineRunner) -> pd.DataFrame:
    transformed = runner._batch.transformed
    frame = transformed.frame()
    frame["salary"] = transformed.y
    frame["is_train"] = transformed.is_train
    return frame


def test_feature_matrix_equals_local_batch(runs):
    local = _local_matrix(runs["local"])
    dask = _dask_matrix(runs["dask"].output_dir, runs["parts"])
    assert list(dask.columns) == list(local.columns)
    assert dask.index.equals(local.index)
    assert (dask["is_train"] == local["is_train"]).all()
    numeric = [name for name in local.columns if name != "is_train"]
    np.testing.assert_allclose(
        dask[numeric].to_numpy(), local[numeric].to_numpy(), rtol=TOLERANCE, atol=TOLERANCE
    )
    parts = sorted((runs["dask"].output_dir / "features.parquet").iterdir())
    assert [part.name for part in parts] == [f"part-{i:05d}.parquet" for i in range(3)]


def test_state_and_model_equal_local_batch(runs):
    local, dask = runs["local"].report["batch"], runs["dask"].report["batch"]
    for key in ("rows", "rows_processed", "rows_quarantined"):
        assert dask[key] == local[key]
    for key in ("selected_numeric", "categorical", "feature_names"):
        assert dask["features"][key] == local["features"][key]
    dropped = local["features"]["dropped_numeric"]
    assert len(dask["features"]["dropped_numeric"]) == len(dropped)
    for ours, theirs in zip(dask["features"]["dropped_numeric"], dropped, strict=True):
        if "correlation" in theirs:
            assert ours.pop("correlation") == pytest.approx(theirs["correlation"], abs=TOLERANCE)
        assert ours == {key: value for key, value in theirs.items() if key != "correlation"}
    assert dask["features"]["iqr_bounds"] == local["features"]["iqr_bounds"]
    means = dask["features"]["imputation"]["numeric_mean"]
    for name, value in local["features"]["imputation"]["numeric_mean"].items():
        assert means[name] == pytest.approx(value, rel=TOLERANCE, abs=TOLERANCE)
    assert dask["model"]["n_train"] == local["model"]["n_train"]
    assert dask["model"]["n_test"] == local["model"]["n_test"]
    for key in ("r2", "rmse", "mae"):
        assert dask["model"][key] == pytest.approx(local["model"][key], rel=TOLERANCE)
    assert dask["engine"]["partitions"] == 3


def test_bad_row_is_quarantined_with_its_file_and_line(runs):
    out = runs["dask"].output_dir
    table = pd.read_csv(out / "reports" / "quarantine.csv")
    assert list(table.columns) == ["file", "line", "reason", "raw"]
    assert table[["file", "line"]].values.tolist() == [[str(runs["parts"][1]), BAD_FILE_LINE]]
    assert "salary" in table["reason"].iloc[0] and "$12x4" in table["raw"].iloc[0]

    local = pd.read_csv(runs["local"].output_dir / "reports" / "quarantine.csv")
    assert local["line"].tolist() == [SIZES[0] + BAD_FILE_LINE]
    assert local[["reason", "raw"]].values.tolist() == table[["reason", "raw"]].values.tolist()
    report = json.loads((out / "reports" / "pipeline_report.json").read_text())
    assert report["batch"]["rows_quarantined"] == 1
    assert report["dataset_fingerprint"]["row_count"] == ROWS
    assert len(report["dataset_fingerprint"]["files"]) == 3


def test_parquet_partitions_give_the_same_matrix(runs, tmp_path):
    folder = tmp_path / "parquet"
    folder.mkdir()
    for part in runs["parts"]:
        options = pa_csv.ConvertOptions(
            column_types=dict.fromkeys(pa_csv.read_csv(part).column_names, "string"),
            strings_can_be_null=False,
        )
        table = pa_csv.read_csv(part, convert_options=options)
        pq.write_table(table, folder / (part.stem + ".parquet"))
    runner = PipelineRunner(
        PipelineConfig(**CONFIG, engine="dask"), output_dir=str(tmp_path / "out")
    )
    runner.run_batch(str(folder))
    runner.write_artifacts()
    parquet = pd.read_parquet(tmp_path / "out" / "features.parquet")
    csv = pd.read_parquet(runs["dask"].output_dir / "features.parquet")
    assert parquet["line"].tolist() == csv["line"].tolist()
    features = [name for name in csv.columns if name not in ("file", "line")]
    pd.testing.assert_frame_equal(parquet[features], csv[features], rtol=TOLERANCE)
    quarantine = pd.read_csv(tmp_path / "out" / "reports" / "quarantine.csv")
    assert quarantine["line"].tolist() == [BAD_FILE_LINE]
    assert quarantine["file"].tolist() == [str(folder / "part-1.parquet")]


def test_glob_without_match_is_an_input_error(tmp_path, capsys):
    pattern = str(tmp_path / "missing-*.csv")
    code = main(
        ["run", "--mode", "batch", "--engine", "dask", "--input", pattern,
         "--output-dir", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == InputDataError.exit_code == 3
    assert f"--input {pattern!r} matches no input file" in capsys.readouterr().err
    assert not (tmp_path / "out" / "features.parquet").exists()


def test_dask_engine_runs_batch_mode_only(tmp_path, capsys):
    code = main(["run", "--engine", "dask", "--input", str(tmp_path), "--output-dir", "x"])
    assert code == ConfigError.exit_code
    assert "--engine dask runs batch mode only" in capsys.readouterr().err


def test_engine_key_is_validated():
    assert PipelineConfig().engine == "local"
    assert PipelineConfig.from_dict({"engine": "dask"}).engine == "dask"
    with pytest.raises(ConfigError, match="engine must be one of 'local', 'dask', got 'spark'"):
        PipelineConfig(engine="spark")


def test_inputs_are_sorted_and_kinds_not_mixed(tmp_path):
    for name in ("b.csv", "a.csv", "notes.txt"):
        (tmp_path / name).write_text("x\n")
    assert [Path(p.path).name for p in resolve_inputs(tmp_path)] == ["a.csv", "b.csv"]
    (tmp_path / "c.parquet").write_bytes(b"")
    with pytest.raises(InputDataError, match="both CSV and Parquet"):
        resolve_inputs(tmp_path)


def test_rolling_histories_carry_the_last_window_in_order():
    tails = [{"A": [1.0, 2.0]}, {"B": [5.0]}, {"A": [3.0, 4.0]}, {}]
    assert _histories(tails, window=3) == [
        {},
        {"A": [1.0, 2.0]},
        {"A": [1.0, 2.0], "B": [5.0]},
        {"A": [2.0, 3.0, 4.0], "B": [5.0]},
    ]


def _chunk(rng, rows: int) -> tuple[FeatureChunk, np.ndarray]:
    import pyarrow as pa

    numeric = rng.normal(50.0, 10.0, size=(rows, len(NUMERIC_FEATURES)))
    numeric[rng.random(numeric.shape) < 0.1] = np.nan
    labels = np.array(["C", "F", "G"])[rng.integers(0, 3, rows)]
    categorical = {name: pa.array(labels) for name in ("position", "country_group", "team")}
    chunk = FeatureChunk(numeric, categorical, rng.normal(1e7, 3e6, rows), np.arange(rows))
    return chunk, rng.random(rows) > 0.2


@pytest.mark.parametrize("pieces", [1, 2, 5])
def test_merged_accumulators_equal_one_update(pieces):
    rng = np.random.default_rng(3)
    chunk, is_train = _chunk(rng, 500)
    whole = FitAccumulator()
    whole.update(chunk, is_train)
    parts = []
    for rows in np.array_split(np.arange(500), pieces):
        sub = FeatureChunk(
            chunk.numeric[rows],
            {name: values.take(rows) for name, values in chunk.categorical.items()},
            chunk.target[rows],
            rows,
        )
        accumulator = FitAccumulator()
        accumulator.update(sub, is_train[rows])
        parts.append(accumulator)
    merged = ordered_tree(parts, merge_accumulators, FitAccumulator)
    assert merged.n_rows == whole.n_rows
    assert merged.categories == whole.categories
    for name in ("count", "mean", "m2", "pair_n", "target"):
        np.testing.assert_allclose(getattr(merged, name), getattr(whole, name), rtol=1e-10)
    np.testing.assert_allclose(merged._correlation(), whole._correlation(), atol=1e-12)


def test_local_engine_never_imports_dask():
    import subprocess
    import sys

    code = (
        "import sys, nba_pipeline.cli, nba_pipeline.runner, nba_pipeline.worker_warmup; "
        "print(sorted({'dask', 'distributed'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


class _InProcessClient:
    """Just enough of a Dask client to run a map in this process."""

    def map(self, function, items, pure=True):
        return [function(item) for item in items]

    def gather(self, values):
        return values


def test_a_file_changed_during_the_run_is_refused(tmp_path):
    from nba_pipeline.distributed.batch_engine import _verify_unchanged
    from nba_pipeline.distributed.partitions import fingerprint_file
    from nba_pipeline.errors import InputChangedError

    path = tmp_path / "part-0.csv"
    path.write_text("full_name\nA\n", encoding="utf-8")
    partitions = resolve_inputs(path)
    infos = [{"sha256": fingerprint_file(partitions[0])}]
    _verify_unchanged(_InProcessClient(), partitions, infos)
    path.write_text("full_name\nB\n", encoding="utf-8")
    with pytest.raises(InputChangedError, match=f"input file {path} changed during the run"):
        _verify_unchanged(_InProcessClient(), partitions, infos)
