"""Inspecting finished runs: compare two of them, verify one, clean up after them.

A *run directory* is an output directory written by ``nba-pipeline run``: it holds
``reports/pipeline_report.json`` (see the "Artifacts" section of the README for the layout).

- :func:`compare_runs` tells whether two runs agree on everything that must be deterministic
  (configuration, input bytes, model scores, selected features, spilled chunks) and, for the
  timing and memory figures that may not, how far apart they are and whether the benchmark
  repetitions support calling the difference real.
- :func:`verify_run` re-hashes the files listed in ``metadata/checksums.json`` (written by
  :func:`write_checksums`) and checks the layout against the artifact contract.
- :func:`clean_run` and :func:`clean_runs_older_than` apply the contract's retention advice:
  spill files go after the run, archive-class artifacts after a while, reports never unless
  asked.  They keep ``checksums.json`` in step and record what they removed in
  ``metadata/cleanup_log.jsonl`` so that ``verify`` stays green.

Nothing here follows a symbolic link found inside a run directory.  Library code logs; the
``format_*`` functions return text for the command line to print.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from .errors import OutputError, PipelineError
from .significance import SIGNIFICANCE_LEVEL, permutation_pvalue

logger = logging.getLogger(__name__)

REPORT = "reports/pipeline_report.json"
MANIFEST = "metadata/run_manifest.json"
CHECKSUMS = "metadata/checksums.json"
CLEANUP_LOG = "metadata/cleanup_log.jsonl"
LOCK_FILE_NAME = ".nba-pipeline.lock"
CHECKSUM_ALGORITHM = "sha256"
SPILL_PATTERN = re.compile(r"stream_chunk_\d+_[Xy]\.csv")
PLOTS = (
    "benchmarks/latency_vs_accuracy.png",
    "benchmarks/memory_vs_accuracy.png",
    "benchmarks/latency_memory_accuracy.png",
)
#: Files the contract requires whenever the report has the section that produces them.
LAYOUT_BY_SECTION = {
    "streaming": (
        "reports/streaming_chunks.jsonl",
        "benchmarks/streaming_chunks.csv",
        "profiles/operator_profile.csv",
    ),
    "benchmark": ("benchmarks/significance_tests.csv", "benchmarks/latency_vs_data_size.csv"),
    "constraint_experiment": (
        "benchmarks/constraint_experiment.csv",
        "reports/constraint_experiment_log.jsonl",
        *PLOTS,
        "benchmarks/throughput_vs_memory.csv",
        "benchmarks/resource_vs_accuracy.csv",
    ),
}
#: Retention classes of the contract: "archive after 30 days" and "keep indefinitely".
ARCHIVE_CLASS = ("reports/streaming_chunks.jsonl", "profiles/operator_profile.csv", *PLOTS)
KEEP_CLASS = (REPORT, MANIFEST, "benchmarks/constraint_experiment.csv")
#: Every other file a run writes; removed only when a run is retired with its reports.
OTHER_RUN_FILES = (
    "benchmarks/streaming_chunks.csv",
    "benchmarks/significance_tests.csv",
    "benchmarks/latency_vs_data_size.csv",
    "benchmarks/throughput_vs_memory.csv",
    "benchmarks/resource_vs_accuracy.csv",
    "reports/constraint_experiment_log.jsonl",
    "reports/report.html",
    CHECKSUMS,
    CLEANUP_LOG,
)
RUN_FOLDERS = ("intermediate", "benchmarks", "profiles", "reports", "metadata")
#: Headline metrics: report path, and the benchmark list holding its repetitions (if any).
HEADLINE_METRICS = {
    "batch.latency_s": "benchmark.batch.latency_s",
    "streaming.latency_s": "benchmark.streaming.latency_s",
    "batch.throughput_rows_s": "benchmark.batch.throughput_rows_s",
    "streaming.throughput_rows_s": "benchmark.streaming.throughput_rows_s",
    "batch.memory.peak_rss_mb": "benchmark.batch.peak_rss_mb",
    "streaming.memory.peak_rss_mb": "benchmark.streaming.peak_rss_mb",
    "batch.model.r2": None,
    "batch.model.rmse": None,
    "streaming.model.r2": None,
    "streaming.model.rmse": None,
}
MODEL_SCORES = ("batch.model.r2", "batch.model.rmse", "streaming.model.r2", "streaming.model.rmse")
#: Configuration keys that say where a run went, not what it computed.
LOCATION_KEYS = ("output_dir",)
_HASH_BLOCK = 1 << 20
_SECONDS_PER_DAY = 86_400.0


class RunDirectoryError(PipelineError):
    """A path is missing, is not a run directory, or a run in it cannot be read or locked."""

    exit_code = 3


# --------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------


def compute_checksums(run_dir: str | Path) -> dict:
    """Return the checksum manifest of every file under ``run_dir``.

    The format is ``{"algorithm": "sha256", "files": {path: hex digest}}`` with paths
    relative to ``run_dir`` in forward slashes and sorted.  ``metadata/checksums.json``
    itself and the lock file ``.nba-pipeline.lock`` are left out; symbolic links are neither
    followed nor listed (a warning names them).
    """
    root = _existing_dir(run_dir)
    files, symlinks = _scan(root)
    for link in symlinks:
        logger.warning("not checksummed: %s is a symbolic link", root / link)
    listed = sorted(path for path in files if path not in (CHECKSUMS, LOCK_FILE_NAME))
    return {
        "algorithm": CHECKSUM_ALGORITHM,
        "files": {path: _file_digest(root / path, CHECKSUM_ALGORITHM) for path in listed},
    }


def write_checksums(run_dir: str | Path) -> Path:
    """Write :func:`compute_checksums` of ``run_dir`` to ``metadata/checksums.json``.

    The file is written to a temporary sibling and renamed, with sorted keys, so the same
    files always give the same bytes.  Returns the path written; raises
    :class:`~nba_pipeline.errors.OutputError` when it cannot be written.
    """
    root = _existing_dir(run_dir)
    manifest = compute_checksums(root)
    path = root / CHECKSUMS
    _write_json_atomically(path, manifest)
    logger.info("checksums of %d files written to %s", len(manifest["files"]), path)
    return path


def refresh_checksum(run_dir: str | Path, path: str | Path) -> bool:
    """Update the one entry of ``path`` in an existing ``checksums.json``.

    Used when a single artifact is regenerated on purpose (``nba-pipeline report``); every
    other entry keeps guarding its file.  Returns False when the run has no checksums.
    """
    root = _existing_dir(run_dir)
    manifest_path = root / CHECKSUMS
    if not _is_real_file(manifest_path):
        return False
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    relative = Path(path).resolve().relative_to(root.resolve()).as_posix()
    manifest["files"][relative] = _file_digest(root / relative, manifest["algorithm"])
    manifest["files"] = dict(sorted(manifest["files"].items()))
    _write_json_atomically(manifest_path, manifest)
    return True


# --------------------------------------------------------------------------------------
# Compare
# --------------------------------------------------------------------------------------


def compare_runs(run_a: str | Path, run_b: str | Path, seed: int = 0) -> dict:
    """Compare two run directories; differences are ``b - a``.

    Returns a dict with:

    - ``config_differences``: ``{key: (value in a, value in b)}`` for every setting that
      differs (``None`` for a key one run lacks), and ``location_differences`` for settings
      that only say where a run went (``output_dir``), which never count toward identity;
    - ``environment_differences``: python, platform, package and dependency versions, for
      information;
    - ``dataset_sha256``: both fingerprints and whether they are equal;
    - ``metrics``: for each headline metric, ``a``, ``b``, ``difference`` and ``repetitions``:
      the permutation test of run b's benchmark repetitions against run a's
      (``pvalue``, ``min_attainable_pvalue``, ``significant``...), or ``None`` with a
      ``note`` when the metric has no repetitions (model scores) or a run did not record them;
    - ``identity``: per deterministic part, ``True``/``False``, or ``None`` when it could not
      be compared (spilled files absent from a run), with ``identity_notes``;
    - ``identical_deterministic_parts``: every compared part is equal.  Timing and memory
      figures never count.

    Raises :class:`RunDirectoryError` when a path is not a readable run directory.
    """
    root_a, root_b = _run_dir(run_a), _run_dir(run_b)
    report_a, report_b = _load_report(root_a), _load_report(root_b)

    config_a, config_b = _config(root_a, report_a), _config(root_b, report_b)
    all_differences = _dict_differences(config_a, config_b)
    location = {key: pair for key, pair in all_differences.items() if key in LOCATION_KEYS}
    config_differences = {
        key: pair for key, pair in all_differences.items() if key not in LOCATION_KEYS
    }
    sha_a = _get(report_a, "dataset_fingerprint.sha256")
    sha_b = _get(report_b, "dataset_fingerprint.sha256")
    metrics = {
        name: _compare_metric(report_a, report_b, name, repetitions, seed)
        for name, repetitions in HEADLINE_METRICS.items()
    }

    notes: dict[str, str] = {}
    spills_a, spills_b = _spill_digests(root_a), _spill_digests(root_b)
    if spills_a and spills_b:
        same_spills: bool | None = spills_a == spills_b
        if not same_spills:
            notes["intermediate_files"] = _spill_difference(spills_a, spills_b)
    else:
        same_spills = None
        notes["intermediate_files"] = (
            f"not compared: spilled chunk files present in run a: {len(spills_a)}, "
            f"in run b: {len(spills_b)}"
        )
    changed_scores = [key for key in MODEL_SCORES if _get(report_a, key) != _get(report_b, key)]
    identity = {
        "config": not config_differences,
        "dataset_sha256": sha_a is not None and sha_a == sha_b,
        "model_scores": not changed_scores,
        "selected_features": _get(report_a, "batch.features.selected_numeric")
        == _get(report_b, "batch.features.selected_numeric"),
        "intermediate_files": same_spills,
    }
    if config_differences:
        notes["config"] = "differs in " + ", ".join(sorted(config_differences))
    if changed_scores:
        notes["model_scores"] = "differs in " + ", ".join(changed_scores)
    identical = all(value is not False for value in identity.values())
    logger.debug("compared %s and %s: identical: %s", root_a, root_b, identical)
    return {
        "run_a": str(root_a),
        "run_b": str(root_b),
        "identical_deterministic_parts": identical,
        "identity": identity,
        "identity_notes": notes,
        "config_differences": config_differences,
        "location_differences": location,
        "environment_differences": _environment_differences(report_a, report_b),
        "dataset_sha256": {"a": sha_a, "b": sha_b, "equal": identity["dataset_sha256"]},
        "intermediate_files": {"a": len(spills_a), "b": len(spills_b)},
        "metrics": metrics,
        "seed": int(seed),
        "significance_level": SIGNIFICANCE_LEVEL,
    }


def _compare_metric(
    report_a: dict, report_b: dict, name: str, repetitions_path: str | None, seed: int
) -> dict:
    """One headline metric of both runs, with a permutation test where both repeated it."""
    value_a, value_b = _number(_get(report_a, name)), _number(_get(report_b, name))
    difference = value_b - value_a if value_a is not None and value_b is not None else None
    result = {"a": value_a, "b": value_b, "difference": difference, "repetitions": None}
    if repetitions_path is None:
        result["note"] = "one value per run (no repetitions): no significance test"
        return result
    runs_a, runs_b = _get(report_a, repetitions_path), _get(report_b, repetitions_path)
    if not (isinstance(runs_a, list) and runs_a and isinstance(runs_b, list) and runs_b):
        result["note"] = f"no significance test: {repetitions_path} is not recorded in " + (
            "both runs" if not runs_a and not runs_b else "run a" if not runs_a else "run b"
        )
        return result
    try:
        test = permutation_pvalue(runs_a, runs_b, seed)
    except ValueError as exc:
        result["note"] = f"no significance test: {repetitions_path}: {exc}"
        return result
    result["repetitions"] = {
        "source": repetitions_path,
        "n_a": test["n_a"],
        "n_b": test["n_b"],
        "mean_a": sum(runs_a) / len(runs_a),
        "mean_b": sum(runs_b) / len(runs_b),
        "mean_difference": test["statistic"],
        "pvalue": test["pvalue"],
        "min_attainable_pvalue": test["min_attainable_pvalue"],
        "can_reach_0_05": test["can_reach_0_05"],
        "significant": test["pvalue"] < SIGNIFICANCE_LEVEL,
    }
    result["note"] = test["note"]
    return result


def _spill_digests(root: Path) -> dict[str, str]:
    """SHA-256 of each spilled chunk file, by relative path (symbolic links are skipped)."""
    folder = root / "intermediate"
    if not _is_real_dir(folder):
        return {}
    return {
        f"intermediate/{entry.name}": _file_digest(Path(entry.path), CHECKSUM_ALGORITHM)
        for entry in sorted(os.scandir(folder), key=lambda entry: entry.name)
        if SPILL_PATTERN.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
    }


def _spill_difference(spills_a: dict, spills_b: dict) -> str:
    only_a, only_b = sorted(set(spills_a) - set(spills_b)), sorted(set(spills_b) - set(spills_a))
    changed = sorted(p for p in set(spills_a) & set(spills_b) if spills_a[p] != spills_b[p])
    parts = [f"{len(spills_a)} vs {len(spills_b)} files"]
    if changed:
        parts.append(f"different content: {_short_list(changed)}")
    if only_a:
        parts.append(f"only in run a: {_short_list(only_a)}")
    if only_b:
        parts.append(f"only in run b: {_short_list(only_b)}")
    return "; ".join(parts)


def _environment_differences(report_a: dict, report_b: dict) -> dict:
    differences = {}
    for key in ("python_version", "platform", "package_version"):
        value_a = _get(report_a, f"reproducibility.{key}")
        value_b = _get(report_b, f"reproducibility.{key}")
        if value_a != value_b:
            differences[key] = (value_a, value_b)
    dependencies = _dict_differences(
        _get(report_a, "reproducibility.dependencies") or {},
        _get(report_b, "reproducibility.dependencies") or {},
    )
    differences.update({f"dependencies.{name}": pair for name, pair in dependencies.items()})
    return differences


# --------------------------------------------------------------------------------------
# Verify
# --------------------------------------------------------------------------------------


def verify_run(run_dir: str | Path) -> dict:
    """Check a run directory's files against its checksums and against the contract.

    Returns a dict with ``ok`` (no problem found), ``problems`` (one sentence each) and the
    details: ``missing`` (listed in checksums.json, gone), ``changed`` (content differs),
    ``unlisted`` (present but not listed; the lock file is ignored), ``invalid_entries``,
    ``symlinks`` (never followed), ``layout_missing`` (required by the contract for the
    report's sections) and ``removed_by_clean`` (required files that ``clean`` removed from
    this very run, per ``metadata/cleanup_log.jsonl``; not a problem).  A missing or
    unreadable checksums.json is a problem, named as such.

    Raises :class:`RunDirectoryError` when ``run_dir`` does not exist or holds neither a
    report nor a checksums.json.
    """
    root = _existing_dir(run_dir)
    if not (_is_real_file(root / REPORT) or _is_real_file(root / CHECKSUMS)):
        raise RunDirectoryError(
            f"{root} is not a run directory: it has neither {REPORT} nor {CHECKSUMS}"
        )
    files, symlinks = _scan(root)
    result: dict = {
        "run_dir": str(root),
        "ok": True,
        "problems": [],
        "checksums": {"path": CHECKSUMS, "present": CHECKSUMS in files},
        "checked": 0,
        "missing": [],
        "changed": [],
        "unlisted": [],
        "invalid_entries": [],
        "symlinks": symlinks,
        "layout_missing": [],
        "removed_by_clean": [],
    }
    problems = result["problems"]
    problems += [f"{path} is a symbolic link (not followed)" for path in symlinks]
    holder = _live_lock_holder(root)
    if holder is not None:
        problems.append(f"a run (pid {holder}) is writing into this directory right now")

    _verify_checksums(root, files, result)
    _verify_layout(root, files, result)
    result["ok"] = not problems
    logger.debug("verified %s: %d problem(s)", root, len(problems))
    return result


def _verify_checksums(root: Path, files: set[str], result: dict) -> None:
    problems = result["problems"]
    if CHECKSUMS not in files:
        problems.append(
            f"{CHECKSUMS} is missing: file contents cannot be verified "
            "(runs write it at the end; nba_pipeline.run_inspection.write_checksums adds one)"
        )
        return
    try:
        manifest = json.loads((root / CHECKSUMS).read_text(encoding="utf-8"))
        algorithm, listed = manifest["algorithm"], manifest["files"]
        if not isinstance(listed, dict) or algorithm not in hashlib.algorithms_available:
            raise ValueError(f"algorithm {algorithm!r} or files of type {type(listed).__name__}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problems.append(f"{CHECKSUMS} cannot be read as a checksum manifest: {exc}")
        return
    result["checksums"].update({"algorithm": algorithm, "listed": len(listed)})

    for path, expected in sorted(listed.items()):
        if not _safe_relative(path) or not isinstance(expected, str):
            result["invalid_entries"].append(path)
        elif path not in files:
            if path not in result["symlinks"]:
                result["missing"].append(path)
        elif _file_digest(root / path, algorithm) != expected.lower():
            result["changed"].append(path)
        else:
            result["checked"] += 1
    ignored = {CHECKSUMS, LOCK_FILE_NAME}
    result["unlisted"] = sorted(files - set(listed) - ignored)

    for key, sentence in (
        ("missing", "listed in checksums.json but missing"),
        ("changed", "content differs from checksums.json"),
        ("unlisted", "present but not listed in checksums.json"),
        ("invalid_entries", "invalid entry in checksums.json (path or digest)"),
    ):
        problems += [f"{path}: {sentence}" for path in result[key]]


def _verify_layout(root: Path, files: set[str], result: dict) -> None:
    problems = result["problems"]
    required = [REPORT, MANIFEST]
    try:
        report = _load_report(root)
    except RunDirectoryError as exc:
        report = {}
        if REPORT in files:
            problems.append(str(exc))
    required += [
        path for section, paths in LAYOUT_BY_SECTION.items() if section in report for path in paths
    ]
    cleaned = _cleaned_paths(root) if report else set()
    for path in required:
        if path in files:
            continue
        if path in cleaned:
            result["removed_by_clean"].append(path)
        else:
            result["layout_missing"].append(path)
            problems.append(f"{path}: required by the artifact contract but absent")

    if report and MANIFEST in files:
        try:
            manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{MANIFEST} cannot be read: {exc}")
        else:
            if manifest != report.get("reproducibility"):
                problems.append(f"{MANIFEST} differs from the report's reproducibility section")


def _cleaned_paths(root: Path) -> set[str]:
    """Paths that ``clean`` removed from this run (records of this very report only)."""
    log = root / CLEANUP_LOG
    if not _is_real_file(log):
        return set()
    try:
        report_digest = _file_digest(root / REPORT, CHECKSUM_ALGORITHM)
        lines = log.read_text(encoding="utf-8").splitlines()
    except OSError:
        return set()
    cleaned: set[str] = set()
    for line in lines:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            record = json.loads(line)
            if record.get("report_sha256") == report_digest:
                cleaned.update(record.get("removed", []))
    return cleaned


# --------------------------------------------------------------------------------------
# Clean
# --------------------------------------------------------------------------------------


def clean_run(
    run_dir: str | Path,
    intermediate: bool = True,
    dry_run: bool = False,
    include_reports: bool = False,
    *,
    archive: bool = False,
) -> dict:
    """Delete a run's disposable files, following the contract's retention advice.

    - ``intermediate``: the spilled chunks ``intermediate/stream_chunk_*_X.csv`` / ``_y.csv``
      (and the folder when that leaves it empty);
    - ``archive``: the archive-class artifacts ``reports/streaming_chunks.jsonl``,
      ``profiles/operator_profile.csv`` and the three PNG plots;
    - ``include_reports``: retire the run altogether: also the keep-indefinitely files
      (``pipeline_report.json``, ``run_manifest.json``, ``constraint_experiment.csv``) and
      every other file the pipeline writes, then the folders left empty.  Files the pipeline
      does not write are kept and listed in ``kept``.

    Without ``include_reports`` the keep-indefinitely files are never touched.  After
    deleting, the entries of the deleted files are dropped from ``metadata/checksums.json``
    when it exists (other entries are left as they were, so earlier damage still shows in
    ``verify``) and the removal is appended to ``metadata/cleanup_log.jsonl``.  With
    ``dry_run`` nothing changes and the result lists what would be deleted.

    Returns a dict with ``deleted`` (relative paths), ``bytes_freed``, ``removed_dirs``,
    ``skipped`` (symbolic links, never followed), ``checksums`` (what happened to
    checksums.json), ``run_removed`` and ``kept``.  Raises :class:`RunDirectoryError` when
    ``run_dir`` is not a run directory or a live run holds it.
    """
    root = _run_dir(run_dir)
    _check_not_in_use(root)
    candidates, skipped = _clean_candidates(root, intermediate, archive, include_reports)
    freed = sum(os.lstat(root / path).st_size for path in candidates)
    result = {
        "run_dir": str(root),
        "dry_run": bool(dry_run),
        "deleted": candidates,
        "bytes_freed": freed,
        "removed_dirs": [],
        "skipped": skipped,
        "checksums": "absent",
        "run_removed": False,
        "kept": [],
    }
    has_checksums = _is_real_file(root / CHECKSUMS)
    if dry_run:
        if has_checksums:
            result["checksums"] = "would be updated" if candidates else "unchanged"
        if include_reports:
            result["checksums"] = "would be removed" if has_checksums else "absent"
        return result

    with _holding(root):
        report_digest = _file_digest(root / REPORT, CHECKSUM_ALGORITHM)
        for path in candidates:
            (root / path).unlink()
            logger.debug("deleted %s", root / path)
        if include_reports:
            result["checksums"] = "removed" if has_checksums else "absent"
        elif candidates:
            _append_cleanup_record(root, report_digest, candidates, result["bytes_freed"])
            if has_checksums:
                result["checksums"] = _drop_checksum_entries(root, candidates)
        elif has_checksums:
            result["checksums"] = "unchanged"
        folders = RUN_FOLDERS if include_reports else ("intermediate",)
        result["removed_dirs"] = _remove_empty_folders(root, folders)

    if include_reports:
        files, links = _scan(root)
        result["kept"] = sorted(files | set(links))
        if not result["kept"]:
            with contextlib.suppress(OSError):
                root.rmdir()
                result["run_removed"] = True
    logger.info("cleaned %s: %d file(s), %d bytes freed", root, len(candidates), freed)
    return result


def clean_runs_older_than(
    parent_dir: str | Path,
    days: float,
    include_reports: bool = False,
    dry_run: bool = False,
    *,
    now: float | None = None,
) -> dict:
    """Clean every run under ``parent_dir`` whose report is older than ``days`` days.

    A run is a direct subfolder (not a symbolic link) holding ``reports/pipeline_report.json``;
    its age is that file's modification time.  An old run loses its spill files and its
    archive-class artifacts (:func:`clean_run` with ``archive=True``); with
    ``include_reports`` it is retired entirely.  Runs held by a live process are skipped.

    Returns ``parent_dir``, ``days``, ``dry_run``, ``cleaned`` (one :func:`clean_run` result
    each, with ``age_days``), ``recent`` and ``skipped`` (run, reason) and ``bytes_freed``.
    Raises :class:`RunDirectoryError` when ``parent_dir`` is not a directory or is itself a
    run, and :class:`~nba_pipeline.errors.PipelineError` for a negative ``days``.
    """
    if not isinstance(days, int | float) or not math.isfinite(days) or days < 0:
        raise PipelineError(f"--older-than must be a number of days >= 0, got {days!r}")
    parent = _existing_dir(parent_dir)
    if _is_real_file(parent / REPORT):
        raise RunDirectoryError(
            f"{parent} is itself a run directory; --older-than takes the folder that holds "
            "runs (use --intermediate to clean one run)"
        )
    now = time.time() if now is None else now
    result = {
        "parent_dir": str(parent),
        "days": days,
        "dry_run": bool(dry_run),
        "cleaned": [],
        "recent": [],
        "skipped": [],
        "bytes_freed": 0,
    }
    for entry in sorted(os.scandir(parent), key=lambda entry: entry.name):
        report = Path(entry.path) / REPORT
        if not entry.is_dir(follow_symlinks=False) or not _is_real_file(report):
            continue
        age_days = (now - report.lstat().st_mtime) / _SECONDS_PER_DAY
        if age_days <= days:
            result["recent"].append({"run": entry.name, "age_days": age_days})
            continue
        try:
            cleaned = clean_run(
                entry.path, True, dry_run, include_reports=include_reports, archive=True
            )
        except RunDirectoryError as exc:
            result["skipped"].append({"run": entry.name, "reason": str(exc)})
            continue
        cleaned["age_days"] = age_days
        result["cleaned"].append(cleaned)
        result["bytes_freed"] += cleaned["bytes_freed"]
    logger.info(
        "%s %d run(s) older than %g days under %s, %d recent",
        "would clean" if dry_run else "cleaned",
        len(result["cleaned"]),
        days,
        parent,
        len(result["recent"]),
    )
    return result


def _clean_candidates(
    root: Path, intermediate: bool, archive: bool, include_reports: bool
) -> tuple[list[str], list[dict]]:
    """Regular files to delete, and the symbolic links met on the way (left alone)."""
    wanted: list[str] = []
    if intermediate or include_reports:
        folder = root / "intermediate"
        if _is_real_dir(folder):
            wanted += sorted(
                f"intermediate/{entry.name}"
                for entry in os.scandir(folder)
                if SPILL_PATTERN.fullmatch(entry.name)
            )
    if archive or include_reports:
        wanted += ARCHIVE_CLASS
    if include_reports:
        wanted += (*KEEP_CLASS, *OTHER_RUN_FILES)

    candidates, skipped = [], []
    if (intermediate or include_reports) and (root / "intermediate").is_symlink():
        skipped.append({"path": "intermediate", "reason": "symbolic link, not followed"})
    for path in dict.fromkeys(wanted):
        kind = _path_kind(root, path)
        if kind == "file":
            candidates.append(path)
        elif kind == "symlink":
            skipped.append({"path": path, "reason": "symbolic link, not followed"})
    return candidates, skipped


def _drop_checksum_entries(root: Path, deleted: list[str]) -> str:
    """Remove deleted files from checksums.json, leaving every other entry as it was."""
    path = root / CHECKSUMS
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        listed = manifest["files"]
        dropped = [name for name in deleted if listed.pop(name, None) is not None]
        # The cleanup log changed too: it is the one file clean writes.
        listed[CLEANUP_LOG] = _file_digest(root / CLEANUP_LOG, manifest["algorithm"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("left %s as it was: it cannot be read (%s)", path, exc)
        return f"left as it was: unreadable ({exc})"
    _write_json_atomically(path, manifest)
    return f"updated: {len(dropped)} entr{'y' if len(dropped) == 1 else 'ies'} removed"


def _append_cleanup_record(root: Path, report_digest: str, removed: list[str], freed: int):
    record = {
        "cleaned_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "report_sha256": report_digest,
        "removed": removed,
        "bytes_freed": freed,
    }
    log = root / CLEANUP_LOG
    if log.is_symlink():
        raise RunDirectoryError(f"{log} is a symbolic link; refusing to write through it")
    previous = log.read_text(encoding="utf-8") if log.is_file() else ""
    _write_text_atomically(log, previous + json.dumps(record, sort_keys=True) + "\n")


def _remove_empty_folders(root: Path, folders: tuple[str, ...]) -> list[str]:
    removed = []
    for name in folders:
        folder = root / name
        if _is_real_dir(folder) and not any(folder.iterdir()):
            folder.rmdir()
            removed.append(name)
    return removed


@contextlib.contextmanager
def _holding(root: Path) -> Iterator[None]:
    """Hold the run's lock file (the runner's protocol: the holder's pid) while cleaning."""
    lock = root / LOCK_FILE_NAME
    _check_not_in_use(root)
    lock.unlink(missing_ok=True)  # stale: its process is gone
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise RunDirectoryError(f"{root} was locked by another process meanwhile") from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _check_not_in_use(root: Path) -> None:
    holder = _live_lock_holder(root)
    if holder is not None:
        raise RunDirectoryError(f"{root} is in use by a live run (pid {holder}); try again later")


def _live_lock_holder(root: Path) -> int | None:
    lock = root / LOCK_FILE_NAME
    if not _is_real_file(lock):
        return None
    try:
        pid = int(lock.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


# --------------------------------------------------------------------------------------
# Text for the command line
# --------------------------------------------------------------------------------------


def format_comparison(result: dict) -> str:
    """Render :func:`compare_runs` as a readable table."""
    verdict = "yes" if result["identical_deterministic_parts"] else "NO"
    lines = [
        f"run a: {result['run_a']}",
        f"run b: {result['run_b']}",
        f"identical deterministic parts: {verdict}",
    ]
    for part, same in result["identity"].items():
        state = "not compared" if same is None else "same" if same else "DIFFERENT"
        note = result["identity_notes"].get(part, "").removeprefix("not compared: ")
        lines.append(f"  {part:<20} {state}" + (f" ({note})" if note else ""))
    for key, (value_a, value_b) in result["config_differences"].items():
        lines.append(f"  config {key}: {value_a!r} -> {value_b!r}")
    for key, (value_a, value_b) in result["environment_differences"].items():
        lines.append(f"  environment {key}: {value_a!r} -> {value_b!r} (not counted)")

    lines += ["", f"{'metric':<30}{'run a':>13}{'run b':>13}{'b - a':>13}  p-value (floor)"]
    for name, metric in result["metrics"].items():
        tested = metric["repetitions"]
        if tested is None:
            test = "no repetitions" if "no repetitions" in metric["note"] else "not recorded"
        else:
            mark = " significant" if tested["significant"] else ""
            test = f"{tested['pvalue']:.3g} ({tested['min_attainable_pvalue']:.3g}){mark}"
        lines.append(
            f"{name:<30}{_num(metric['a']):>13}{_num(metric['b']):>13}"
            f"{_num(metric['difference'], signed=True):>13}  {test}"
        )
    return "\n".join(lines)


def format_verification(result: dict) -> str:
    """Render :func:`verify_run` as one verdict line and one line per problem."""
    head = f"{result['run_dir']}: " + ("ok" if result["ok"] else "PROBLEMS FOUND")
    details = f" ({result['checked']} file(s) match checksums.json"
    if not result["checksums"]["present"]:
        details = " (no checksums.json"
    if result["removed_by_clean"]:
        details += f"; {len(result['removed_by_clean'])} removed by clean"
    lines = [head + details + ")"]
    lines += [f"  {problem}" for problem in result["problems"]]
    return "\n".join(lines)


def format_cleanup(result: dict) -> str:
    """Render :func:`clean_run` or :func:`clean_runs_older_than` for people."""
    if "cleaned" not in result:
        return "\n".join(_cleanup_lines(result))
    verb = "would clean" if result["dry_run"] else "cleaned"
    lines = [
        f"{result['parent_dir']}: {verb} {len(result['cleaned'])} run(s) older than "
        f"{result['days']:g} day(s), {len(result['recent'])} recent run(s) left alone"
    ]
    for run in result["cleaned"]:
        lines += [f"  {line}" for line in _cleanup_lines(run)]
    lines += [f"  skipped {item['run']}: {item['reason']}" for item in result["skipped"]]
    freed = "would free" if result["dry_run"] else "freed"
    lines.append(f"total {freed}: {_bytes(result['bytes_freed'])}")
    return "\n".join(lines)


def _cleanup_lines(result: dict) -> list[str]:
    verb = "would delete" if result["dry_run"] else "deleted"
    lines = [
        f"{result['run_dir']}: {verb} {len(result['deleted'])} file(s), "
        f"{_bytes(result['bytes_freed'])}; checksums.json: {result['checksums']}"
    ]
    spills = [path for path in result["deleted"] if path.startswith("intermediate/")]
    if spills:
        lines.append(f"  intermediate/stream_chunk_*_X.csv / _y.csv: {len(spills)} file(s)")
    lines += [f"  {path}" for path in result["deleted"] if path not in spills]
    lines += [f"  skipped {item['path']}: {item['reason']}" for item in result["skipped"]]
    if result["run_removed"]:
        lines.append("  run directory removed")
    elif result["kept"]:
        lines.append(f"  kept files the pipeline did not write: {_short_list(result['kept'])}")
    return lines


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _existing_dir(path: str | Path) -> Path:
    """``path`` resolved (a link naming the directory itself is fine), or an error."""
    root = Path(path)
    if not root.is_dir():
        reason = "does not exist" if not root.exists() else "is not a directory"
        raise RunDirectoryError(f"{root} {reason}")
    return root.resolve()


def _run_dir(path: str | Path) -> Path:
    root = _existing_dir(path)
    if not _is_real_file(root / REPORT):
        raise RunDirectoryError(f"{root} is not a run directory: {REPORT} is missing")
    return root


def _load_report(root: Path) -> dict:
    try:
        report = json.loads((root / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDirectoryError(f"{root / REPORT} cannot be read: {exc}") from None
    if not isinstance(report, dict):
        raise RunDirectoryError(f"{root / REPORT} does not hold a JSON object")
    return report


def _config(root: Path, report: dict) -> dict:
    config = _get(report, "reproducibility.config")
    if isinstance(config, dict):
        return config
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        if isinstance(manifest.get("config"), dict):
            return manifest["config"]
    raise RunDirectoryError(f"{root}: neither {REPORT} nor {MANIFEST} holds the configuration")


def _get(data: dict, dotted: str):
    value = data
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _number(value) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _dict_differences(a: dict, b: dict) -> dict:
    return {
        key: (a.get(key), b.get(key))
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key) or (key in a) != (key in b)
    }


def _scan(root: Path) -> tuple[set[str], list[str]]:
    """Regular files under ``root`` (relative, forward slashes) and the symbolic links met.

    Symbolic links, to files or folders, are listed but never followed.
    """
    files: set[str] = set()
    symlinks: list[str] = []
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        base = PurePosixPath(Path(folder).relative_to(root).as_posix())
        for name in dirnames + filenames:
            full = Path(folder, name)
            relative = (base / name).as_posix()
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                symlinks.append(relative)
            elif stat.S_ISREG(mode):
                files.add(relative)
    return files, sorted(symlinks)


def _path_kind(root: Path, relative: str) -> str:
    """'file', 'symlink' (the path or a folder on it is a link) or 'absent'."""
    current = root
    for part in PurePosixPath(relative).parts:
        current = current / part
        try:
            mode = current.lstat().st_mode
        except FileNotFoundError:
            return "absent"
        if stat.S_ISLNK(mode):
            return "symlink"
    return "file" if stat.S_ISREG(mode) else "absent"


def _is_real_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _safe_relative(path) -> bool:
    if not isinstance(path, str) or not path or "\\" in path:
        return False
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts and pure.as_posix() == path


def _file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json_atomically(path: Path, data: dict) -> None:
    _write_text_atomically(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _write_text_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    logger.debug("wrote %s", path)


def _short_list(paths: list[str], limit: int = 3) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    sign = "+" if signed else ""
    return f"{value:{sign},.0f}" if abs(value) >= 1000 else f"{value:{sign}.4g}"


def _bytes(count: int) -> str:
    return f"{count} bytes" if count < 1024 else f"{count / 1024:.1f} KiB"
