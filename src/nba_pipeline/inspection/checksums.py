"""The checksum manifest of a run directory, ``metadata/checksums.json``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .common import existing_dir, file_digest, is_real_file, scan, write_json_atomically
from .layout import CHECKSUM_ALGORITHM, CHECKSUMS, LOCK_FILE_NAME

logger = logging.getLogger(__package__)


def compute_checksums(run_dir: str | Path) -> dict:
    """Return the checksum manifest of every file under ``run_dir``.

    The format is ``{"algorithm": "sha256", "files": {path: hex digest}}`` with paths
    relative to ``run_dir`` in forward slashes and sorted.  ``metadata/checksums.json``
    itself and the lock file ``.nba-pipeline.lock`` are left out; symbolic links are neither
    followed nor listed (a warning names them).
    """
    root = existing_dir(run_dir)
    files, symlinks = scan(root)
    for link in symlinks:
        logger.warning("not checksummed: %s is a symbolic link", root / link)
    listed = sorted(path for path in files if path not in (CHECKSUMS, LOCK_FILE_NAME))
    return {
        "algorithm": CHECKSUM_ALGORITHM,
        "files": {path: file_digest(root / path, CHECKSUM_ALGORITHM) for path in listed},
    }


def write_checksums(run_dir: str | Path) -> Path:
    """Write :func:`compute_checksums` of ``run_dir`` to ``metadata/checksums.json``.

    The file is written to a temporary sibling and renamed, with sorted keys, so the same
    files always give the same bytes.  Returns the path written; raises
    :class:`~nba_pipeline.errors.OutputError` when it cannot be written.
    """
    root = existing_dir(run_dir)
    manifest = compute_checksums(root)
    path = root / CHECKSUMS
    write_json_atomically(path, manifest)
    logger.info("checksums of %d files written to %s", len(manifest["files"]), path)
    return path


def refresh_checksum(run_dir: str | Path, path: str | Path) -> bool:
    """Update the one entry of ``path`` in an existing ``checksums.json``.

    Used when a single artifact is regenerated on purpose (``nba-pipeline report``); every
    other entry keeps guarding its file.  Returns False when the run has no checksums.
    """
    root = existing_dir(run_dir)
    manifest_path = root / CHECKSUMS
    if not is_real_file(manifest_path):
        return False
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    relative = Path(path).resolve().relative_to(root.resolve()).as_posix()
    manifest["files"][relative] = file_digest(root / relative, manifest["algorithm"])
    manifest["files"] = dict(sorted(manifest["files"].items()))
    write_json_atomically(manifest_path, manifest)
    return True
