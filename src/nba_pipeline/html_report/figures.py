"""The two plots drawn from the run's tables: operator time and memory per chunk.

They are drawn with matplotlib's object API on an Agg canvas and saved without the PNG
"Software" entry, so the same tables always give the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

from .values import fmt, nan, num, truthy

PLOT_DPI = 110
#: Drop the "Software" entry matplotlib adds, which embeds its version.
PNG_METADATA = {"Software": None}
#: Above this many chunks the operator plot draws stepped bands instead of bars.
MAX_BARS = 200


def operator_plot(profile: Sequence[Mapping], operators: Sequence[str]) -> bytes:
    figure, axes = _figure_and_axes((9.0, 3.8))
    chunk_ids = [_chunk_label(row.get("chunk_id"), index) for index, row in enumerate(profile)]
    positions = list(range(len(profile)))
    bottom = [0.0] * len(profile)
    colours = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")
    for operator, colour in zip(operators, colours, strict=False):
        heights = [(num(row.get(operator)) or 0.0) * 1000.0 for row in profile]
        top = [low + high for low, high in zip(bottom, heights, strict=True)]
        label = operator.removesuffix("_s").replace("_", " ")
        if len(profile) <= MAX_BARS:
            axes.bar(positions, heights, bottom=bottom, color=colour, label=label, width=0.8)
        else:
            # One bar per chunk costs matplotlib milliseconds each; thousands of chunks are
            # drawn as one stepped band per operator instead, the same figures in one shape.
            axes.fill_between(
                positions, bottom, top, step="mid", color=colour, label=label, linewidth=0
            )
        bottom = top
    _chunk_ticks(axes, positions, chunk_ids)
    axes.set_xlabel("Streaming chunk")
    axes.set_ylabel("Operator time (ms)")
    axes.set_title(f"Operator time per chunk ({len(profile)} chunks)")
    axes.grid(True, axis="y", linestyle=":", linewidth=0.8, zorder=0)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return _png(figure)


def memory_plot(chunks: Sequence[Mapping], budget: float | None) -> bytes:
    figure, axes = _figure_and_axes((9.0, 3.8))
    positions = list(range(len(chunks)))
    labels = [_chunk_label(row.get("chunk_id"), index) for index, row in enumerate(chunks)]
    before = [nan(row.get("memory_before_mb")) for row in chunks]
    after = [nan(row.get("memory_after_mb")) for row in chunks]
    axes.plot(positions, before, marker="o", markersize=3, label="before chunk", zorder=3)
    axes.plot(positions, after, marker="s", markersize=3, label="after chunk", zorder=3)
    if any("memory_peak_mb" in row for row in chunks):
        peak = [nan(row.get("memory_peak_mb")) for row in chunks]
        axes.plot(positions, peak, linestyle=":", color="#7f7f7f", label="peak in chunk")
    else:
        peak = after
    if budget is not None:
        axes.axhline(budget, color="#b3261e", linestyle="--", linewidth=1.2, label="budget")
    over = [index for index, row in enumerate(chunks) if truthy(row.get("memory_exceeded"))]
    if over:
        marks = [peak[index] if math.isfinite(peak[index]) else after[index] for index in over]
        axes.scatter(over, marks, marker="x", s=60, color="#b3261e", label="over budget", zorder=4)
    _chunk_ticks(axes, positions, labels)
    axes.ticklabel_format(axis="y", useOffset=False)
    axes.set_xlabel("Streaming chunk (in processing order)")
    axes.set_ylabel("Process RSS (MiB)")
    budget_text = f"budget {fmt(budget)} MiB" if budget is not None else "no budget recorded"
    axes.set_title(f"Chunk memory, {budget_text}, {len(over)} of {len(chunks)} chunks over")
    axes.grid(True, linestyle=":", linewidth=0.8, zorder=0)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return _png(figure)


def _figure_and_axes(size: tuple[float, float]):
    # Imported here: only the plotting sections need matplotlib.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=PLOT_DPI)
    FigureCanvasAgg(figure)
    # Fixed margins, with room on the right for the legend beside the axes: a layout engine
    # would find much the same ones at a third of the plot's drawing time.
    figure.subplots_adjust(left=0.08, right=0.81, bottom=0.14, top=0.9)
    return figure, figure.add_subplot()


def _chunk_ticks(axes, positions: list[int], labels: list[str]) -> None:
    step = max(1, math.ceil(len(positions) / 30))
    axes.set_xticks(positions[::step], labels[::step], fontsize=8)
    if positions:
        axes.set_xlim(-0.6, len(positions) - 0.4)


def _chunk_label(value, index: int) -> str:
    number = num(value)
    if number is None:
        return str(index + 1)
    return str(int(number)) if float(number).is_integer() else fmt(number)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PLOT_DPI, metadata=PNG_METADATA)
    return buffer.getvalue()
