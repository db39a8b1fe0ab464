"""The ``nba-pipeline`` command: a thin layer over :class:`~nba_pipeline.runner.PipelineRunner`.

Settings are layered: built-in defaults, then ``--profile`` or ``--config``, then only the
flags the user actually typed.  Problems a user can fix end with one message on stderr and
the exit code of their kind (see :mod:`nba_pipeline.errors`); ``--verbose`` adds the
traceback and debug logging.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
from pathlib import Path

from .config import ENGINES, PROFILE_NAMES, PipelineConfig
from .errors import ConfigError, PipelineError
from .terminal import ProgressBars, configure_logging

logger = logging.getLogger("nba_pipeline")

MODES = ("all", "batch", "streaming")


def _bool_flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nba-pipeline",
        description="Deterministic batch and streaming feature pipeline for the NBA2K table.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_arguments(commands.add_parser("run", help="run the pipeline and write artifacts"))

    synth = commands.add_parser("synth", help="write a synthetic table in the raw format")
    synth.add_argument("--rows", type=int, required=True, help="number of data rows")
    synth.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    synth.add_argument("--output", type=Path, required=True, help="CSV file to write")
    synth.add_argument("--verbose", action="store_true", help="debug logging and tracebacks")
    add_inspection_commands(commands)

    report = commands.add_parser("report", help="(re)write a run's reports/report.html")
    report.add_argument("run", type=Path, metavar="RUN", help="run directory")
    report.add_argument("--verbose", action="store_true", help="debug logging and tracebacks")
    return parser


def add_inspection_commands(commands) -> None:
    """``compare``, ``verify`` and ``clean``: reading and tidying finished run directories."""
    compare = commands.add_parser(
        "compare",
        help="compare two runs; exit 0 when their deterministic parts are identical, else 1",
    )
    compare.add_argument("run_a", type=Path, metavar="RUN_A", help="first run directory")
    compare.add_argument("run_b", type=Path, metavar="RUN_B", help="second run directory")
    compare.add_argument("--seed", type=int, default=0, help="permutation-test seed (default 0)")

    verify = commands.add_parser(
        "verify", help="check a run against its checksums and the layout; exit 1 on problems"
    )
    verify.add_argument("run", type=Path, metavar="RUN", help="run directory")

    clean = commands.add_parser(
        "clean", help="delete spill files of a run, or archive-class files of old runs"
    )
    clean.add_argument(
        "path",
        type=Path,
        metavar="RUN|PARENT",
        help="a run, or with --older-than a folder of runs",
    )
    what = clean.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--intermediate", action="store_true", help="delete the run's intermediate/ spill files"
    )
    what.add_argument(
        "--older-than",
        dest="older_than",
        type=float,
        metavar="DAYS",
        help="clean every run under PARENT whose report is older than DAYS days",
    )
    clean.add_argument(
        "--include-reports",
        action="store_true",
        help="with --older-than: retire old runs entirely, reports and manifest included",
    )
    clean.add_argument("--dry-run", action="store_true", help="list what would go; delete nothing")

    for command in (compare, verify, clean):
        command.add_argument("--json", action="store_true", help="print the result as JSON")
        command.add_argument("--verbose", action="store_true", help="debug logging and tracebacks")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``run``; also used by ``run_pipeline.py``.  Defaults are ``None`` so that
    only flags the user gave override the template."""
    parser.add_argument(
        "--input",
        type=Path,
        help="raw CSV (default: the packaged sample); '-' reads rows from standard input as "
        'they arrive, until it ends or Ctrl-C (see "Live input" in the README); with '
        "--engine dask, a quoted glob such as 'data/*.csv', a directory, or one CSV or "
        "Parquet file",
    )
    parser.add_argument("--output-dir", dest="output_dir", help="where artifacts go")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--config", "--config-template", dest="config", type=Path, help="JSON template of settings"
    )
    source.add_argument("--profile", choices=PROFILE_NAMES, help="built-in settings")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="all",
        help="all (default): batch, streaming, benchmark, sweep and quality",
    )
    parser.add_argument("--chunk-size", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--max-memory-mb", type=float)
    parser.add_argument("--max-compute-units", type=float)
    parser.add_argument("--benchmark-runs", type=int)
    parser.add_argument("--n-jobs", type=int)
    parser.add_argument("--random-seed", type=int)
    parser.add_argument(
        "--spill-to-disk",
        nargs="?",
        const=True,
        type=_bool_flag,
        help="write each chunk's X and y under intermediate/ (true/false)",
    )
    parser.add_argument(
        "--disable-adaptive-chunk-resize",
        action="store_true",
        default=None,
        help="keep the chunk size even when memory goes over budget",
    )
    parser.add_argument("--max-chunk-retries", type=int)
    # Bad input (see "Bad input" in the README).
    parser.add_argument(
        "--encoding",
        help="text encoding of the input file, e.g. cp1252 or latin-1 (default utf-8)",
    )
    parser.add_argument(
        "--max-quarantine-ratio",
        dest="max_quarantine_ratio",
        type=float,
        metavar="F",
        help="stop when more than this share of input rows is quarantined (default 0.05)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler (e.g. tcp://10.0.0.5:8786) that runs the benchmark repetitions "
        "and sweep settings; the input must be readable by its workers at the same path",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the streaming run that a killed run journalled in --output-dir (same "
        'input and settings; spill_to_disk on); see "Resuming a killed run" in the README',
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        help="batch mode on this machine (local, default) or as Dask tasks over partitioned "
        'input (dask); see "Distributed batch" in the README',
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging and tracebacks")
    parser.add_argument("--quiet", action="store_true", help="warnings only, no progress bars")
    parser.add_argument(
        "--log-format",
        dest="log_format",
        choices=("text", "json"),
        default="text",
        help="log lines as text (default) or JSON objects",
    )


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """Defaults, then the template or profile, then the flags that were given."""
    if args.config is not None:
        config = PipelineConfig.from_template(args.config)
    elif args.profile is not None:
        config = PipelineConfig.from_profile(args.profile)
    else:
        config = PipelineConfig()
    adaptive = False if args.disable_adaptive_chunk_resize else None
    return config.with_overrides(
        output_dir=args.output_dir,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        max_memory_mb=args.max_memory_mb,
        max_compute_units=args.max_compute_units,
        benchmark_runs=args.benchmark_runs,
        n_jobs=args.n_jobs,
        random_seed=args.random_seed,
        spill_to_disk=args.spill_to_disk,
        adaptive_chunk_resize=adaptive,
        max_chunk_retries=args.max_chunk_retries,
        encoding=getattr(args, "encoding", None),
        max_quarantine_ratio=getattr(args, "max_quarantine_ratio", None),
        scheduler=getattr(args, "scheduler", None),
        engine=getattr(args, "engine", None),
    )


def _names_a_missing_file(args: argparse.Namespace, config: PipelineConfig) -> bool:
    """Whether ``--input`` names one file that is not there (checked without importing the
    readers; :func:`_input_of` then says so in full)."""
    if args.input is None or config.engine == "dask" or str(args.input) == "-":
        return False
    return not Path(args.input).exists()


def _input_of(args: argparse.Namespace, config: PipelineConfig):
    """The run's input: a Dask glob or folder, standard input, a file that exists, or None
    for the packaged sample."""
    from .ingestion import InputSource
    from .live import STDIN, is_stdin

    if config.engine == "dask":
        if args.mode != "batch":
            raise ConfigError(
                f"--engine dask runs batch mode only; use --mode batch, not --mode {args.mode}"
            )
        # A glob, a directory or a file: resolved (and checked) by the Dask batch engine.
        return str(args.input) if args.input is not None else None
    if is_stdin(args.input):
        return STDIN  # live input: rows are read from standard input as they arrive
    return InputSource.from_path(args.input).path if args.input is not None else None


def run_command(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    resume = getattr(args, "resume", False)
    if resume and args.mode == "batch":
        raise ConfigError(
            "--resume continues a journalled streaming run: use it with --mode all or streaming"
        )
    if resume and str(args.input) == "-":
        raise ConfigError("--resume needs a file --input: standard input cannot be read again")
    if config.isolate_runs and not _names_a_missing_file(args, config):
        # The fork server imports and warms up the worker modules; launched now, that work
        # overlaps with this process's own imports and checks below.  A run stopped by its
        # settings or a missing input file never needs a worker, nor this work.
        from .isolation import start_fork_server

        start_fork_server(wait=False)

    data = _input_of(args, config)
    from .runner import PipelineRunner

    bars = ProgressBars.for_terminal(args.quiet)
    runner = PipelineRunner(config, progress=bars, resume=resume)
    started = time.perf_counter()
    if bars.enabled and not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        if args.mode == "all":
            runner.run_all(data)
        else:
            getattr(runner, f"run_{args.mode}")(data)
            runner.write_artifacts()
    finally:
        bars.close()
    _print_summary(runner.report, runner.output_dir, time.perf_counter() - started)
    return 0


def synth_command(args: argparse.Namespace) -> int:
    from .synth import write_synthetic_csv

    if args.rows < 1:
        raise PipelineError(f"--rows must be >= 1, got {args.rows}")
    started = time.perf_counter()
    written = write_synthetic_csv(args.output, args.rows, args.seed)
    print(f"wrote {written} rows to {args.output} in {time.perf_counter() - started:.2f} s")
    return 0


def compare_command(args: argparse.Namespace) -> int:
    from .inspection import compare_runs, format_comparison

    result = compare_runs(args.run_a, args.run_b, seed=args.seed)
    print(_as_json(result) if args.json else format_comparison(result))
    return 0 if result["identical_deterministic_parts"] else 1


def verify_command(args: argparse.Namespace) -> int:
    from .inspection import format_verification, verify_run

    result = verify_run(args.run)
    print(_as_json(result) if args.json else format_verification(result))
    return 0 if result["ok"] else 1


def clean_command(args: argparse.Namespace) -> int:
    from .inspection import clean_run, clean_runs_older_than, format_cleanup

    if args.older_than is None:
        if args.include_reports:
            raise ConfigError("--include-reports goes with --older-than, not --intermediate")
        result = clean_run(args.path, intermediate=True, dry_run=args.dry_run)
    else:
        if args.older_than < 0:
            raise ConfigError(f"--older-than must be >= 0 days, got {args.older_than:g}")
        result = clean_runs_older_than(
            args.path, args.older_than, include_reports=args.include_reports, dry_run=args.dry_run
        )
    print(_as_json(result) if args.json else format_cleanup(result))
    return 0


def _as_json(result: dict) -> str:
    return json.dumps(result, indent=2)


def report_command(args: argparse.Namespace) -> int:
    from .html_report import write_html_report
    from .inspection import refresh_checksum

    path = write_html_report(args.run)
    refresh_checksum(args.run, path)
    print(f"wrote {path}")
    return 0


def _print_summary(report: dict, output_dir: Path, elapsed_s: float) -> None:
    for mode in ("batch", "streaming"):
        section = report.get(mode)
        if section:
            model = section["model"]
            print(
                f"{mode:>9}: r2 {_fmt(model['r2'])}  rmse {_fmt(model['rmse'], 0)}  "
                f"preprocessing {section['latency_s']:.3f} s "
                f"({section['throughput_rows_s']:.0f} rows/s)"
            )
    significance = report.get("benchmark", {}).get("significance")
    if significance:
        print(
            f"benchmark: latency p={significance['latency_pvalue']:.3g} "
            f"(smallest attainable {significance['latency_min_attainable_pvalue']:.3g})"
        )
    print(f"artifacts: {output_dir} ({elapsed_s:.1f} s)")


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(
        args.verbose, getattr(args, "quiet", False), getattr(args, "log_format", "text")
    )
    command = {
        "run": run_command,
        "synth": synth_command,
        "compare": compare_command,
        "verify": verify_command,
        "clean": clean_command,
        "report": report_command,
    }[args.command]
    try:
        return command(args)
    except PipelineError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"nba-pipeline: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nba-pipeline: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
