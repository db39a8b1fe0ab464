"""Live input (``--input -``): rows read from standard input as they arrive.

The end-to-end tests pipe the real table from a writer process (a small Python script,
started as a real subprocess) into ``nba-pipeline run --input -``, slowly enough that chunks
are emitted by timeout.  The reader tests feed a pipe from a thread in odd-sized pieces and
need only the packaged sample.  Timing is never asserted beyond generous timeouts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from nba_pipeline.config import PipelineConfig
from nba_pipeline.errors import ConfigError
from nba_pipeline.ingestion import ChunkReader, InputSource
from nba_pipeline.live import TIMEOUT, LiveReader, StdinFeed

_SCRIPT = Path(sys.executable).with_name("nba-pipeline")
NBA_PIPELINE = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "nba_pipeline.cli"]
REAL_ROWS = 439
TIMEOUT_S = 300

# A full run kept small: one repetition and a two-setting sweep (the shared checker wants
# at least two); a short warm-up and a short wait so that a slow feed shows timeouts.
LIVE_TEMPLATE = {
    "benchmark_runs": 1,
    "max_compute_units": 1.0,
    "max_memory_mb": 4096,
    "spill_to_disk": True,
    "sweep_chunk_sizes": [64, 128],
    "sweep_memory_limits_mb": [4096],
    "sweep_compute_limits": [1.0],
    "data_size_fractions": [1.0],
    "live_warmup_rows": 120,
    "live_max_wait_s": 0.2,
}

# The writer: the header and the first FAST rows at once; once the pipeline has received
# them (its spool file holds them: the pipeline has started up), BURST rows every PAUSE
# seconds.  A bad record is sent before row BAD (0: none); with KEEP_OPEN the pipe stays
# open after the last row, as from a feed that never ends.
WRITER = """
import os, sys, time
path, spool, fast, burst, pause, bad, keep_open = sys.argv[1:]
fast, burst, pause, bad = int(fast), int(burst), float(pause), int(bad)
lines = open(path, "rb").read().splitlines(keepends=True)
out = sys.stdout.buffer
out.write(lines[0])
for number, line in enumerate(lines[1:], 1):
    if number == bad:
        out.write(b"Truncated Player,97\\n")
    out.write(line)
    if number == fast:
        out.flush()
        while not os.path.exists(spool) or open(spool, "rb").read().count(b"\\n") < fast:
            time.sleep(0.05)
    if number > fast and (number - fast) % burst == 0:
        out.flush()
        time.sleep(pause)
out.flush()
if keep_open == "1":
    time.sleep(3600)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    env.pop("NBA_PIPELINE_REAL_DATA", None)
    return env


class LiveRun:
    """A writer process piped into ``nba-pipeline run --input -``."""

    def __init__(self, tmp: Path, data: Path, *, mode="all", bad=0, keep_open=False, pause=0.4):
        script = tmp / "writer.py"
        script.write_text(WRITER, encoding="utf-8")
        config = tmp / "live.json"
        config.write_text(json.dumps(LIVE_TEMPLATE), encoding="utf-8")
        self.out = tmp / "out"
        spool = self.out / "input" / "received.csv"
        arguments = [str(data), str(spool), "150", "40", str(pause), str(bad)]
        arguments.append("1" if keep_open else "0")
        self.writer = subprocess.Popen(
            [sys.executable, str(script), *arguments], stdout=subprocess.PIPE
        )
        self.pipeline = subprocess.Popen(
            [*NBA_PIPELINE, "run", "--input", "-", "--config", str(config), "--mode", mode]
            + ["--output-dir", str(self.out), "--quiet"],
            stdin=self.writer.stdout,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp,
            env=_env(),
            text=True,
        )
        self.writer.stdout.close()  # the pipeline holds the only reading end

    def finish(self) -> subprocess.CompletedProcess:
        try:
            stdout, stderr = self.pipeline.communicate(timeout=TIMEOUT_S)
        finally:
            self.stop_writer()
        return subprocess.CompletedProcess(
            self.pipeline.args, self.pipeline.returncode, stdout, stderr
        )

    def stop_writer(self) -> None:
        if self.writer.poll() is None:
            self.writer.kill()
        self.writer.wait(timeout=30)

    def report(self) -> dict:
        path = self.out / "reports" / "pipeline_report.json"
        return json.loads(path.read_text(encoding="utf-8"))


def _wait_for_spool_lines(run: LiveRun, lines: int) -> None:
    spool = run.out / "input" / "received.csv"
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if spool.is_file() and spool.read_bytes().count(b"\n") >= lines:
            return
        assert run.pipeline.poll() is None, run.pipeline.communicate()[1][-3000:]
        time.sleep(0.05)
    pytest.fail(f"the spool did not reach {lines} lines")


def _assert_ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def _assert_accounted(report: dict) -> None:
    streaming = report["streaming"]
    received = report["dataset_fingerprint"]["row_count"]
    assert streaming["rows"] == received
    assert streaming["rows_processed"] + streaming["rows_quarantined"] == received
    assert sum(record["rows"] for record in streaming["chunk_metrics"]) == received


# --------------------------------------------------------------------------------------
# End to end, on the real table
# --------------------------------------------------------------------------------------


def test_slow_feed_emits_by_timeout_and_end_of_input_writes_everything(
    tmp_path, real_data_path, check_artifacts_tool
):
    run = LiveRun(tmp_path, real_data_path)
    done = run.finish()
    _assert_ok(done)

    report = run.report()
    live = report["streaming"]["live"]
    records = report["streaming"]["chunk_metrics"]
    assert live["ended_by"] == "end of input"
    assert live["warm_up_rows"] == LIVE_TEMPLATE["live_warmup_rows"]
    assert any(record["emitted"] == "timeout" for record in records)
    assert all(record["wait_s"] >= 0 for record in records)
    assert records[-1]["emitted"] in ("end of input", "timeout", "full")
    # Every row arrived, was processed once, and the spool is the feed byte for byte.
    assert report["dataset_fingerprint"]["row_count"] == REAL_ROWS
    _assert_accounted(report)
    spool = run.out / "input" / "received.csv"
    assert spool.read_bytes() == real_data_path.read_bytes()
    # The records on disk say the same as the report.
    lines = (run.out / "reports" / "streaming_chunks.jsonl").read_text(encoding="utf-8")
    assert [json.loads(line)["emitted"] for line in lines.splitlines()] == [
        record["emitted"] for record in records
    ]
    check_artifacts_tool(run.out, spill=True, dataset_rows=REAL_ROWS)


def test_sigint_ends_a_never_ending_feed_cleanly(tmp_path, real_data_path, check_artifacts_tool):
    run = LiveRun(tmp_path, real_data_path, keep_open=True, pause=0.3)
    _wait_for_spool_lines(run, 1 + 150 + 80)
    run.pipeline.send_signal(signal.SIGINT)
    done = run.finish()
    _assert_ok(done)

    report = run.report()
    assert report["streaming"]["live"]["ended_by"] == "interrupt"
    received = report["dataset_fingerprint"]["row_count"]
    assert 150 + 80 <= received < REAL_ROWS
    _assert_accounted(report)
    assert report["batch"]["rows"] == received
    check_artifacts_tool(run.out, spill=True)


def test_a_bad_row_in_the_feed_is_quarantined_with_its_stream_line(tmp_path, real_data_path):
    # The bad record goes before data row 300, so it is line 301 of the stream (header: 1).
    run = LiveRun(tmp_path, real_data_path, mode="streaming", bad=300, pause=0.05)
    done = run.finish()
    _assert_ok(done)

    report = run.report()
    assert report["streaming"]["rows"] == REAL_ROWS + 1
    assert report["streaming"]["rows_quarantined"] == 1
    _assert_accounted(report)
    quarantine = pd.read_csv(run.out / "reports" / "quarantine.csv")
    assert quarantine["line"].tolist() == [301]
    assert "fields" in quarantine["reason"][0]
    assert quarantine["raw"][0].startswith("Truncated Player,97")


# --------------------------------------------------------------------------------------
# The reader, on a pipe fed from a thread (packaged sample only)
# --------------------------------------------------------------------------------------


def _feed_pipe(data: bytes, pieces: list[int], pause_s: float = 0.0) -> int:
    """A pipe's reading end; a thread writes ``data`` in pieces of the given sizes."""
    read_end, write_end = os.pipe()

    def write() -> None:
        offset, index = 0, 0
        while offset < len(data):
            size = pieces[index % len(pieces)]
            os.write(write_end, data[offset : offset + size])
            offset, index = offset + size, index + 1
            time.sleep(pause_s)
        os.close(write_end)

    threading.Thread(target=write, daemon=True).start()
    return read_end


def _odd_table(sample_path: Path) -> bytes:
    """The sample with what a file reader must handle: a blank line, a quoted field holding
    a line break, and a last line without its newline."""
    lines = sample_path.read_bytes().splitlines(keepends=True)
    quoted = lines[3].replace(b"USA", b'"U\nSA"', 1)
    assert quoted != lines[3]
    return b"".join([*lines[:3], b"\n", quoted, *lines[4:]]).rstrip(b"\n")


@pytest.mark.parametrize("pieces", [[1, 7, 3], [4096], [50, 200_000]])
def test_live_reader_reads_records_as_a_file_reader_does(tmp_path, sample_path, pieces):
    data = _odd_table(sample_path)
    with ChunkReader(InputSource(name="file", data=data)) as reference:
        expected = reference.take(10_000)

    fd = _feed_pipe(data, pieces)
    spool_path = tmp_path / "spool.csv"
    with spool_path.open("wb") as spool:
        reader = LiveReader(StdinFeed(fd, spool), max_wait_s=5.0)
        records, lines = [], []
        while chunk := reader.take(37):
            records += chunk.records
            lines += chunk.line_numbers
    os.close(fd)
    assert reader.header == reference.header
    assert records == expected.records
    assert lines == expected.line_numbers
    assert spool_path.read_bytes() == data


def test_partial_chunk_is_emitted_after_the_wait(tmp_path, sample_path):
    read_end, write_end = os.pipe()
    lines = sample_path.read_bytes().splitlines(keepends=True)
    os.write(write_end, b"".join(lines[:6]) + lines[6][:10])  # five rows and half a line
    with (tmp_path / "spool.csv").open("wb") as spool:
        reader = LiveReader(StdinFeed(read_end, spool), max_wait_s=0.1)
        chunk = reader.take(64)
        assert len(chunk) == 5
        assert reader.emissions[0]["emitted"] == "timeout"
        assert reader.emissions[0]["wait_s"] >= 0.099

        os.write(write_end, lines[6][10:])  # the rest of the line arrives, then the end
        os.close(write_end)
        chunk = reader.take(64)
        assert chunk.records == [lines[6]]
        assert chunk.line_numbers == [7]
        assert reader.emissions[-1]["emitted"] == "end of input"
        assert not reader.take(64)
    os.close(read_end)


def test_next_line_gives_up_at_the_deadline(tmp_path):
    read_end, write_end = os.pipe()
    with (tmp_path / "spool.csv").open("wb") as spool:
        feed = StdinFeed(read_end, spool)
        os.write(write_end, b"a,b\npart")
        assert feed.next_line(None) == b"a,b\n"
        assert feed.next_line(time.monotonic() + 0.05) is TIMEOUT
        feed.interrupted = True  # as the first Ctrl-C does: the partial line is the last
        assert feed.next_line(None) == b"part"
        assert feed.next_line(None) is None
        assert feed.ended_by == "interrupt"
    os.close(read_end)
    os.close(write_end)


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("live_warmup_rows", 0, "live_warmup_rows must be an integer >= 1, got 0"),
        ("live_max_wait_s", 0, r"live_max_wait_s must be > 0 \(seconds"),
        ("live_max_wait_s", "soon", "live_max_wait_s must be a finite number"),
    ],
)
def test_live_settings_are_checked(key, value, text):
    with pytest.raises(ConfigError, match=text):
        PipelineConfig(**{key: value})


def test_live_input_refuses_batch_mode(tmp_path):
    done = subprocess.run(
        [*NBA_PIPELINE, "run", "--input", "-", "--mode", "batch", "--output-dir", str(tmp_path)],
        input="",
        capture_output=True,
        text=True,
        env=_env(),
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 2
    assert "--mode all or --mode streaming" in done.stderr
