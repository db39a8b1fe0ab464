"""Cleaning up after runs, following the artifact contract's retention advice.

Spill files go after the run, archive-class artifacts after a while, reports never unless
asked.  Cleaning keeps ``checksums.json`` in step, records what it removed in
``metadata/cleanup_log.jsonl`` and holds the run's lock file while it deletes.
"""

from __future__ import annotations

import contextlib
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

from ..errors import PipelineError
from .common import (
    RunDirectoryError,
    existing_dir,
    file_digest,
    is_real_dir,
    is_real_file,
    live_lock_holder,
    run_directory,
    scan,
    write_json_atomically,
    write_text_atomically,
)
from .layout import (
    ARCHIVE_CLASS,
    CHECKSUM_ALGORITHM,
    CHECKSUMS,
    CLEANUP_LOG,
    FEATURE_PART_PATTERN,
    FEATURE_PARTS_DIR,
    KEEP_CLASS,
    LOCK_FILE_NAME,
    OTHER_RUN_FILES,
    REPORT,
    RUN_FOLDERS,
    SPILL_PATTERN,
)

logger = logging.getLogger(__package__)

_SECONDS_PER_DAY = 86_400.0


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
    root = run_directory(run_dir)
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
    has_checksums = is_real_file(root / CHECKSUMS)
    if dry_run:
        if has_checksums:
            result["checksums"] = "would be updated" if candidates else "unchanged"
        if include_reports:
            result["checksums"] = "would be removed" if has_checksums else "absent"
        return result

    with _holding(root):
        report_digest = file_digest(root / REPORT, CHECKSUM_ALGORITHM)
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
        files, links = scan(root)
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
    parent = existing_dir(parent_dir)
    if is_real_file(parent / REPORT):
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
        if not entry.is_dir(follow_symlinks=False) or not is_real_file(report):
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
        wanted += _matching_files(root, "intermediate", SPILL_PATTERN)
    if archive or include_reports:
        wanted += ARCHIVE_CLASS
    if include_reports:
        wanted += (*KEEP_CLASS, *OTHER_RUN_FILES)
        wanted += _matching_files(root, FEATURE_PARTS_DIR, FEATURE_PART_PATTERN)

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


def _matching_files(root: Path, folder: str, pattern: re.Pattern) -> list[str]:
    """Relative paths of the entries of ``root/folder`` whose names match ``pattern``."""
    if not is_real_dir(root / folder):
        return []
    return sorted(
        f"{folder}/{entry.name}"
        for entry in os.scandir(root / folder)
        if pattern.fullmatch(entry.name)
    )


def _drop_checksum_entries(root: Path, deleted: list[str]) -> str:
    """Remove deleted files from checksums.json, leaving every other entry as it was."""
    path = root / CHECKSUMS
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        listed = manifest["files"]
        dropped = [name for name in deleted if listed.pop(name, None) is not None]
        # The cleanup log changed too: it is the one file clean writes.
        listed[CLEANUP_LOG] = file_digest(root / CLEANUP_LOG, manifest["algorithm"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("left %s as it was: it cannot be read (%s)", path, exc)
        return f"left as it was: unreadable ({exc})"
    write_json_atomically(path, manifest)
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
    write_text_atomically(log, previous + json.dumps(record, sort_keys=True) + "\n")


def _remove_empty_folders(root: Path, folders: tuple[str, ...]) -> list[str]:
    removed = []
    for name in folders:
        folder = root / name
        if is_real_dir(folder) and not any(folder.iterdir()):
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
    holder = live_lock_holder(root)
    if holder is not None:
        raise RunDirectoryError(f"{root} is in use by a live run (pid {holder}); try again later")


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
