"""Results as tables: HTML for notebooks and aligned plain text for terminals.

Every value is formatted the same way in both: ``female 99%``, boxes as ``x,y wxh``. Names come
from a server, so the HTML escapes every cell; the text table measures Hangul and other East
Asian wide characters as two columns, so columns stay aligned in a terminal. The models build
their own cells (their ``_repr_html_`` uses the same ones); this module checks what it is given
and lays the cells out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ncp_cfr import _tables
from ncp_cfr._tables import display_width
from ncp_cfr.batches import Batch, BatchItem
from ncp_cfr.errors import InvalidArgumentError
from ncp_cfr.models import (
    Analysis,
    CelebrityFace,
    CelebrityResult,
    Face,
    FaceResult,
    Lookalike,
)

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


def result_rows(result: Result) -> tuple[list[str], list[list[str]]]:
    """The table of a result as text cells: its header and one row per face, in result order.

    Args:
        result: a ``FaceResult``, ``Analysis`` or ``CelebrityResult``.

    Returns:
        ``(header, rows)``; ``rows`` is empty when there is no face.

    Raises:
        InvalidArgumentError: ``result`` is not a result of this SDK.
    """
    _, header, rows = _checked_result(result)._table()
    return header, rows


def result_html(result: Result) -> str:
    """An HTML table of a result, for Jupyter (what the results' ``_repr_html_`` shows).

    Args:
        result: a ``FaceResult``, ``Analysis`` or ``CelebrityResult``.

    Returns:
        An HTML fragment: a caption (result type, face count, image size) and a table with one
        row per face. Every value is HTML-escaped.
    """
    return _checked_result(result)._repr_html_()


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
    title, header, rows = _checked_result(result)._table()
    lines = [title] if caption else []
    lines.append(_tables.text_table(header, rows) if rows else "no faces")
    return "\n".join(lines)


def face_rows(face: Face | CelebrityFace) -> tuple[list[str], list[str]]:
    """One face as text cells, in the columns its result's table uses (without the `#`).

    Args:
        face: a `Face`, `AnalyzedFace` (with its lookalike column) or `CelebrityFace`.

    Returns:
        `(header, row)`.

    Raises:
        InvalidArgumentError: `face` is not a face of this SDK.
    """
    if not isinstance(face, (Face, CelebrityFace)):
        raise InvalidArgumentError(f"expected a Face, AnalyzedFace or CelebrityFace, got {face!r}")
    return list(face._HEADER), face._row()


def face_html(face: Face | CelebrityFace) -> str:
    """A one-row HTML table of a single face, every value escaped (its `_repr_html_`)."""
    face_rows(face)  # the same check
    return face._repr_html_()


def batch_rows(batch: Sequence[BatchItem[Any]]) -> tuple[list[str], list[list[str]]]:
    """The outcomes of a `*_many` call as text cells: one row per input, in input order.

    Args:
        batch: the [`BatchItem`][ncp_cfr.BatchItem]s a `*_many` method returned.

    Returns:
        `(header, rows)`: the input's position, its file (a path as given; otherwise the kind
        of object, e.g. `bytes (48213 B)`), its face count, and the error it failed with.
    """
    return list(Batch.HEADER), [item._row() for item in batch]


def batch_html(batch: Sequence[BatchItem[Any]]) -> str:
    """An HTML table of a batch's outcomes, every value escaped (`Batch._repr_html_`)."""
    return Batch(batch)._repr_html_()


def lookalike_rows(found: Lookalike) -> tuple[list[str], list[list[str]]]:
    """The ranked candidates of [`find_lookalike`][ncp_cfr.Client.find_lookalike] as text cells.

    Returns:
        ``(header, rows)``: one row per candidate, best first, with its votes (of the sizes that
        answered), its mean/min/max confidence and the sizes that voted for it.
    """
    _, header, rows = _checked_lookalike(found)._table()
    return header, rows


def lookalike_table(found: Lookalike) -> str:
    """A plain-text table of a lookalike vote, aligned like
    [`result_table`][ncp_cfr.display.result_table].

    The first line is the verdict: `best: NAME (V of N sizes, mean C, stable)` (or
    `unstable` when the match did not win most sizes), or `no clear match: ...` saying why
    (the leading name's mean confidence is under the threshold, a tie, or no name at all).
    The ranking follows either way.
    """
    verdict, header, rows = _checked_lookalike(found)._table()
    return f"{verdict}\n{_tables.text_table(header, rows)}" if rows else verdict


def lookalike_html(found: Lookalike) -> str:
    """An HTML table of a lookalike vote, every value escaped (``Lookalike._repr_html_``)."""
    return _checked_lookalike(found)._repr_html_()


def _checked_result(result: object) -> FaceResult | CelebrityResult | Analysis:
    if not isinstance(result, (FaceResult, CelebrityResult, Analysis)):
        raise InvalidArgumentError(
            f"expected a FaceResult, Analysis or CelebrityResult, got {result!r}"
        )
    return result


def _checked_lookalike(found: object) -> Lookalike:
    if not isinstance(found, Lookalike):
        raise InvalidArgumentError(f"expected a Lookalike from find_lookalike, got {found!r}")
    return found
