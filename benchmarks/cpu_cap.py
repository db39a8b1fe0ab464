"""Check the CPU cap from outside: the report's utilisation against the kernel's accounting.

Generates a synthetic table, runs ``nba-pipeline run --mode streaming`` with a CPU cap, and
meanwhile samples the CPU time of the whole process tree (the command, its fork server and
the worker) from ``/proc`` through psutil.  Prints the utilisation the report states for the
measured worker next to the outside figure for the worker alone and for the whole command.

    python benchmarks/cpu_cap.py [--rows 300000] [--cap 0.3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

SAMPLE_S = 0.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--cap", type=float, default=0.3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "players.csv"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "nba_pipeline.cli",
                "synth",
                "--rows",
                str(args.rows),
                "--seed",
                "7",
                "--output",
                str(data),
            ],
            check=True,
            capture_output=True,
        )
        out = Path(folder) / "run"
        command = [
            sys.executable,
            "-m",
            "nba_pipeline.cli",
            "run",
            "--mode",
            "streaming",
            "--profile",
            "edge",
            "--max-compute-units",
            str(args.cap),
            "--input",
            str(data),
            "--output-dir",
            str(out),
            "--spill-to-disk",
            "false",
            "--quiet",
        ]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        cpu_by_pid, worker_pid = watch_tree(process)
        command_pid = process.pid
        wall_s = time.perf_counter() - started
        report = json.loads((out / "reports" / "pipeline_report.json").read_text())

    worker = report["streaming"]["worker"]
    total_cpu = sum(cpu_by_pid.values())
    print(f"rows {args.rows}, cap {args.cap}")
    print(f"mechanism: {report['streaming']['worker']['cpu_mechanism']}")
    print(
        f"report:  worker utilisation {worker['measured_cpu_utilization']:.3f} "
        f"({worker['user_s'] + worker['system_s']:.1f} CPU s over {worker['wall_s']:.1f} s)"
    )
    if worker_pid is not None:
        print(
            f"outside: the worker used {cpu_by_pid[worker_pid]:.1f} CPU s "
            f"(getrusage in the report: {worker['user_s'] + worker['system_s']:.1f} s)"
        )
    print(
        f"outside: whole command {total_cpu:.1f} CPU s over {wall_s:.1f} s wall = "
        f"{total_cpu / wall_s:.3f} (includes start-up, the fork server and the parent's "
        f"polling)"
    )
    for pid, cpu in sorted(cpu_by_pid.items(), key=lambda item: -item[1]):
        role = "command" if pid == command_pid else "worker" if pid == worker_pid else "helper"
        print(f"         {role:<8} pid {pid:>7}: {cpu:6.1f} CPU s")
    return 0


def watch_tree(process: subprocess.Popen) -> tuple[dict[int, float], int | None]:
    """CPU seconds of every process in the tree, last seen value per pid, until it exits.

    The worker is the descendant with the most CPU time."""
    root = psutil.Process(process.pid)
    cpu_by_pid: dict[int, float] = {}
    while process.poll() is None:
        try:
            members = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for member in members:
            try:
                times = member.cpu_times()
            except psutil.NoSuchProcess:
                continue
            cpu_by_pid[member.pid] = times.user + times.system
        time.sleep(SAMPLE_S)
    descendants = {pid: cpu for pid, cpu in cpu_by_pid.items() if pid != process.pid}
    worker = max(descendants, key=descendants.get) if descendants else None
    return cpu_by_pid, worker


if __name__ == "__main__":
    sys.exit(main())
