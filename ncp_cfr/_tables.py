"""Tables of strings as aligned text and as escaped HTML: the one table writer of the package.

It knows nothing of results: models build their own cells (``_table``) and hand them here, so the
models can show themselves in a notebook without importing [`ncp_cfr.display`][ncp_cfr.display].
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence

#: An empty cell.
NONE = "-"


def display_width(text: str) -> int:
    """The number of terminal columns ``text`` takes: wide (East Asian) characters count 2."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def percent(confidence: float) -> str:
    """A confidence as a whole percentage: ``0.9912`` is ``99%``."""
    return f"{confidence:.0%}"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Header, a rule and the rows, every line padded to the same display width."""
    table = [header, *rows]
    widths = [max(display_width(row[col]) for row in table) for col in range(len(header))]
    lines = [_line(header, widths), "  ".join("-" * width for width in widths)]
    lines.extend(_line(row, widths) for row in rows)
    return "\n".join(lines)


def html_table(
    css_class: str,
    caption: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    empty: str | None = None,
) -> str:
    """A caption, a header row and the rows, every cell escaped (values come from a server)."""
    parts = [
        f'<table class="{css_class}">',
        f'<caption style="text-align:left">{html.escape(caption)}</caption>',
        "<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr></thead>",
        "<tbody>",
    ]
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>")
    if not rows and empty is not None:
        parts.append(f'<tr><td colspan="{len(header)}">{html.escape(empty)}</td></tr>')
    parts += ["</tbody>", "</table>"]
    return "\n".join(parts)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(
        cell + " " * (width - display_width(cell))
        for cell, width in zip(cells, widths, strict=True)
    )
