"""A mergeable quantile summary in bounded memory, exact for small inputs.

Values go into level 0; whenever a level holds more than ``capacity`` items it is sorted
and every other item moves up one level with twice the weight (alternating which half is
kept, so that the error does not drift one way).  While fewer than ``capacity`` values have
been seen nothing is compacted and quantiles are exact (numpy's linear interpolation).

Error bound: each compaction at level ``i`` moves any rank by at most ``2**i``, and level
``i`` is compacted at most ``n / (capacity * 2**i)`` times, so a quantile's rank is off by
at most ``levels * n / capacity`` positions, that is a rank error of at most
``levels / capacity`` (about 0.1% for a million values with the default capacity).
"""

from __future__ import annotations

import numpy as np

DEFAULT_CAPACITY = 8192


class QuantileSketch:
    """Approximate quantiles of a stream of numbers in ``O(capacity * log n)`` memory."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.levels: list[np.ndarray] = [np.empty(0)]
        self.count = 0
        self._flips: list[int] = [0]

    def update(self, values: np.ndarray) -> None:
        """Add the non-missing ``values``."""
        values = np.asarray(values, dtype=float)
        values = values[~np.isnan(values)]
        if not values.size:
            return
        self.count += values.size
        self.levels[0] = np.concatenate([self.levels[0], values])
        self._compact()

    @property
    def exact(self) -> bool:
        return len(self.levels) == 1

    @property
    def rank_error_bound(self) -> float:
        """Largest possible error of a returned quantile, as a fraction of the count."""
        return 0.0 if self.exact else (len(self.levels) - 1) / self.capacity

    def quantiles(self, probabilities) -> np.ndarray:
        """Values at the given probabilities (NaN when nothing was seen)."""
        if self.count == 0:
            return np.full(len(probabilities), np.nan)
        if self.exact:
            return np.quantile(self.levels[0], probabilities)
        values = np.concatenate(self.levels)
        weights = np.concatenate(
            [np.full(level.size, 2.0**i) for i, level in enumerate(self.levels)]
        )
        order = np.argsort(values, kind="stable")
        values, weights = values[order], weights[order]
        # Position of each item's centre on the rank scale, then linear interpolation.
        centres = (np.cumsum(weights) - weights / 2) / weights.sum()
        return np.interp(probabilities, centres, values)

    def _compact(self) -> None:
        level = 0
        while level < len(self.levels):
            items = self.levels[level]
            if items.size > self.capacity:
                if level + 1 == len(self.levels):
                    self.levels.append(np.empty(0))
                    self._flips.append(0)
                items = np.sort(items, kind="stable")
                keep_last = items.size % 2
                paired = items[: items.size - keep_last]
                promoted = paired[self._flips[level] :: 2]
                self._flips[level] ^= 1
                self.levels[level] = items[items.size - keep_last :]
                self.levels[level + 1] = np.concatenate([self.levels[level + 1], promoted])
            level += 1
