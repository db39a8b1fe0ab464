"""Trade-off plots of the constraint sweep, rendered off-screen and written atomically.

Figures are built from :class:`matplotlib.figure.Figure` with an explicit Agg canvas instead
of pyplot, so plotting never changes global backend state, opens a window or leaks figures in
a long-running process.  PNG metadata carries no software version, so the same sweep renders
to the same bytes on every run.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = (
    "chunk_size",
    "memory_limit_mb",
    "compute_limit",
    "preprocessing_latency_s",
    "peak_memory_mb",
    "training_time_s",
    "model_accuracy_r2",
    "model_rmse",
)
FIGSIZE = (7.0, 5.0)
DPI = 150
PLOT_MARGINS = {"left": 0.11, "right": 0.89, "bottom": 0.1, "top": 0.89}
#: Above this many points the chunk-size labels overlap more than they help.
MAX_ANNOTATED_POINTS = 30
#: Drop the "Software" entry matplotlib adds, which embeds its version.
PNG_METADATA = {"Software": None}


@dataclass(frozen=True)
class PlotSpec:
    """What one trade-off plot shows: its file, axes, colour column and labels."""

    filename: str
    x: str
    y: str
    colour: str
    cmap: str
    x_label: str
    y_label: str
    colour_label: str
    title: str


PLOT_SPECS = (
    PlotSpec(
        "latency_vs_accuracy.png",
        "preprocessing_latency_s",
        "model_accuracy_r2",
        "compute_limit",
        "viridis",
        "Preprocessing latency (s)",
        "Model accuracy (R²)",
        "Compute limit",
        "Preprocessing latency vs model accuracy",
    ),
    PlotSpec(
        "memory_vs_accuracy.png",
        "peak_memory_mb",
        "model_accuracy_r2",
        "memory_limit_mb",
        "plasma",
        "Peak memory (MB)",
        "Model accuracy (R²)",
        "Memory limit (MB)",
        "Peak memory vs model accuracy",
    ),
    PlotSpec(
        "latency_memory_accuracy.png",
        "peak_memory_mb",
        "preprocessing_latency_s",
        "model_accuracy_r2",
        "coolwarm",
        "Peak memory (MB)",
        "Preprocessing latency (s)",
        "Model accuracy (R²)",
        "Peak memory vs preprocessing latency, coloured by accuracy",
    ),
)


def write_tradeoff_plots(sweep: pd.DataFrame, output_dir: str | os.PathLike) -> list[Path]:
    """Write the three sweep trade-off PNGs into ``output_dir`` and return their paths.

    ``sweep`` has one row per sweep setting and the columns in :data:`REQUIRED_COLUMNS`.
    Writes ``latency_vs_accuracy.png``, ``memory_vs_accuracy.png`` and
    ``latency_memory_accuracy.png``; each is rendered to a temporary file in ``output_dir``
    and moved into place with :func:`os.replace`, so readers never see a half-written image.
    Points with a missing x or y value cannot be placed and are counted in the title; a
    missing colour value is drawn as a hollow ring.

    Raises ``ValueError`` when ``sweep`` is empty or lacks a required column.
    """
    data = _numeric_sweep(sweep)
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in PLOT_SPECS:
        path = directory / spec.filename
        _write_png_atomically(_render(data, spec), path)
        logger.info("wrote %s (%d sweep settings)", path, len(data))
        if unplaced := _unplaced_count(data, spec):
            logger.warning(
                "%s: %d sweep settings have no %s or %s", path, unplaced, spec.x, spec.y
            )
        paths.append(path)
    return paths


def _numeric_sweep(sweep: pd.DataFrame) -> pd.DataFrame:
    """Return the required columns as floats, with unparsable values turned into NaN."""
    missing = [column for column in REQUIRED_COLUMNS if column not in sweep.columns]
    if missing:
        raise ValueError(f"sweep is missing column(s): {', '.join(missing)}")
    if sweep.empty:
        raise ValueError("sweep has no rows: nothing to plot")
    data = sweep.loc[:, list(REQUIRED_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    return data.astype(float).reset_index(drop=True)


def _render(data: pd.DataFrame, spec: PlotSpec) -> Figure:
    """Return a figure with one scatter plot as described by ``spec``."""
    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    # Fixed margins that fit the labels, the two-line title and the colour bar: a layout
    # engine would find much the same ones at a third of the plot's drawing time.
    figure.subplots_adjust(**PLOT_MARGINS)
    axes = figure.add_subplot()
    colours = data[spec.colour].to_numpy()
    # Transparent fill leaves a hollow ring, unlike grey, which is a real coolwarm colour.
    cmap = matplotlib.colormaps[spec.cmap].with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    points = axes.scatter(
        data[spec.x].to_numpy(),
        data[spec.y].to_numpy(),
        c=colours,
        cmap=cmap,
        norm=_colour_norm(colours),
        plotnonfinite=True,
        s=60,
        edgecolors="black",
        linewidths=0.5,
        zorder=2,
    )
    colourbar = figure.colorbar(points, ax=axes, fraction=0.06, pad=0.02)
    missing = "" if np.isfinite(colours).all() else ", hollow = missing"
    colourbar.set_label(spec.colour_label + missing)
    _annotate_chunk_sizes(axes, data, spec)
    _widen_flat_axis(axes.set_xlim, data[spec.x].to_numpy())
    _widen_flat_axis(axes.set_ylim, data[spec.y].to_numpy())
    axes.ticklabel_format(useOffset=False)
    axes.set_xlabel(spec.x_label)
    axes.set_ylabel(spec.y_label)
    axes.set_title(_title(data, spec))
    axes.grid(True, linestyle=":", linewidth=0.8, zorder=0)
    return figure


def _colour_norm(values: np.ndarray) -> Normalize:
    """Return a colour scale over the finite ``values`` that never has zero width."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Normalize(vmin=0.0, vmax=1.0)
    return Normalize(*_padded_range(finite))


def _padded_range(finite: np.ndarray) -> tuple[float, float]:
    """Min and max, widened when the values are equal or differ only by rounding, so that
    floating-point noise is never drawn as if it were a difference."""
    low, high = float(finite.min()), float(finite.max())
    if high - low <= 1e-9 * max(abs(low), abs(high), 1.0):
        pad = abs(low) * 0.05 or 0.5
        low, high = low - pad, high + pad
    return low, high


def _widen_flat_axis(set_limits, values: np.ndarray) -> None:
    finite = values[np.isfinite(values)]
    if finite.size and finite.max() - finite.min() <= 1e-9 * max(abs(finite).max(), 1.0):
        set_limits(*_padded_range(finite))


def _annotate_chunk_sizes(axes, data: pd.DataFrame, spec: PlotSpec) -> None:
    """Label each placed point with its chunk size when there are few enough points."""
    placed = data[np.isfinite(data[spec.x]) & np.isfinite(data[spec.y])]
    if len(placed) > MAX_ANNOTATED_POINTS:
        return
    for x, y, chunk in zip(placed[spec.x], placed[spec.y], placed["chunk_size"], strict=True):
        axes.annotate(
            _chunk_label(chunk),
            (x, y),
            xytext=(5, 5),
            textcoords="offset points",
            fontsize=7,
        )


def _chunk_label(chunk: float) -> str:
    """Return a chunk size as a short label (the title says what the numbers are)."""
    if not np.isfinite(chunk):
        return "n/a"
    return str(int(chunk)) if float(chunk).is_integer() else f"{chunk:g}"


def _title(data: pd.DataFrame, spec: PlotSpec) -> str:
    """Return the plot title, saying how many settings could not be placed."""
    unplaced = _unplaced_count(data, spec)
    settings = "1 sweep setting" if len(data) == 1 else f"{len(data)} sweep settings"
    title = f"{spec.title}\n{settings}"
    if len(data) - unplaced <= MAX_ANNOTATED_POINTS:
        title += ", labelled with chunk size"
    if unplaced:
        title += f", {unplaced} not shown (no x or y value)"
    return title


def _unplaced_count(data: pd.DataFrame, spec: PlotSpec) -> int:
    """Return how many sweep settings lack the x or y value needed to place their point."""
    return int((~(np.isfinite(data[spec.x]) & np.isfinite(data[spec.y]))).sum())


def _write_png_atomically(figure: Figure, path: Path) -> None:
    """Save ``figure`` as PNG to a temporary file next to ``path``, then move it into place."""
    # Same directory as the target so os.replace is an atomic rename on one file system.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    try:
        with os.fdopen(handle, "wb") as stream:
            figure.savefig(stream, format="png", dpi=DPI, metadata=PNG_METADATA)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
