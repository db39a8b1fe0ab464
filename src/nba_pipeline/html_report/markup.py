"""The HTML elements of the page: escaped text, tables and embedded figures."""

from __future__ import annotations

import base64
import html
import math
import struct
from collections.abc import Iterable, Mapping, Sequence

from .values import fmt, num


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def absent_note(text: str) -> str:
    return f'<p class="absent">{esc(text)}</p>'


def figure(png: bytes, caption: str, *, alt: str) -> str:
    width, height = struct.unpack(">II", png[16:24])
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
        f'alt="{esc(alt)}"><figcaption>{esc(caption)}</figcaption></figure>'
    )


def kv_table(mapping: Mapping, *, code_keys: Iterable[str] = ()) -> str:
    code_keys = set(code_keys)
    rows = []
    for key, value in mapping.items():
        text = fmt(value)
        cell = f"<code>{esc(text)}</code>" if key in code_keys else esc(text)
        css = ' class="num"' if num(value) is not None and not isinstance(value, bool) else ""
        rows.append(f"<tr><th>{esc(key)}</th><td{css}>{cell}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def table(
    head: Sequence[str],
    rows: Sequence[Sequence],
    *,
    numeric_from: int = 0,
    flags: Sequence[bool] | None = None,
    table_id: str | None = None,
    sortable: bool = False,
) -> str:
    attributes = f' id="{esc(table_id)}"' if table_id else ""
    attributes += ' class="sortable"' if sortable else ""
    header = "".join(f'<th scope="col">{esc(column)}</th>' for column in head)
    body = []
    for index, row in enumerate(rows):
        css = ' class="flag"' if flags is not None and flags[index] else ""
        cells = []
        for position, value in enumerate(row):
            number = num(value) if position >= numeric_from else None
            css_cell = ' class="num"' if number is not None else ""
            sort = ""
            if sortable:
                sort = f' data-sort="{esc(_sort_key(value))}"'
            cells.append(f"<td{css_cell}{sort}>{esc(fmt(value))}</td>")
        body.append(f'<tr data-index="{index}"{css}>' + "".join(cells) + "</tr>")
    return (
        f"<table{attributes}><thead><tr>{header}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _sort_key(value) -> str:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return ""
    number = num(value)
    if number is None:
        return str(value)
    return repr(float(number)) if math.isfinite(number) else ""
