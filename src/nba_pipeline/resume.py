"""Crash resume of the main streaming run: a journal of committed chunks in the output dir.

With ``spill_to_disk`` on, ``nba-pipeline run`` journals its streaming run in
``OUTPUT_DIR/.resume/``:

``meta.json``
    written by the parent before the streaming worker starts: the input's fingerprint
    (SHA-256, record and column counts), every configuration key except ``output_dir``,
    and the library versions the pickled states depend on.
``pass1.pkl``
    the fitted state of pass 1, its counters and the chunk size it left in force.
``journal.jsonl``
    one line per committed chunk of pass 2: the input it covered (byte offsets and line
    numbers), its spill files and their sizes, the held-out spool and quarantine positions,
    the name of its state file and the chunk record.  The line is the commit point.
``state_<k>.pkl``
    after chunk k: the online model (SGD regressor plus the rows waiting for the next
    update, counters, prequential sums), the rolling-salary history, the adaptive chunk
    size and the accumulated spill and training times.  Only the newest is kept.
``heldout_X.f64``, ``heldout_y.f64``, ``quarantine.pkl``
    the held-out rows and quarantined rows so far, append-only; a resume cuts them back to
    the positions of the last journal line.

Every file is written to a temporary name, flushed with ``fsync`` and renamed; appends are
``fsync``-ed before the journal line that covers them.  ``nba-pipeline run --resume``
checks ``meta.json`` against the input and configuration it is given, then the worker
continues after the last journal line.  The directory is removed once the run's artifacts
are written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path

from .config import PipelineConfig
from .errors import ResumeError

logger = logging.getLogger(__name__)

RESUME_DIR = ".resume"
META = "meta.json"
JOURNAL = "journal.jsonl"
PASS1 = "pass1.pkl"
QUARANTINE = "quarantine.pkl"
SYNCED = "synced.json"
# Longest time between two fsync barriers of the journal.  A killed process loses nothing
# that was committed (the operating system still holds every write); a power loss or kernel
# crash loses at most this much of the stream, which is then recomputed.
SYNC_INTERVAL_S = 1.0
FORMAT = 1
# The pickled model and states must be read by the libraries that wrote them.
_VERSIONED = ("numpy", "pandas", "scikit-learn", "pyarrow", "nba-pipeline")
# Where a run writes and on which machines its other stages run do not change what the
# streaming run computes (and a scheduler address may carry credentials: never journalled).
_NOT_COMPARED = ("output_dir", "scheduler")


def resume_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / RESUME_DIR


def identity(config: PipelineConfig, fingerprint: dict) -> dict:
    """What a journal belongs to: input bytes, configuration, interpreter and libraries."""
    return {
        "format": FORMAT,
        "input": {
            "sha256": fingerprint["sha256"],
            "row_count": fingerprint["row_count"],
            "column_count": fingerprint["column_count"],
            "source": fingerprint.get("source"),
        },
        "config": {
            key: value for key, value in config.to_dict().items() if key not in _NOT_COMPARED
        },
        "versions": {
            "python": platform.python_version(),
            **{name: _version(name) for name in _VERSIONED},
        },
    }


def start_journal(output_dir: str | Path, ident: dict) -> Path:
    """A fresh journal for a new run (an old one, of an interrupted run, is discarded)."""
    directory = resume_dir(output_dir)
    if directory.exists():
        logger.warning(
            "discarding the journal of an interrupted run in %s (pass --resume to continue "
            "such a run instead of starting over)",
            directory,
        )
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    meta = {**ident, "boot_id": boot_id()}
    write_atomically(directory / META, (json.dumps(meta, indent=2) + "\n").encode())
    return directory


def check_resumable(output_dir: str | Path, ident: dict) -> int:
    """Refuse unless ``output_dir`` holds a journal of this input and configuration.

    Returns how many chunks the journal has committed.
    """
    directory = resume_dir(output_dir)
    meta_path = directory / META
    if not meta_path.is_file():
        raise ResumeError(
            f"nothing to resume in {output_dir}: no journal {meta_path} (only a streaming run "
            "with spill_to_disk on is journalled, and a run that finished removes its "
            "journal); run again without --resume"
        )
    try:
        journalled = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResumeError(
            f"cannot resume: the journal {meta_path} is unreadable ({exc})"
        ) from None
    differences = describe_differences(journalled, ident)
    if differences:
        raise ResumeError(
            f"cannot resume the run in {output_dir}: " + "; ".join(differences) + " (the "
            "journalled run's value first); resume with the same input and settings, or run "
            "again without --resume to start over"
        )
    return len(read_entries(directory))


def describe_differences(journalled: dict, current: dict) -> list[str]:
    """One phrase per difference between a journal's identity and the current one."""
    if journalled.get("format") != current["format"]:
        return [f"journal format {journalled.get('format')} is not {current['format']}"]
    out = []
    was, now = journalled.get("input", {}), current["input"]
    if was.get("sha256") != now["sha256"]:
        out.append(
            f"different input: {now['source']} has SHA-256 {now['sha256'][:16]}… and "
            f"{now['row_count']} rows, the journalled input {was.get('source')} had "
            f"{str(was.get('sha256'))[:16]}… and {was.get('row_count')} rows"
        )
    was_config, now_config = journalled.get("config", {}), current["config"]
    changed = [
        f"{key} {was_config.get(key)!r} != {now_config.get(key)!r}"
        for key in sorted(set(was_config) | set(now_config))
        if was_config.get(key) != now_config.get(key)
    ]
    if changed:
        out.append("different config: " + ", ".join(changed))
    was_versions, now_versions = journalled.get("versions", {}), current["versions"]
    changed = [
        f"{name} {was_versions.get(name)} != {now_versions.get(name)}"
        for name in sorted(set(was_versions) | set(now_versions))
        if was_versions.get(name) != now_versions.get(name)
    ]
    if changed:
        out.append("different library versions: " + ", ".join(changed))
    return out


def finish(output_dir: str | Path) -> None:
    """Remove the journal: the run it belongs to has written its artifacts."""
    directory = resume_dir(output_dir)
    if directory.exists():
        shutil.rmtree(directory)
        logger.debug("removed the resume journal %s", directory)


def read_entries(directory: Path) -> list[dict]:
    """The committed journal lines, in order; a torn last line (a crash mid-write) is
    ignored, as is anything after a line that does not continue the sequence."""
    path = directory / JOURNAL
    if not path.is_file():
        return []
    entries = []
    for line in path.read_bytes().split(b"\n")[:-1]:  # the part after the last \n is torn
        try:
            entry = json.loads(line)
        except ValueError:
            break
        if entry.get("chunk_id") != len(entries) + 1:
            break
        entries.append(entry)
    return entries


def write_atomically(path: Path, data: bytes, sync: bool = True) -> None:
    """Temporary sibling, ``fsync``, rename, ``fsync`` of the folder (without ``sync`` the
    caller's barrier does the ``fsync`` calls later)."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        if sync:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, path)
    if sync:
        sync_dir(path.parent)


def sync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class StreamJournal:
    """The worker's side: pass-1 state, chunk commits, and what a resume restores.

    ``resume=False`` empties the journal (keeping ``meta.json``); ``resume=True`` reads the
    committed lines and cuts the append-only files back to the last of them.  The lines
    stay in ``entries`` only until :meth:`restore_spills` has checked them (the worker's
    memory must not grow with the stream); :attr:`last` is the newest commit.
    """

    def __init__(self, directory: str | Path, resume: bool) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.entries = read_entries(self.directory) if resume else []
        if self.entries and not _same_boot(self.directory):
            # The machine restarted since the journal was written: only chunks behind the
            # last fsync barrier are certainly on the disk.
            synced = _read_json(self.directory / SYNCED).get("chunk_id", 0)
            logger.warning(
                "the machine restarted since the run was journalled: resuming after chunk "
                "%d, the last one synced to disk (of %d committed)",
                synced,
                len(self.entries),
            )
            self.entries = self.entries[:synced]
        if not resume:
            for path in self.directory.iterdir():
                if path.name != META and path.is_file():
                    path.unlink()
        last = self.entries[-1] if self.entries else None
        self._last = last
        # Rewrite the journal without a torn tail, then append to it.
        write_atomically(
            self.directory / JOURNAL,
            b"".join(json.dumps(entry).encode() + b"\n" for entry in self.entries),
        )
        self._journal = (self.directory / JOURNAL).open("ab")
        self.quarantine_parts = self._restore_quarantine(last)
        self._quarantine = (self.directory / QUARANTINE).open("ab")
        self.state = self._load(last["state_file"]) if last else None
        self.pass1 = self._load(PASS1) if resume and (self.directory / PASS1).is_file() else None
        if last:
            for stale in self.directory.glob("state_*.pkl"):
                if stale.name != last["state_file"]:
                    stale.unlink()
        # The restored point is the new barrier (everything it needs was read back whole).
        self._synced_id = last["chunk_id"] if last else 0
        self._synced_state = last["state_file"] if last else None
        self._previous_state = None
        self._synced_at = time.monotonic()
        self._unsynced_spills: list[Path] = []
        self._held_out = None
        if resume:
            write_atomically(
                self.directory / SYNCED, json.dumps({"chunk_id": self._synced_id}).encode()
            )

    @property
    def last(self) -> dict | None:
        return self._last

    def resume_position(self) -> dict | None:
        """Where the input continues: the last committed chunk's end, or None."""
        if self.last is None:
            return None
        position = self.last["input"]
        if position["end_offset"] is None:
            raise ResumeError("cannot resume: the journalled input did not record its offsets")
        return position

    def save_pass1(self, payload: dict) -> None:
        write_atomically(self.directory / PASS1, pickle.dumps(payload, pickle.HIGHEST_PROTOCOL))

    def held_out_spool(self):
        from .heldout import HeldOutSpool

        rows = self.last["held_out_rows"] if self.last else 0
        columns = self.state["held_out_columns"] if self.state else None
        for name, values in (("heldout_X.f64", rows * (columns or 0)), ("heldout_y.f64", rows)):
            path = self.directory / name
            size = path.stat().st_size if path.exists() else 0
            if size < values * 8:
                raise ResumeError(
                    f"cannot resume: {path} holds {size} bytes, fewer than the {values * 8} "
                    "the journal committed"
                )
        return HeldOutSpool(self.directory, rows, columns)

    def restore_spills(self, spill_dir: Path | None) -> None:
        """Check the committed chunks' spill files; delete those of uncommitted chunks."""
        if spill_dir is None:
            self.entries = []
            return
        for entry in self.entries:
            for spilled in entry["spill"].values():
                path = spill_dir.parent / spilled["path"]
                if not path.is_file() or path.stat().st_size != spilled["bytes"]:
                    raise ResumeError(
                        f"cannot resume: spill file {path} of committed chunk "
                        f"{entry['chunk_id']} is missing or changed; run again without "
                        "--resume"
                    )
        committed = self._last["chunk_id"] if self._last else 0
        for path in spill_dir.glob("stream_chunk_*_*.csv"):
            with contextlib.suppress(ValueError, IndexError):
                if int(path.name.split("_")[2]) > committed:
                    path.unlink()
        self.entries = []  # checked and restored: only the last one is needed from here

    def add_quarantine(self, frame) -> None:
        pickle.dump(frame, self._quarantine, pickle.HIGHEST_PROTOCOL)

    def commit(self, entry: dict, state: dict, held_out, spill_files: list[Path]) -> None:
        """Commit chunk ``entry["chunk_id"]``: its journal line is the commit point.

        Everything the line refers to is written (and renamed into place) before it, so a
        killed process resumes after this chunk.  The ``fsync`` barrier that makes the same
        true across a power loss runs at most every ``SYNC_INTERVAL_S`` (and at the end).
        """
        chunk_id = entry["chunk_id"]
        held_out.flush()
        self._quarantine.flush()
        state_file = f"state_{chunk_id}.pkl"
        write_atomically(
            self.directory / state_file, pickle.dumps(state, pickle.HIGHEST_PROTOCOL), sync=False
        )
        entry = {
            **entry,
            "state_file": state_file,
            "held_out_rows": held_out.rows,
            "quarantine_bytes": self._quarantine.tell(),
        }
        self._journal.write(json.dumps(entry).encode() + b"\n")
        self._journal.flush()
        self._last = entry
        self._unsynced_spills.extend(spill_files)
        self._held_out = held_out
        if self._previous_state not in (None, self._synced_state):
            (self.directory / self._previous_state).unlink(missing_ok=True)
        self._previous_state = state_file
        if time.monotonic() - self._synced_at >= SYNC_INTERVAL_S:
            self.sync()

    def sync(self) -> None:
        """The durability barrier: data files, then the state and journal, then the mark of
        the last chunk that survives a power loss (``synced.json``)."""
        last = self.last
        if last is None or last["chunk_id"] == self._synced_id:
            return
        if self._held_out is not None:
            self._held_out.sync()
        os.fsync(self._quarantine.fileno())
        for path in self._unsynced_spills:
            sync_file(path)
        if self._unsynced_spills:
            sync_dir(self._unsynced_spills[0].parent)
        self._unsynced_spills = []
        sync_file(self.directory / last["state_file"])
        os.fsync(self._journal.fileno())
        sync_dir(self.directory)
        write_atomically(
            self.directory / SYNCED, json.dumps({"chunk_id": last["chunk_id"]}).encode()
        )
        if self._synced_state not in (None, last["state_file"]):
            (self.directory / self._synced_state).unlink(missing_ok=True)
        self._synced_id, self._synced_state = last["chunk_id"], last["state_file"]
        self._synced_at = time.monotonic()

    def close(self) -> None:
        if not self._journal.closed:
            self.sync()
        self._journal.close()
        self._quarantine.close()

    def _load(self, name: str):
        path = self.directory / name
        try:
            return pickle.loads(path.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            raise ResumeError(f"cannot resume: {path} is unreadable ({exc})") from None

    def _restore_quarantine(self, last: dict | None) -> list:
        path = self.directory / QUARANTINE
        size = last["quarantine_bytes"] if last else 0
        if not path.exists():
            path.touch()
        if path.stat().st_size < size:
            raise ResumeError(
                f"cannot resume: {path} is shorter than the {size} bytes the journal committed"
            )
        with path.open("r+b") as handle:
            handle.truncate(size)
            parts = []
            while handle.tell() < size:
                parts.append(pickle.load(handle))
        return parts


def boot_id() -> str | None:
    """This boot of the machine (Linux); a page cache outlives a killed process, not this."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _same_boot(directory: Path) -> bool:
    journalled = _read_json(directory / META).get("boot_id")
    return journalled is not None and journalled == boot_id()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
