"""Helpers shared by the inspection modules.

Finding and reading run directories, scanning and hashing their files without following
symbolic links, writing files atomically, and reading the lock file of a live run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from pathlib import Path, PurePosixPath

from ..errors import OutputError, PipelineError
from .layout import LOCK_FILE_NAME, REPORT

logger = logging.getLogger(__package__)

_HASH_BLOCK = 1 << 20


class RunDirectoryError(PipelineError):
    """A path is missing, is not a run directory, or a run in it cannot be read or locked."""

    exit_code = 3


def existing_dir(path: str | Path) -> Path:
    """``path`` resolved (a link naming the directory itself is fine), or an error."""
    root = Path(path)
    if not root.is_dir():
        reason = "does not exist" if not root.exists() else "is not a directory"
        raise RunDirectoryError(f"{root} {reason}")
    return root.resolve()


def run_directory(path: str | Path) -> Path:
    root = existing_dir(path)
    if not is_real_file(root / REPORT):
        raise RunDirectoryError(f"{root} is not a run directory: {REPORT} is missing")
    return root


def load_report(root: Path) -> dict:
    try:
        report = json.loads((root / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDirectoryError(f"{root / REPORT} cannot be read: {exc}") from None
    if not isinstance(report, dict):
        raise RunDirectoryError(f"{root / REPORT} does not hold a JSON object")
    return report


def scan(root: Path) -> tuple[set[str], list[str]]:
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


def is_real_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomically(path: Path, data: dict) -> None:
    write_text_atomically(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_text_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    logger.debug("wrote %s", path)


def short_list(paths: list[str], limit: int = 3) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def live_lock_holder(root: Path) -> int | None:
    lock = root / LOCK_FILE_NAME
    if not is_real_file(lock):
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
