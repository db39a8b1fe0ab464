"""Streaming reads its input in bounded pieces: never the whole file, never far ahead.

The reader hands out records from a buffered file; what it has taken from the file beyond
the records it handed out is at most one read buffer.  A whole streaming run reads the file
in small pieces only, once per pass, so its memory cannot grow with the input's size.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from nba_pipeline.config import PipelineConfig
from nba_pipeline.ingestion import ChunkReader, InputSource
from nba_pipeline.streaming import run_streaming
from nba_pipeline.synth import write_synthetic_csv

ROWS = 20_000
CHUNK = 64


class _CountingFile(io.FileIO):
    """A file that counts what is read from it, and the largest single read."""

    def __init__(self, path: Path, log: dict) -> None:
        super().__init__(path, "rb")
        self.log = log
        log["opened"] += 1

    def readinto(self, buffer) -> int:
        count = super().readinto(buffer)
        self.log["largest_read"] = max(self.log["largest_read"], count or 0)
        return count

    def readall(self) -> bytes:
        data = super().readall()
        self.log["largest_read"] = max(self.log["largest_read"], len(data))
        return data


class _CountingSource(InputSource):
    """An input file whose every opening is a counted, buffered file (the counts go to the
    module's ``READS``)."""

    def open(self) -> io.BufferedIOBase:
        return io.BufferedReader(_CountingFile(self.path, READS))


READS = {"opened": 0, "largest_read": 0}


@pytest.fixture(scope="module")
def large_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bounded") / "players.csv"
    write_synthetic_csv(path, ROWS, seed=3)
    return path


def test_the_reader_holds_at_most_one_buffer_beyond_what_it_handed_out(large_file):
    with ChunkReader(InputSource.from_path(large_file)) as reader:
        raw = reader._stream.raw
        handed_out = reader.data_offset
        ahead = []
        while chunk := reader.take(CHUNK):
            handed_out = chunk.end[0]
            ahead.append(raw.tell() - handed_out)

    assert handed_out == large_file.stat().st_size  # every byte of the file was handed out
    assert len(ahead) == -(-ROWS // CHUNK)
    assert 0 <= max(ahead) <= io.DEFAULT_BUFFER_SIZE


def test_a_streaming_run_reads_the_file_in_small_pieces_once_per_pass(large_file):
    READS.update(opened=0, largest_read=0)
    source = _CountingSource(name=str(large_file), path=large_file)
    config = PipelineConfig.from_profile("edge").with_overrides(
        max_compute_units=1.0, max_memory_mb=1_000_000.0, chunk_size=CHUNK
    )

    result = run_streaming(source, config)

    assert result.section["rows"] == ROWS
    assert READS["opened"] == 2  # pass 1 (fit) and pass 2 (transform), nothing else
    assert 0 < READS["largest_read"] <= io.DEFAULT_BUFFER_SIZE
    assert large_file.stat().st_size > 100 * io.DEFAULT_BUFFER_SIZE
