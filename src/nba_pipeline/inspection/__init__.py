"""Inspecting finished runs: compare two of them, verify one, clean up after them.

A *run directory* is an output directory written by ``nba-pipeline run``: it holds
``reports/pipeline_report.json`` (see the "Artifacts" section of the README for the layout).

- :func:`compare_runs` (:mod:`.comparison`) tells whether two runs agree on everything that
  must be deterministic (configuration, input bytes, model scores, selected features, spilled
  chunks) and, for the timing and memory figures that may not, how far apart they are and
  whether the benchmark repetitions support calling the difference real.
- :func:`verify_run` (:mod:`.verification`) re-hashes the files listed in
  ``metadata/checksums.json`` (written by :func:`write_checksums`, :mod:`.checksums`) and
  checks the layout against the artifact contract (:mod:`.layout`).
- :func:`clean_run` and :func:`clean_runs_older_than` (:mod:`.retention`) apply the contract's
  retention advice: spill files go after the run, archive-class artifacts after a while,
  reports never unless asked.  They keep ``checksums.json`` in step and record what they
  removed in ``metadata/cleanup_log.jsonl`` so that ``verify`` stays green.

Nothing here follows a symbolic link found inside a run directory.  Library code logs; the
``format_*`` functions (:mod:`.formatting`) return text for the command line to print.
"""

from .checksums import compute_checksums, refresh_checksum, write_checksums
from .common import RunDirectoryError
from .comparison import compare_runs
from .formatting import format_cleanup, format_comparison, format_verification
from .retention import clean_run, clean_runs_older_than
from .verification import verify_run

__all__ = [
    "RunDirectoryError",
    "clean_run",
    "clean_runs_older_than",
    "compare_runs",
    "compute_checksums",
    "format_cleanup",
    "format_comparison",
    "format_verification",
    "refresh_checksum",
    "verify_run",
    "write_checksums",
]
