"""Held-out rows kept on disk until the model is final, so memory does not grow with them.

Streaming sees held-out rows chunk by chunk but can only score them once the online model
has learned from every training row.  :class:`HeldOutSpool` appends each chunk's held-out
features and targets to anonymous temporary files and scores them at the end in blocks.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

# Small enough that scoring a block (its features plus the model's working copies) stays a
# few MB: a larger block makes the final scoring the peak of the whole run once the held-out
# rows outnumber it, and that peak would grow with the input up to the block size.
SCORE_BLOCK_ROWS = 4_096


class HeldOutSpool:
    """Append-only store of held-out (X, y) rows with a fixed number of columns."""

    def __init__(self, directory: Path | None = None, rows: int = 0, columns: int | None = None):
        """Anonymous temporary files, or with ``directory`` two named files there that a
        resumed run reopens: ``rows`` rows of ``columns`` columns are kept, the rest (rows
        appended after the last journalled chunk) cut off."""
        self.columns: int | None = columns
        self.rows = rows
        if directory is None:
            # Open for the whole pass and closed by close(), hence no with-block.
            self._features = tempfile.TemporaryFile()  # noqa: SIM115
            self._targets = tempfile.TemporaryFile()  # noqa: SIM115
            return
        self._features = _reopen(Path(directory) / "heldout_X.f64", rows * (columns or 0))
        self._targets = _reopen(Path(directory) / "heldout_y.f64", rows)

    def flush(self) -> None:
        self._features.flush()
        self._targets.flush()

    def sync(self) -> None:
        """Flush both files to the disk (a journalled chunk's rows must survive a crash)."""
        for handle in (self._features, self._targets):
            handle.flush()
            os.fsync(handle.fileno())

    def append(self, X: np.ndarray, y: np.ndarray) -> None:
        if not len(X):
            return
        self.columns = X.shape[1]
        np.ascontiguousarray(X, dtype=np.float64).tofile(self._features)
        np.ascontiguousarray(y, dtype=np.float64).tofile(self._targets)
        self.rows += len(X)

    def predict_all(self, predict) -> tuple[np.ndarray, np.ndarray]:
        """``(y_true, predict(X))`` over every stored row, reading blocks of rows."""
        if not self.rows:
            return np.array([]), np.array([])
        self._features.flush()
        self._targets.flush()
        self._targets.seek(0)
        y_true = np.fromfile(self._targets, dtype=np.float64)
        predictions = np.empty(self.rows)
        row_bytes = self.columns * 8
        for start in range(0, self.rows, SCORE_BLOCK_ROWS):
            count = min(SCORE_BLOCK_ROWS, self.rows - start)
            self._features.seek(start * row_bytes)
            block = np.fromfile(self._features, dtype=np.float64, count=count * self.columns)
            predictions[start : start + count] = predict(block.reshape(count, self.columns))
        return y_true, predictions

    def close(self) -> None:
        self._features.close()
        self._targets.close()


def _reopen(path: Path, values: int):
    """``path`` opened for appending float64 values, holding its first ``values`` only."""
    handle = path.open("r+b" if path.exists() else "w+b")
    handle.truncate(values * 8)
    handle.seek(0, os.SEEK_END)
    return handle
