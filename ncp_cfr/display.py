"""Results as tables: HTML for notebooks (``_repr_html_``) and aligned plain text for terminals.

Every value is formatted the same way in both: ``female 99%``, boxes as ``x,y wxh``. Names come
from a server, so the HTML escapes every cell; the text table measures Hangul and other East
Asian wide characters as two columns, so columns stay aligned in a terminal.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ncp_cfr.errors import InvalidArgumentError
from ncp_cfr.models import (
    Analysis,
    AnalyzedFace,
    CelebrityFace,
    CelebrityResult,
    Face,
    FaceResult,
    Lookalike,
    Prediction,
)

if TYPE_CHECKING:  # the pipelines import images and Pillow: not needed to draw a table
    from ncp_cfr.pipelines import BatchItem

__all__ = [
    "batch_html",
    "batch_rows",
    "display_width",
    "face_html",
    "face_rows",
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
_BATCH_HEADER = ("#", "file", "faces", "error")
_NONE = "-"


def result_rows(result: Result) -> tuple[list[str], list[list[str]]]:
    """The table of a result as text cells: its header and one row per face, in result order.

    Args:
        result: a ``FaceResult``, ``Analysis`` or ``CelebrityResult``.

    Returns:
        ``(header, rows)``; ``rows`` is empty when there is no face.

    Raises:
        InvalidArgumentError: ``result`` is not a result of this SDK.
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
    raise InvalidArgumentError(
        f"expected a FaceResult, Analysis or CelebrityResult, got {result!r}"
    )


def result_html(result: Result) -> str:
    """An HTML table of a result, for Jupyter (the models' ``_repr_html_`` calls it).

    Args:
        result: a ``FaceResult``, ``Analysis`` or ``CelebrityResult``.

    Returns:
        An HTML fragment: a caption (result type, face count, image size) and a table with one
        row per face. Every value is HTML-escaped.
    """
    header, rows = result_rows(result)
    return _html_table("ncp-cfr-result", _caption(result), header, rows, empty="no faces")


def result_table(result: Result, *, caption: bool = False) -> str:
    """A plain-text table of a result, columns aligned for a terminal.

    Every line of the table has the same display width (cells are padded, the last column
    too): Hangul and other wide characters count as two columns (``display_width``).

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
    return "\n".join([*lines, _text_table(header, rows)])


def face_rows(face: Face | CelebrityFace) -> tuple[list[str], list[str]]:
    """One face as text cells, in the columns its result's table uses (without the `#`).

    Args:
        face: a `Face`, `AnalyzedFace` (with its lookalike column) or `CelebrityFace`.

    Returns:
        `(header, row)`.

    Raises:
        InvalidArgumentError: `face` is not a face of this SDK.
    """
    if isinstance(face, CelebrityFace):
        return list(_CELEBRITY_HEADER[1:]), [
            face.celebrity.value,
            _percent(face.celebrity.confidence),
        ]
    if isinstance(face, AnalyzedFace):
        return [*_FACE_HEADER[1:], "lookalike"], [*_face_cells(0, face)[1:], _lookalike(face)]
    if isinstance(face, Face):
        return list(_FACE_HEADER[1:]), _face_cells(0, face)[1:]
    raise InvalidArgumentError(f"expected a Face, AnalyzedFace or CelebrityFace, got {face!r}")


def face_html(face: Face | CelebrityFace) -> str:
    """A one-row HTML table of a single face, every value escaped (its `_repr_html_`)."""
    header, row = face_rows(face)
    return _html_table("ncp-cfr-face", type(face).__name__, header, [row])


def batch_rows(batch: Sequence[BatchItem[Any]]) -> tuple[list[str], list[list[str]]]:
    """The outcomes of a `*_many` call as text cells: one row per input, in input order.

    Args:
        batch: the [`BatchItem`][ncp_cfr.BatchItem]s a `*_many` method returned.

    Returns:
        `(header, rows)`: the input's position, its file (a path as given; otherwise the kind
        of object, e.g. `bytes (48213 B)`), its face count, and the error it failed with.
    """
    rows = []
    for item in batch:
        faces = getattr(item.result, "faces", None)
        rows.append(
            [
                str(item.index),
                _source(item.source),
                _NONE if faces is None else str(len(faces)),
                _NONE if item.error is None else f"{type(item.error).__name__}: {item.error}",
            ]
        )
    return list(_BATCH_HEADER), rows


def batch_html(batch: Sequence[BatchItem[Any]]) -> str:
    """An HTML table of a batch's outcomes, every value escaped (`Batch._repr_html_`)."""
    header, rows = batch_rows(batch)
    failed = sum(1 for item in batch if item.error is not None)
    caption = f"{len(batch)} {'input' if len(batch) == 1 else 'inputs'}: "
    caption += f"{len(batch) - failed} succeeded, {failed} failed"
    return _html_table("ncp-cfr-batch", caption, header, rows, empty="no inputs")


def lookalike_rows(found: Lookalike) -> tuple[list[str], list[list[str]]]:
    """The ranked candidates of [`find_lookalike`][ncp_cfr.Client.find_lookalike] as text cells.

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
    """A plain-text table of a lookalike vote, aligned like
    [`result_table`][ncp_cfr.display.result_table].

    The first line is the verdict: `best: NAME (V of N sizes, mean C, stable)` (or
    `unstable` when the match did not win most sizes), or `no clear match: ...` saying why
    (the leading name's mean confidence is under the threshold, a tie, or no name at all).
    The ranking follows either way.
    """
    header, rows = lookalike_rows(found)
    verdict = _lookalike_verdict(found)
    if not rows:
        return verdict
    return f"{verdict}\n{_text_table(header, rows)}"


def lookalike_html(found: Lookalike) -> str:
    """An HTML table of a lookalike vote, every value escaped (``Lookalike._repr_html_``)."""
    header, rows = lookalike_rows(found)
    return _html_table("ncp-cfr-lookalike", _lookalike_verdict(found), header, rows)


def _lookalike_verdict(found: Lookalike) -> str:
    """One line: the match and whether the vote is stable, or why there is no clear match."""
    answered = sum(1 for scale in found.per_scale if scale.error is None)
    if found.best is not None:
        best = found.best
        stability = "stable" if found.stable else "unstable: it did not win most sizes"
        return (
            f"best: {best.name} ({best.votes} of {answered} sizes, "
            f"mean {_percent(best.mean_confidence)}, {stability})"
        )
    if not found.candidates:
        return f"no clear match: no name at any of {answered} sizes"
    leader = found.candidates[0]
    if leader.mean_confidence < found.match_confidence:
        return (
            f"no clear match: the leading name, {leader.name}, averages "
            f"{_percent(leader.mean_confidence)} (a match needs "
            f"{_percent(found.match_confidence)})"
        )
    tied = [c.name for c in found.candidates if c.votes == leader.votes]
    return f"no clear match: {', '.join(tied)} tie at {leader.votes} of {answered} sizes each"


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


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Header, a rule and the rows, every line padded to the same display width."""
    widths = _widths([header, *rows])
    lines = [_line(header, widths), "  ".join("-" * width for width in widths)]
    lines.extend(_line(row, widths) for row in rows)
    return "\n".join(lines)


def _html_table(
    css_class: str,
    caption: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    empty: str | None = None,
) -> str:
    """The one HTML table writer: a caption, a header row and the rows, every cell escaped."""
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


def _source(source: Any) -> str:
    """A batch input as a short label: a path as given, otherwise what kind of object it was."""
    if isinstance(source, str):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"bytes ({len(source)} B)"
    size = getattr(source, "size", None)
    if isinstance(size, tuple) and hasattr(source, "mode"):  # a PIL image
        return f"image {size[0]}x{size[1]}"
    shape = getattr(source, "shape", None)
    if isinstance(shape, tuple):
        return f"array {'x'.join(map(str, shape))}"
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return name
    return type(source).__name__
