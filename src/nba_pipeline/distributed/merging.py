"""Merging the per-partition fit statistics in partition order, as Dask reductions.

Each partition's training rows go through :meth:`FitAccumulator.update` exactly as a chunk
of the streaming fit pass does; :func:`merge_accumulators` combines two accumulators of
consecutive row ranges (Chan's formula for the moments, co-moments moved to a common shift
and added, category counts added) and :func:`ordered_tree` pairs neighbours level by level,
so the merge order, and with it every last bit, depends only on the partitions.

The IQR quartiles are the exception: batch mode feeds its whole training column to one
:class:`~nba_pipeline.quantiles.QuantileSketch` update, which compacts differently from any
merge of smaller sketches.  So the partitions hand over their training values of the six
outlier features, and :func:`quartile_sketches` feeds their concatenation, in partition
order, to one sketch per feature: the same numbers batch mode gets.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np

from ..features import OUTLIER_FEATURES
from ..fit_state import FitAccumulator, _merge_moment_columns, _merge_moments
from ..quantiles import QuantileSketch


def merge_accumulators(a: FitAccumulator, b: FitAccumulator) -> FitAccumulator:
    """Statistics of ``a``'s rows followed by ``b``'s; neither argument is changed.

    The co-moment sums of both sides are moved to ``a``'s shift (the earlier rows' means,
    as the streaming fit pass uses its first chunk's) before they are added.  The quartile
    sketches are left empty: see :func:`quartile_sketches`.
    """
    if b.n_rows == 0:
        return _without_sketches(a)
    if a.n_rows == 0:
        return _without_sketches(b)
    merged = FitAccumulator()
    merged.n_rows = a.n_rows + b.n_rows
    moments = _merge_moment_columns(
        np.vstack([a.count, a.mean, a.m2]), np.vstack([b.count, b.mean, b.m2])
    )
    merged.count, merged.mean, merged.m2 = moments[0], moments[1], moments[2]

    shift = a.shift
    n, sx, sxx, sxy = _shifted_pairs(b, shift)
    merged.shift = shift.copy()
    merged.pair_n = a.pair_n + n
    merged.pair_sx = a.pair_sx + sx
    merged.pair_sxx = a.pair_sxx + sxx
    merged.pair_sxy = a.pair_sxy + sxy

    for column, counts in a.categories.items():
        merged.categories[column] = counts + b.categories[column]
    merged.target = _merge_moments(a.target, b.target)
    return merged


def _shifted_pairs(acc: FitAccumulator, shift: np.ndarray):
    """``acc``'s pairwise sums as if they had been taken around ``shift``.

    With ``d = acc.shift - shift`` and the sums over the rows where both features of a pair
    are observed: ``sum(x_i - shift_i) = sx_ij + n_ij d_i`` and so on for the squares and
    the cross products.
    """
    n, sx, sxx, sxy = acc.pair_n, acc.pair_sx, acc.pair_sxx, acc.pair_sxy
    d = acc.shift - shift
    di, dj = d[:, None], d[None, :]
    sx_new = sx + n * di
    sxx_new = sxx + 2.0 * di * sx + n * di**2
    sxy_new = sxy + dj * sx + di * sx.T + n * di * dj
    return n.copy(), sx_new, sxx_new, sxy_new


def _without_sketches(acc: FitAccumulator) -> FitAccumulator:
    twin = copy.deepcopy(acc)
    twin.quartiles = {name: QuantileSketch() for name in OUTLIER_FEATURES}
    return twin


def ordered_tree(items: Sequence, combine: Callable, empty: Callable):
    """Reduce ``items`` with ``combine`` pairwise, neighbours first, keeping their order.

    ``combine`` may return a future; ``empty()`` stands for no items at all.
    """
    level = list(items)
    if not level:
        return empty()
    while len(level) > 1:
        paired = [combine(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def quartile_sketches(values_in_order: Sequence[np.ndarray]) -> dict[str, QuantileSketch]:
    """One sketch per outlier feature, fed the training values of every partition at once.

    ``values_in_order`` holds, per partition in order, an array of its training rows (one
    column per feature of :data:`OUTLIER_FEATURES`).
    """
    values = [part for part in values_in_order if len(part)]
    stacked = np.vstack(values) if values else np.empty((0, len(OUTLIER_FEATURES)))
    sketches = {}
    for index, name in enumerate(OUTLIER_FEATURES):
        sketch = QuantileSketch()
        sketch.update(stacked[:, index])
        sketches[name] = sketch
    return sketches
