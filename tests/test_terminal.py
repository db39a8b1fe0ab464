"""What the command line prints: JSON logs, quiet runs and progress bars on a terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios

SMALL = {
    "benchmark_runs": 2,
    "max_compute_units": 1.0,
    "max_memory_mb": 4096,
    "sweep_chunk_sizes": [64],
    "sweep_memory_limits_mb": [4096],
    "sweep_compute_limits": [0.5, 1.0],
    "data_size_fractions": [1.0],
}
COMMAND = [sys.executable, "-m", "nba_pipeline.cli", "run", "--config", "small.json"]


def run(tmp_path, *extra):
    (tmp_path / "small.json").write_text(json.dumps(SMALL))
    return subprocess.run(
        [*COMMAND, *extra], cwd=tmp_path, capture_output=True, text=True, check=True
    )


def test_json_logs_are_one_object_per_line(tmp_path):
    result = run(tmp_path, "--mode", "batch", "--log-format", "json", "--output-dir", "out")
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records, "a batch run logs its progress"
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)
    assert any(record["logger"] == "nba_pipeline.batch" for record in records)


def test_quiet_runs_log_warnings_only_and_still_summarise(tmp_path):
    result = run(tmp_path, "--mode", "batch", "--quiet", "--output-dir", "out")
    assert " INFO " not in result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("artifacts: out")


def test_redirected_output_has_no_progress_bars(tmp_path):
    result = run(tmp_path, "--output-dir", "out")
    assert "%|" not in result.stderr
    assert "nba_pipeline.experiment" in result.stderr


def test_a_terminal_gets_progress_bars(tmp_path):
    (tmp_path / "small.json").write_text(json.dumps(SMALL))
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        [*COMMAND, "--output-dir", "out"], cwd=tmp_path, stdin=child, stdout=child, stderr=child
    )
    os.close(child)
    output = b""
    while True:
        try:
            data = os.read(parent, 65536)
        except OSError:
            break
        if not data:
            break
        output += data
    assert process.wait() == 0
    text = output.decode(errors="replace")
    assert "benchmark:" in text and "%|" in text
    assert "constraint sweep:" in text
    assert " INFO " not in text
