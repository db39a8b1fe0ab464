"""Writing the output directory laid out by the artifact contract.

Every file is written to a temporary name in its final folder and then renamed, so a
crash never leaves a half-written artifact.  JSON uses the standard ``", "`` and ``": "``
separators (JSON lines are one ``json.dumps`` per record), which keeps
``grep -c '"memory_exceeded": true'`` exact.  Non-finite numbers become ``null``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import OutputError
from .resources import pid_alive

logger = logging.getLogger(__name__)

SUBDIRECTORIES = ("reports", "benchmarks", "profiles", "metadata")
CHUNK_CSV_COLUMNS = (
    "chunk_id",
    "rows",
    "rows_processed",
    "rows_quarantined",
    "chunk_size",
    "batch_size",
    "latency_s",
    "throughput_rows_s",
    "memory_before_mb",
    "memory_after_mb",
    "memory_peak_mb",
    "memory_exceeded",
    "retries",
    "cpu_percent",
    "system_memory_percent",
    "model_update_s",
    "throttle_pause_s",
    "input_bytes",
    "estimated_input_bandwidth_mb_s",
)


def prepare_output_dir(output_dir: Path) -> None:
    """Create the layout's folders, failing with a clear message when that is impossible."""
    try:
        for name in SUBDIRECTORIES:
            (output_dir / name).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"output directory {output_dir} cannot be created: {exc.strerror}"
        ) from None
    if not os.access(output_dir, os.W_OK):
        raise OutputError(f"output directory {output_dir} is not writable")


def plain(value):
    """Convert numpy scalars, paths and non-finite floats into JSON-ready values."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def write_text(path: Path, text: str) -> None:
    """Write a file atomically: a temporary sibling, then a rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    logger.debug("wrote %s", path)


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(plain(data), indent=2) + "\n")


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(plain(record)) + "\n" for record in records))


def write_csv(path: Path, rows: list[dict] | pd.DataFrame, columns=None) -> None:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(plain(rows))
    if columns is not None:
        frame = frame[[column for column in columns if column in frame.columns]]
    write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def chunk_tables(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``streaming_chunks.csv`` and ``operator_profile.csv`` from the chunk records."""
    chunks = pd.DataFrame([{key: record[key] for key in CHUNK_CSV_COLUMNS} for record in records])
    profile = pd.DataFrame(
        [
            {
                "chunk_id": record["chunk_id"],
                **record["operator_profile_s"],
                "estimated_input_bandwidth_mb_s": record["estimated_input_bandwidth_mb_s"],
                "input_bytes": record["input_bytes"],
                "rows": record["rows"],
            }
            for record in records
        ]
    )
    return chunks, profile


LOCK_NAME = ".nba-pipeline.lock"


class OutputDirLock:
    """Exclusive hold of an output directory by one live run, re-entrant within it.

    The lock file holds the holder's process id.  A lock left by a process that no longer
    exists (killed, crashed) is taken over; one held by a live process stops the run with a
    message naming it.  Taking the lock also removes temporary files that an interrupted
    run left behind, so only complete artifacts remain.
    """

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / LOCK_NAME
        self._depth = 0

    def __enter__(self) -> OutputDirLock:
        if self._depth == 0:
            prepare_output_dir(self.output_dir)
            self._acquire()
            _remove_stale_temporaries(self.output_dir)
        self._depth += 1
        return self

    def __exit__(self, *exc_info) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.path.unlink(missing_ok=True)

    def _acquire(self) -> None:
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _lock_holder(self.path)
                if holder is not None and pid_alive(holder):
                    raise OutputError(
                        f"output directory {self.output_dir} is in use by another run (pid "
                        f"{holder}); choose another --output-dir or wait for it to finish"
                    ) from None
                logger.warning(
                    "taking over the lock of %s: its holder, process %s, is no longer running "
                    "(an interrupted run)",
                    self.output_dir,
                    holder,
                )
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(descriptor, "w") as handle:
                handle.write(f"{os.getpid()}\n")
            return
        raise OutputError(f"could not lock output directory {self.output_dir}")


def _lock_holder(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _remove_stale_temporaries(output_dir: Path) -> None:
    for stale in output_dir.rglob("*.tmp"):
        if stale.is_file():
            stale.unlink()
            logger.info("removed %s left by an interrupted run", stale)
