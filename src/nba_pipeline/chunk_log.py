"""Chunk records written to a JSON-lines file as they are made, with running totals.

A long stream has tens of thousands of chunks; holding every record in the worker would
make its memory grow with the input.  :class:`ChunkLog` appends each record to a file and
keeps only the totals the report needs; the records are read back where they are written
out (in the parent process, after the measured run).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .artifacts import plain
from .transform import OPERATORS


class ChunkLog:
    """Append-only chunk records on disk plus the sums the report section needs."""

    def __init__(self) -> None:
        descriptor, name = tempfile.mkstemp(prefix="nba-pipeline-chunks-", suffix=".jsonl")
        self.path = Path(name)
        self._file = os.fdopen(descriptor, "w", encoding="utf-8")
        self.chunks = 0
        self.totals = {
            "rows": 0,
            "rows_processed": 0,
            "rows_quarantined": 0,
            "memory_exceeded": 0,
            "retries": 0,
        }
        self.operator_totals = dict.fromkeys(OPERATORS, 0.0)
        self.last_record: dict | None = None

    def append(self, record: dict) -> None:
        record = plain(record)
        self._file.write(json.dumps(record) + "\n")
        self.last_record = record  # for the resume journal
        self.chunks += 1
        for key in self.totals:
            self.totals[key] += int(record[key])
        for name in OPERATORS:
            self.operator_totals[name] += record["operator_profile_s"][name]

    def close(self) -> None:
        self._file.close()

    def discard(self) -> None:
        """Close and delete the file (the run failed; nobody will read it)."""
        self.close()
        self.path.unlink(missing_ok=True)


def read_chunk_log(path: str | Path, remove: bool = True) -> list[dict]:
    """The records of a closed log, in chunk order; the file is removed unless told not to."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    if remove:
        path.unlink()
    return records
