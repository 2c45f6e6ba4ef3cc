"""Results as tables: HTML for notebooks (``_repr_html_``) and aligned plain text for terminals.

Every value is formatted the same way in both: ``female 99%``, boxes as ``x,y wxh``. Names come
from a server, so the HTML escapes every cell; the text table measures Hangul and other East
Asian wide characters as two columns, so columns stay aligned in a terminal.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence

from ncp_cfr.models import (
    Analysis,
    AnalyzedFace,
    CelebrityResult,
    Face,
    FaceResult,
    Lookalike,
    Prediction,
)

__all__ = [
    "display_width",
    "lookalike_html",
    "lookalike_rows",
    "lookalike_table",
    "result_html",
    "result_rows",
    "result_table",
]

Result = FaceResult | Analysis | CelebrityResult

_FACE_HEADER = ("#", "box", "landmarks", "gender", "age", "emotion", "pose")
_CELEBRITY_HEADER = ("#", "name", "confidence")
_LOOKALIKE_HEADER = ("rank", "name", "votes", "mean", "min", "max", "sizes (px)")
_NONE = "-"


def result_rows(result: Result) -> tuple[list[str], list[list[str]]]:
    """The table of a result as text cells: its header and one row per face, in result order.

    Args:
        result: a ``FaceResult``, ``Analysis`` or ``CelebrityResult``.

    Returns:
        ``(header, rows)``; ``rows`` is empty when there is no face.

    Raises:
        TypeError: ``result`` is not a result of this SDK.
    """
    if isinstance(result, CelebrityResult):
        rows = [
            [str(i), face.celebrity.value, _percent(face.celebrity.confidence)]
            for i, face in enumerate(result.faces)
        ]
        return list(_CELEBRITY_HEADER), rows
    if isinstance(result, Analysis):
        return [*_FACE_HEADER, "lookalike"], [
            [*_face_cells(i, face), _lookalike(face)] for i, face in enumerate(result.faces)
        ]
    if isinstance(result, FaceResult):
        return list(_FACE_HEADER), [_face_cells(i, face) for i, face in enumerate(result.faces)]
    raise TypeError(f"expected a FaceResult, Analysis or CelebrityResult, got {result!r}")


def result_html(result: Result) -> str:
    """An HTML table of a result, for Jupyter (the models' ``_repr_html_`` calls it).

    Args:
        result: a ``FaceResult``, ``Analysis`` or ``CelebrityResult``.

    Returns:
        An HTML fragment: a caption (result type, face count, image size) and a table with one
        row per face. Every value is HTML-escaped.
    """
    header, rows = result_rows(result)
    parts = [
        '<table class="ncp-cfr-result">',
        f'<caption style="text-align:left">{html.escape(_caption(result))}</caption>',
        "<thead><tr>"
        + "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
        + "</tr></thead>",
        "<tbody>",
    ]
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>")
    if not rows:
        parts.append(f'<tr><td colspan="{len(header)}">no faces</td></tr>')
    parts += ["</tbody>", "</table>"]
    return "\n".join(parts)


def result_table(result: Result, *, caption: bool = False) -> str:
    """A plain-text table of a result, columns aligned for a terminal.

    Every line of the table has the same display width (cells are padded, the last column
    too): Hangul and other wide characters count as two columns (:func:`display_width`).

    Args:
        result: a ``FaceResult``, ``Analysis`` or ``CelebrityResult``.
        caption: start with a line naming the result type, face count and image size.

    Returns:
        The table, lines separated by ``\\n``, without a trailing newline; ``"no faces"`` in
        place of the table when there is no face.
    """
    header, rows = result_rows(result)
    lines = [_caption(result)] if caption else []
    if not rows:
        return "\n".join([*lines, "no faces"])
    widths = _widths([header, *rows])
    lines.append(_line(header, widths))
    lines.append("  ".join("-" * width for width in widths))
    lines.extend(_line(row, widths) for row in rows)
    return "\n".join(lines)


def lookalike_rows(found: Lookalike) -> tuple[list[str], list[list[str]]]:
    """The ranked candidates of :meth:`~ncp_cfr.Client.find_lookalike` as text cells.

    Returns:
        ``(header, rows)``: one row per candidate, best first, with its votes (of the sizes that
        answered), its mean/min/max confidence and the sizes that voted for it.
    """
    answered = sum(1 for scale in found.per_scale if scale.error is None)
    rows = [
        [
            str(rank),
            c.name,
            f"{c.votes}/{answered}",
            _percent(c.mean_confidence),
            _percent(c.min_confidence),
            _percent(c.max_confidence),
            ",".join(str(side) for side in c.sides),
        ]
        for rank, c in enumerate(found.candidates, start=1)
    ]
    return list(_LOOKALIKE_HEADER), rows


def lookalike_table(found: Lookalike) -> str:
    """A plain-text table of a lookalike vote, aligned like :func:`result_table`.

    The first line says whether the answer is stable (the best name won most sizes).
    """
    header, rows = lookalike_rows(found)
    verdict = _lookalike_verdict(found)
    if not rows:
        return verdict
    widths = _widths([header, *rows])
    lines = [verdict, _line(header, widths), "  ".join("-" * width for width in widths)]
    lines.extend(_line(row, widths) for row in rows)
    return "\n".join(lines)


def lookalike_html(found: Lookalike) -> str:
    """An HTML table of a lookalike vote, every value escaped (``Lookalike._repr_html_``)."""
    header, rows = lookalike_rows(found)
    parts = [
        '<table class="ncp-cfr-lookalike">',
        f'<caption style="text-align:left">{html.escape(_lookalike_verdict(found))}</caption>',
        "<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr></thead>",
        "<tbody>",
    ]
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>")
    parts += ["</tbody>", "</table>"]
    return "\n".join(parts)


def _lookalike_verdict(found: Lookalike) -> str:
    sizes = len(found.per_scale)
    if found.best is None:
        return f"no name at any of {sizes} sizes"
    stability = "stable" if found.stable else "unstable: no name won most sizes"
    return f"best: {found.best.name} ({found.best.votes} of {sizes} sizes, {stability})"


def display_width(text: str) -> int:
    """The number of terminal columns ``text`` takes: wide (East Asian) characters count 2."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


# -- cells ----------------------------------------------------------------------------------------


def _caption(result: Result) -> str:
    size = result.info.size
    count = len(result.faces)
    noun = "face" if count == 1 else "faces"
    return f"{type(result).__name__}: {count} {noun} in a {size.width}x{size.height} image"


def _face_cells(index: int, face: Face) -> list[str]:
    roi = face.roi
    return [
        str(index),
        f"{roi.x},{roi.y} {roi.width}x{roi.height}",
        "yes" if face.landmark is not None else "no",
        _prediction(face.gender),
        _prediction(face.age),
        _prediction(face.emotion),
        _prediction(face.pose),
    ]


def _lookalike(face: AnalyzedFace) -> str:
    if face.lookalike is not None:
        return f"{face.lookalike.value} {_percent(face.lookalike.confidence)}"
    if face.lookalike_error:
        return f"({face.lookalike_error})"
    return _NONE


def _prediction(prediction: Prediction | None) -> str:
    if prediction is None:
        return _NONE
    return f"{prediction.value!s} {_percent(prediction.confidence)}"


def _percent(confidence: float) -> str:
    return f"{confidence:.0%}"


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(
        cell + " " * (width - display_width(cell))
        for cell, width in zip(cells, widths, strict=True)
    )


def _widths(table: Sequence[Sequence[str]]) -> list[int]:
    return [max(display_width(row[col]) for row in table) for col in range(len(table[0]))]
