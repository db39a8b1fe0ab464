"""Verifying one run against its checksums and against the artifact contract."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path, PurePosixPath

from .common import (
    RunDirectoryError,
    existing_dir,
    file_digest,
    is_real_file,
    live_lock_holder,
    load_report,
    scan,
)
from .layout import (
    CHECKSUM_ALGORITHM,
    CHECKSUMS,
    CLEANUP_LOG,
    LAYOUT_BY_SECTION,
    LOCK_FILE_NAME,
    MANIFEST,
    REPORT,
)

logger = logging.getLogger(__package__)


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
    root = existing_dir(run_dir)
    if not (is_real_file(root / REPORT) or is_real_file(root / CHECKSUMS)):
        raise RunDirectoryError(
            f"{root} is not a run directory: it has neither {REPORT} nor {CHECKSUMS}"
        )
    files, symlinks = scan(root)
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
    holder = live_lock_holder(root)
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
            "(runs write it at the end; nba_pipeline.inspection.write_checksums adds one)"
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
        elif file_digest(root / path, algorithm) != expected.lower():
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
        report = load_report(root)
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
    if not is_real_file(log):
        return set()
    try:
        report_digest = file_digest(root / REPORT, CHECKSUM_ALGORITHM)
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


def _safe_relative(path) -> bool:
    if not isinstance(path, str) or not path or "\\" in path:
        return False
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts and pure.as_posix() == path
