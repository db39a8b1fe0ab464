"""What the command line shows on the terminal: log format and progress bars.

Kept apart from the library, which only logs and calls a progress callback.
"""

from __future__ import annotations

import json
import logging
import os
import sys

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log record, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(verbose: bool, quiet: bool, log_format: str) -> None:
    """Debug with ``--verbose``, warnings only with ``--quiet``, info otherwise."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLogFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if not verbose:
        logging.getLogger("matplotlib").setLevel(logging.WARNING)
        # Dask sets up its own loggers when it is first imported (here or in a worker
        # process, which inherits the environment): its clusters' start and stop are not
        # news to a user of this program.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


class ProgressBars:
    """A tqdm bar per stage on a terminal; nothing when output is not a terminal.

    On a terminal the bars take the place of the informational log lines (the command line
    then logs warnings only, unless ``--verbose``); redirected output gets the log lines.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._stage = None
        self._bar = None

    @classmethod
    def for_terminal(cls, quiet: bool) -> ProgressBars:
        return cls(enabled=not quiet and sys.stderr.isatty())

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = tqdm(total=total, desc=stage, unit="run", leave=False, file=sys.stderr)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
