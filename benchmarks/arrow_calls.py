"""How many Arrow compute calls a streaming chunk makes, and what they cost.

Generates a synthetic table, runs streaming mode in this process once to warm up, then once
under cProfile, and prints the ``pyarrow.compute`` calls per chunk (both passes) with their
mean time.  The profiler inflates every call a little; the count is exact.

    python benchmarks/arrow_calls.py [--rows 20000] [--chunk-size 64]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

from nba_pipeline.config import PipelineConfig
from nba_pipeline.ingestion import InputSource
from nba_pipeline.streaming import run_streaming
from nba_pipeline.synth import write_synthetic_csv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--chunk-size", type=int, default=64)
    args = parser.parse_args()

    config = PipelineConfig.from_profile("edge").with_overrides(
        max_compute_units=1.0, spill_to_disk=False, chunk_size=args.chunk_size
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "players.csv"
        write_synthetic_csv(path, args.rows, seed=7)
        source = InputSource.from_path(path)
        run_streaming(source, config)  # warm-up: imports, first calls

        started = time.perf_counter()
        plain = run_streaming(source, config)
        plain_s = time.perf_counter() - started

        profile = cProfile.Profile()
        profile.enable()
        run_streaming(source, config)
        profile.disable()

    calls, seconds = _arrow_compute_calls(pstats.Stats(profile))
    chunks = plain.section["chunks"]
    print(f"streaming, chunk {args.chunk_size}, {args.rows:,} rows: {chunks:,} chunks")
    per_chunk_ms = 1e3 * plain_s / chunks
    print(f"  wall time without the profiler: {plain_s:.3f} s, {per_chunk_ms:.2f} ms a chunk")
    print(
        f"  pyarrow.compute calls: {calls / chunks:.0f} a chunk (both passes), "
        f"{1e6 * seconds / calls:.1f} us each under the profiler, "
        f"{1e3 * seconds / chunks:.2f} ms a chunk"
    )
    return 0


def _arrow_compute_calls(stats: pstats.Stats) -> tuple[int, float]:
    """Calls of pyarrow.compute's function wrappers and their cumulative seconds."""
    calls, seconds = 0, 0.0
    for (filename, _line, name), (_prim, total, _own, cumulative, _callers) in stats.stats.items():
        if "pyarrow" in filename and filename.endswith("compute.py") and name == "wrapper":
            calls += total
            seconds += cumulative
    return calls, seconds


if __name__ == "__main__":
    sys.exit(main())
