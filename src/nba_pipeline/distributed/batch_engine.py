"""Batch mode on a Dask cluster: partitioned input in, partitioned Parquet features out.

The result equals single-machine batch mode on the files concatenated in sorted path order
(same feature matrix, quarantine, state and ridge model), while every partition is read,
cleaned, derived, fitted and transformed in parallel by the same operators
(:mod:`~nba_pipeline.transform`).  The work runs in four ordered steps:

1. **Read and derive** each partition (a Dask DataFrame built with ``dask.dataframe.from_map``
   over the project's own readers; every raw column a string), with an empty rolling
   history.  Each partition returns its rows, quarantine counts and, per team, its last
   ``rolling_window`` training salaries.
2. **Carry the rolling state**: the driver folds those tails in partition order into the
   history every partition starts with (a scan over a few numbers per team); each partition
   then recomputes its two rolling-salary columns from that history with
   :class:`~nba_pipeline.features.RollingSalary`, exactly as a chunk of the streaming mode
   does, and fits its own :class:`~nba_pipeline.fit_state.FitAccumulator`.
3. **Fit the state**: the accumulators are merged on the cluster, neighbours first, in
   partition order (:mod:`.merging`); the IQR quartiles come from the partitions' training
   values of the six outlier features in one sketch update, as in batch mode.
4. **Transform and write**: every partition is transformed with the one fitted state and
   written to ``features.parquet/part-NNNNN.parquet`` under the output directory; the
   training and held-out rows come back in partition order to fit the ridge model on the
   driver, single-process, as batch mode fits it.

Dask is imported here only; the default local engine never imports this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import operator
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import PipelineConfig
from ..errors import InputChangedError, InputDataError, PipelineError
from ..features import NUMERIC_FEATURES, OUTLIER_FEATURES, RollingSalary
from ..fit_state import FitAccumulator, FittedState
from ..ingestion import InputSource
from ..models import coefficients, fit_batch_model, load_models, score
from ..quality import InputCheck, _refuse_unusable
from ..resources import CpuClock, MemoryWatch
from ..transform import OPERATORS, DerivedChunk, derive_features, transform_features
from ..validation import REQUIRED_COLUMNS
from .cluster import redact_address
from .merging import merge_accumulators, ordered_tree, quartile_sketches
from .partitions import (
    Partition,
    empty_partition,
    fingerprint_file,
    partition_columns,
    read_partition,
    resolve_inputs,
    to_parsed,
)

logger = logging.getLogger(__name__)

FEATURES_DIR = "features.parquet"
CONNECT_TIMEOUT_S = 30
_ROLLING = [
    NUMERIC_FEATURES.index("salary_team_rolling_mean"),
    NUMERIC_FEATURES.index("salary_team_rolling_std"),
]
_OUTLIER_INDICES = [NUMERIC_FEATURES.index(name) for name in OUTLIER_FEATURES]


@dataclass
class DaskBatchResult:
    """The ``batch`` section and what the runner writes besides it."""

    section: dict
    state: FittedState
    quarantine: pd.DataFrame  # file, line, reason, raw
    fingerprint: dict
    features_dir: Path


# --------------------------------------------------------------------------- partition tasks


def _warm_up() -> int:
    """Run on every worker before the work: unpickling it imports this module's stack, and
    the partitions are read by ``dask.dataframe`` tasks."""
    import dask.dataframe  # noqa: F401

    return os.getpid()


def _derive_partition(frame: pd.DataFrame, partition: Partition, config: PipelineConfig):
    """Step 1: parse, clean, split and derive one partition with an empty rolling history."""
    sha256 = fingerprint_file(partition)
    parsed = to_parsed(frame)
    rolling = RollingSalary(config.rolling_window)
    derived = derive_features(parsed, rolling, config.random_seed, config.test_fraction)
    quarantine = derived.quarantine.copy()
    quarantine.insert(0, "file", partition.path)
    derived.quarantine = quarantine
    info = {
        "rows": derived.rows_read,
        "quarantined": len(quarantine),
        "train": int(derived.is_train.sum()),
        "first_reasons": [
            (int(line), f"{reason} (file {partition.path})")
            for line, reason in quarantine[["line", "reason"]].head(3).itertuples(index=False)
        ],
        "tails": rolling.history,
        "sha256": sha256,
        "input_bytes": int(sum(len(record) for record in parsed.records)),
    }
    return derived, info


def _fit_partition(derived: DerivedChunk, history: dict, window: int):
    """Step 2: the rolling columns from the history before this partition, then its stats."""
    features = derived.features
    if history and len(features):
        # A new chunk object: the task that derived it keeps its own result unchanged.
        started = time.perf_counter()
        rolling = RollingSalary(window)
        rolling.history = dict(history)
        mean, std = rolling.apply(features.categorical["team"], features.target, derived.is_train)
        numeric = features.numeric.copy()
        numeric[:, _ROLLING[0]] = mean
        numeric[:, _ROLLING[1]] = std
        timings = dict(derived.timings)
        timings["feature_engineering_s"] += time.perf_counter() - started
        features = dataclasses.replace(features, numeric=numeric)
        derived = dataclasses.replace(derived, features=features, timings=timings)
    accumulator = FitAccumulator()
    accumulator.update(features, derived.is_train)
    outliers = features.numeric[derived.is_train][:, _OUTLIER_INDICES]
    return derived, accumulator, outliers


def _transform_partition(derived: DerivedChunk, state: FittedState, path: str, source: str):
    """Step 4: transform with the fitted state, write the part file, return the model rows."""
    transformed = transform_features(derived, state)
    started = time.perf_counter()
    frame = pd.DataFrame(transformed.X, columns=transformed.feature_names)
    frame.insert(0, "line", transformed.line_numbers)
    frame.insert(0, "file", pd.array([source] * len(frame), dtype="string"))
    frame["salary"] = transformed.y
    frame["is_train"] = transformed.is_train
    temporary = f"{path}.tmp"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), temporary)
    os.replace(temporary, path)
    write_s = time.perf_counter() - started
    return {
        "path": path,
        "quarantine": transformed.quarantine,
        "rows_processed": len(transformed.X),
        "timings": transformed.timings,
        "write_s": write_s,
    }


# --------------------------------------------------------------------------- the driver


def run_dask_batch(
    pattern: str | Path, config: PipelineConfig, output_dir: str | Path
) -> DaskBatchResult:
    """Batch mode over the files ``pattern`` matches, on a Dask cluster (see the module)."""
    load_models()  # the model is fitted here, in the client, after the clock starts
    partitions = resolve_inputs(pattern, config.encoding)
    header = _checked_header(partitions)
    features_dir = _features_dir(Path(output_dir))
    watch, clock = MemoryWatch(config.max_memory_mb, armed=False), CpuClock()
    connecting = time.perf_counter()
    with _client(config) as (client, cluster_info):
        import dask.dataframe as dd

        # Workers import the pipeline before the clock starts, as the local engine's
        # measured worker is forked from a process that has already imported it.
        client.run(_warm_up)
        # Latency starts once the cluster is up, as batch latency starts with the read.
        started = time.perf_counter()
        cluster_info["cluster_start_s"] = started - connecting

        frames = dd.from_map(
            read_partition,
            partitions,
            args=(header,),
            meta=empty_partition(header),
            enforce_metadata=False,
            label="read-partition",
        )
        frame_futures = client.compute(frames.to_delayed())
        derived = [
            client.submit(_derive_partition, frame, part, config, pure=False)
            for frame, part in zip(frame_futures, partitions, strict=True)
        ]
        infos = client.gather([client.submit(operator.itemgetter(1), d) for d in derived])
        read_s = time.perf_counter() - started
        check = _check_counts(str(pattern), infos, config)

        fit_started = time.perf_counter()
        histories = _histories([info["tails"] for info in infos], config.rolling_window)
        fitted = [
            client.submit(
                _fit_partition, client.submit(operator.itemgetter(0), d), history,
                config.rolling_window, pure=False,
            )
            for d, history in zip(derived, histories, strict=True)
        ]  # fmt: skip
        del derived, frame_futures
        accumulators = [client.submit(operator.itemgetter(1), f) for f in fitted]
        merged = ordered_tree(
            accumulators, lambda a, b: client.submit(merge_accumulators, a, b), FitAccumulator
        )
        accumulator = merged.result() if hasattr(merged, "result") else merged
        outliers = client.gather([client.submit(operator.itemgetter(2), f) for f in fitted])
        accumulator.quartiles = quartile_sketches(outliers)
        state = accumulator.finalize(config.correlation_threshold)
        fit_s = time.perf_counter() - fit_started
        watch.checkpoint("fit_state")

        shared_state = client.scatter(state, broadcast=True)
        parts = [
            client.submit(
                _transform_partition, client.submit(operator.itemgetter(0), f), shared_state,
                str(features_dir / f"part-{part.index:05d}.parquet"), part.path, pure=False,
            )
            for f, part in zip(fitted, partitions, strict=True)
        ]  # fmt: skip
        del fitted, accumulators
        results = client.gather(parts)
        latency_s = time.perf_counter() - started
        watch.checkpoint("transform")
        try:
            _verify_unchanged(client, partitions, infos)
        except InputChangedError:
            _features_dir(Path(output_dir))  # no feature part of a mixed input stays
            raise

    model_started = time.perf_counter()
    model_section, training_s = _fit_model(results, state, config)
    read_back_s = time.perf_counter() - model_started - training_s
    watch.checkpoint("model")
    rows = sum(info["rows"] for info in infos)
    timings = {name: sum(r["timings"][name] for r in results) for name in OPERATORS}
    quarantine = _concat_quarantine([r["quarantine"] for r in results])
    fingerprint = _fingerprint(str(pattern), partitions, infos, header)
    section = {
        "latency_s": latency_s,
        "throughput_rows_s": rows / latency_s,
        "rows": rows,
        "rows_processed": sum(r["rows_processed"] for r in results),
        "rows_quarantined": int(len(quarantine)),
        "read_s": read_s,
        "fit_state_s": fit_s,
        "operator_profile_s": timings,
        "training_time_s": training_s,
        "memory": {
            "budget_mb": config.max_memory_mb,
            "peak_rss_mb": watch.peak_mb,
            "over_budget": watch.exceeded,
            "measurement": "RSS of the driver process (psutil) after each step; the Dask "
            "workers' memory is managed by Dask",
            "enforcement": "measured only",
        },
        "compute": {
            "cap": config.max_compute_units,
            "mechanism": "none (Dask engine)",
            **clock.utilization(),
        },  # fmt: skip
        "model": model_section,
        "features": state.summary(),
        "engine": {
            "name": "dask",
            **cluster_info,
            "partitions": len(partitions),
            "input": str(pattern),
            "files": [part.path for part in partitions],
            "features_path": f"{FEATURES_DIR}/part-NNNNN.parquet",
            "operator_profile_note": "operator times are summed over partitions (task time "
            "on the workers), so they can exceed the wall-clock latency",
            "read_s_note": "read_s covers reading and deriving every partition (step 1)",
            "write_s": sum(r["write_s"] for r in results),
            "model_rows_read_back_s": read_back_s,
            "rows_train": check.train,
            "rows_held_out": check.held_out,
        },
    }
    logger.info(
        "dask batch: %d rows in %d partitions, %.3f s preprocessing, r2 %s",
        rows,
        len(partitions),
        latency_s,
        model_section["r2"],
    )
    return DaskBatchResult(section, state, quarantine, fingerprint, features_dir)


@contextlib.contextmanager
def _client(config: PipelineConfig):
    """A client of ``config.scheduler`` when one is set, else of a local process cluster."""
    from dask.distributed import Client, LocalCluster

    # Dask's own lifecycle messages (workers starting and closing) are debug detail here.
    dask_logger = logging.getLogger("distributed")
    level = dask_logger.level
    if not logger.isEnabledFor(logging.DEBUG):
        dask_logger.setLevel(logging.WARNING)
    try:
        with _connect(config, Client, LocalCluster) as connected:
            yield connected
    finally:
        dask_logger.setLevel(level)


@contextlib.contextmanager
def _connect(config: PipelineConfig, Client, LocalCluster):  # noqa: N803 (the Dask classes)
    address = getattr(config, "scheduler", None)
    if address:
        shown = redact_address(address)
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise PipelineError(
                f"cannot reach the Dask scheduler at {shown} within {CONNECT_TIMEOUT_S} s "
                f"({type(exc).__name__}); start it (dask scheduler) or fix --scheduler"
            ) from None
        with client:
            yield client, {"scheduler": shown, "cluster": "external scheduler"}
        return
    with warnings.catch_warnings():
        # The dashboard is off; the scheduler's small HTTP endpoint moves to a free port
        # when 8787 is taken, which is no news to report.
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = LocalCluster(
            n_workers=config.n_jobs,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.WARNING,
        )
    with cluster, Client(cluster) as client:
        description = f"LocalCluster: {config.n_jobs} worker process(es), 1 thread each"
        yield client, {"scheduler": None, "cluster": description}


def _verify_unchanged(client, partitions: list[Partition], infos: list[dict]) -> None:
    """Every file still has the SHA-256 it had when it was read, as the other modes check
    their one input before writing anything."""
    digests = client.gather(client.map(fingerprint_file, partitions, pure=False))
    for part, info, now in zip(partitions, infos, digests, strict=True):
        if now != info["sha256"]:
            raise InputChangedError(
                f"input file {part.path} changed during the run (SHA-256 {info['sha256'][:12]}"
                f"... when read, {now[:12]}... at the end), so the results would mix two "
                "versions of the data and are not written; rerun once it is no longer written"
            )


def _checked_header(partitions: list[Partition]) -> list[str]:
    """The first file's columns, which must include every required column."""
    header = partition_columns(partitions[0])
    absent = [name for name in REQUIRED_COLUMNS if name not in header]
    if absent:
        raise InputDataError(
            f"input {partitions[0].path} lacks required column(s) "
            f"{', '.join(map(repr, absent))}; its header has {', '.join(header)}"
        )
    return header


def _features_dir(output_dir: Path) -> Path:
    """``features.parquet`` under the output directory, emptied of an earlier run's parts."""
    folder = output_dir / FEATURES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("part-*.parquet*"):
        stale.unlink()
    return folder


def _check_counts(name: str, infos: list[dict], config: PipelineConfig) -> InputCheck:
    """The checks the other modes make before any work: rows, quarantine share, split."""
    rows = sum(info["rows"] for info in infos)
    quarantined = sum(info["quarantined"] for info in infos)
    train = sum(info["train"] for info in infos)
    reasons = [reason for info in infos for reason in info["first_reasons"]][:3]
    check = InputCheck(
        source=InputSource(name=name),
        rows=rows,
        quarantined=quarantined,
        train=train,
        held_out=rows - quarantined - train,
        first_reasons=reasons,
        extra_columns=[],
    )
    _refuse_unusable(check, config.max_quarantine_ratio)
    if quarantined:
        logger.warning(
            "input %s: %d of %d rows quarantined, within max_quarantine_ratio %g; "
            "reports/quarantine.csv lists them all",
            name,
            quarantined,
            rows,
            config.max_quarantine_ratio,
        )
    return check


def _histories(tails: list[dict], window: int) -> list[dict]:
    """The rolling history each partition starts with: the tails of the ones before it."""
    history: dict[str, list[float]] = {}
    starts = []
    for tail in tails:
        starts.append(dict(history))
        for team, salaries in tail.items():
            history[team] = (list(history.get(team, ())) + list(salaries))[-window:]
    return starts


def _fit_model(results: list[dict], state: FittedState, config: PipelineConfig):
    """Ridge on every training row in input order, scored on the held-out rows.

    The rows are read back from the written parts (shared storage is a requirement of the
    engine anyway), which is cheaper than shipping the matrix through the scheduler.
    """
    names = state.feature_names
    X_train, y_train, X_test, y_test = [], [], [], []
    for result in results:
        table = pq.read_table(result["path"], columns=[*names, "salary", "is_train"])
        X = np.column_stack([table.column(name).to_numpy() for name in names])
        y = table.column("salary").to_numpy()
        train = table.column("is_train").to_numpy(zero_copy_only=False)
        X_train.append(X[train])
        y_train.append(y[train])
        X_test.append(X[~train])
        y_test.append(y[~train])
        del table, X
    width = len(names)
    X_train, X_test = _stack(X_train, width), _stack(X_test, width)
    y_train, y_test = np.concatenate(y_train), np.concatenate(y_test)
    model, training_s = fit_batch_model(X_train, y_train, config.random_seed)
    predictions = model.predict(X_test)
    section = {
        "kind": "Ridge(alpha=1.0)",
        **score(y_test, predictions),
        "training_time_s": training_s,
        "n_train": int(len(y_train)),
        "coefficients": coefficients(model, state.feature_names),
    }
    return section, training_s


def _stack(parts: list[np.ndarray], width: int) -> np.ndarray:
    parts = [part for part in parts if len(part)]
    return np.vstack(parts) if parts else np.empty((0, width))


def _concat_quarantine(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [part for part in parts if not part.empty]
    if not parts:
        return pd.DataFrame(columns=["file", "line", "reason", "raw"])
    return pd.concat(parts, ignore_index=True)


def _fingerprint(name: str, partitions, infos, header) -> dict:
    """The dataset fingerprint of a partitioned input: the SHA-256 of the files' digests in
    order, the total record count, and each file's own digest and count."""
    import hashlib
    from datetime import UTC, datetime

    combined = hashlib.sha256()
    for info in infos:
        combined.update(bytes.fromhex(info["sha256"]))
    return {
        "sha256": combined.hexdigest(),
        "row_count": sum(info["rows"] for info in infos),
        "column_count": len(header),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": name,
        "files": [
            {"path": part.path, "sha256": info["sha256"], "row_count": info["rows"]}
            for part, info in zip(partitions, infos, strict=True)
        ],
    }
