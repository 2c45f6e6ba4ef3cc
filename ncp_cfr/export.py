"""Stored results as one flat table, one row per face: CSV, JSON Lines or Parquet.

```python
from ncp_cfr import export
from ncp_cfr.store import ResultStore

with ResultStore("library.db") as store:
    export.write(store.results(), "faces.csv", "csv")
```

Every row has the columns of [`COLUMNS`][ncp_cfr.export.COLUMNS], in that order. A photo with no
face gets one row with ``face`` empty; a photo that failed gets one row with ``error`` set
(``"InvalidImageError: ..."``). Coordinates are pixels of the image as the caller passed it.

- ``face`` and ``analyze``: a row per face, with its box, five landmarks (empty when the service
  sent none) and attributes; ``analyze`` adds each face's lookalike.
- ``celebrity``: a row per name, with ``lookalike`` and ``lookalike_confidence`` only (the service
  does not say where the face is).
- ``lookalike``: one row with the match (or, when there is no clear match, the leading
  candidate) and its mean confidence over the sizes that voted for it.

A failed lookalike of one face of an ``analyze`` leaves that face's ``lookalike`` empty; the
reason stays in the stored result, not in this table.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, Final, Literal

from pydantic import ValidationError

from ncp_cfr.errors import CFRError, InvalidArgumentError
from ncp_cfr.models import (
    RESULTS_BY_OPERATION,
    Analysis,
    AnalyzedFace,
    Celebrity,
    CelebrityResult,
    Face,
    FaceResult,
    Lookalike,
    Prediction,
)

if TYPE_CHECKING:
    from ncp_cfr.store import StoredResult

__all__ = ["COLUMNS", "Format", "arrow_schema", "outcome_rows", "rows", "write"]

#: The formats [`write`][ncp_cfr.export.write] writes.
Format = Literal["csv", "jsonl", "parquet"]

#: The table's columns as ``(name, type)``, type one of ``"string"``, ``"int"``, ``"float"``:
#: the schema every export (and the Ray adapter) shares. Every column may be empty (``None``).
COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("file", "string"),
    ("sha256", "string"),
    ("operation", "string"),
    ("face", "int"),
    ("x", "int"),
    ("y", "int"),
    ("width", "int"),
    ("height", "int"),
    ("left_eye_x", "int"),
    ("left_eye_y", "int"),
    ("right_eye_x", "int"),
    ("right_eye_y", "int"),
    ("nose_x", "int"),
    ("nose_y", "int"),
    ("left_mouth_x", "int"),
    ("left_mouth_y", "int"),
    ("right_mouth_x", "int"),
    ("right_mouth_y", "int"),
    ("gender", "string"),
    ("gender_confidence", "float"),
    ("age", "string"),
    ("age_low", "int"),
    ("age_high", "int"),
    ("age_confidence", "float"),
    ("emotion", "string"),
    ("emotion_confidence", "float"),
    ("pose", "string"),
    ("pose_confidence", "float"),
    ("lookalike", "string"),
    ("lookalike_confidence", "float"),
    ("request_id", "string"),
    ("error", "string"),
)

_NAMES: Final = tuple(name for name, _ in COLUMNS)
_LANDMARKS: Final = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")
# Parquet row groups of this many rows: memory stays bounded for any library.
_PARQUET_CHUNK: Final = 10_000


def rows(results: Iterable[StoredResult]) -> Iterator[dict[str, object]]:
    """The table's rows for ``results``, lazily: one dict per row, keys in the order of
    [`COLUMNS`][ncp_cfr.export.COLUMNS].

    A stored answer that cannot be read (an unknown operation, JSON the models refuse) gives one
    row with ``error`` saying so: one bad entry never stops an export.
    """
    for result in results:
        yield from _rows_of(result)


def outcome_rows(
    operation: str,
    outcome: FaceResult | CelebrityResult | Analysis | Lookalike | CFRError,
    *,
    file: str | None = None,
    sha256: str | None = None,
) -> list[dict[str, object]]:
    """The table's rows for one photo's outcome as a batch gives it, without a store: its result,
    or the error it failed with (e.g. ``item.result or item.error`` of a
    [`BatchItem`][ncp_cfr.BatchItem]).

    Args:
        operation: ``"face"``, ``"celebrity"``, ``"analyze"`` or ``"lookalike"``.
        outcome: the result, or the [`CFRError`][ncp_cfr.CFRError]: one row with ``error`` set
            to ``"ClassName: message"``, as ``export`` writes a stored failure.
        file: the ``file`` cell (the photo's path), if any.
        sha256: the ``sha256`` cell ([`content_hash`][ncp_cfr.store.content_hash]), if known.

    Raises:
        InvalidArgumentError: an unknown operation.
    """
    if operation not in RESULTS_BY_OPERATION:
        raise InvalidArgumentError(
            f"operation must be one of {', '.join(map(repr, RESULTS_BY_OPERATION))}, "
            f"got {operation!r}"
        )
    base: dict[str, object] = dict.fromkeys(_NAMES)
    base.update(file=file, sha256=sha256, operation=operation)
    base["request_id"] = getattr(outcome, "request_id", None)
    if isinstance(outcome, CFRError):
        return [{**base, "error": f"{type(outcome).__name__}: {outcome}"}]
    return list(_result_rows(operation, outcome, base))


def arrow_schema() -> Any:
    """[`COLUMNS`][ncp_cfr.export.COLUMNS] as a ``pyarrow.Schema`` (strings, int64, float64):
    the schema of the Parquet export and of the Ray adapter's blocks.

    Raises:
        CFRError: pyarrow is not installed.
    """
    pa = _pyarrow()
    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64()}
    return pa.schema([(name, types[kind]) for name, kind in COLUMNS])


def write(
    results: Iterable[StoredResult],
    out: str | os.PathLike[str] | IO[str] | IO[bytes],
    format: Format,
) -> int:
    """Write the table of ``results`` to ``out``.

    Args:
        results: stored outcomes, e.g. ``store.results()``.
        out: a file path (created or replaced); or an open file: a text file for ``"csv"``
            (opened with ``newline=""``, as the ``csv`` module asks) and ``"jsonl"``, a binary
            file for ``"parquet"``.
        format: ``"csv"`` (a header row, UTF-8, an empty cell for ``None``), ``"jsonl"`` (one
            JSON object per line, UTF-8, non-ASCII text such as Hangul kept readable) or
            ``"parquet"`` (typed columns; needs ``pip install "clova-face[parquet]"``).

    Returns:
        How many rows were written (the header not counted).

    Raises:
        InvalidArgumentError: ``format`` is not one of the three.
        CFRError: ``"parquet"`` without pyarrow installed.
    """
    if format == "parquet":
        return _write_parquet(rows(results), out)
    if format not in ("csv", "jsonl"):
        raise InvalidArgumentError(f"format must be 'csv', 'jsonl' or 'parquet', got {format!r}")
    if isinstance(out, (str, os.PathLike)):
        with open(out, "w", encoding="utf-8", newline="") as file:
            return _write_text(rows(results), file, format)
    if isinstance(out, (io.RawIOBase, io.BufferedIOBase)):
        raise InvalidArgumentError(
            f"{format} is text: pass a file path or a file opened in text mode "
            f"(open(name, 'w', encoding='utf-8', newline=''))"
        )
    return _write_text(rows(results), out, format)  # type: ignore[arg-type]


def _write_text(table: Iterator[dict[str, object]], out: IO[str], format: str) -> int:
    count = 0
    if format == "csv":
        writer = csv.writer(out)
        writer.writerow(_NAMES)
        for row in table:
            # csv writes None as an empty cell and floats with repr: both round-trip.
            writer.writerow(row.values())
            count += 1
    else:
        for row in table:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def _write_parquet(
    table: Iterator[dict[str, object]], out: str | os.PathLike[str] | IO[str] | IO[bytes]
) -> int:
    if isinstance(out, io.TextIOBase):
        raise InvalidArgumentError(
            "parquet is binary: pass a file path or a file opened in binary mode ('wb')"
        )
    pa = _pyarrow()
    import pyarrow.parquet as pq  # type: ignore[import-untyped,import-not-found,unused-ignore]

    schema = arrow_schema()
    count = 0
    writer: Any = pq.ParquetWriter(out, schema)
    try:
        chunk: list[dict[str, object]] = []
        for row in table:
            chunk.append(row)
            if len(chunk) == _PARQUET_CHUNK:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                count += len(chunk)
                chunk = []
        if chunk or count == 0:
            # An empty export still writes the schema, so readers see the columns.
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            count += len(chunk)
    finally:
        writer.close()
    return count


def _pyarrow() -> Any:
    try:
        # Imported here: pyarrow is an optional extra and takes a while to import.
        import pyarrow as pa  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as exc:
        raise CFRError(
            f'Parquet and Arrow tables need pyarrow ({exc}): pip install "clova-face[parquet]"'
        ) from None
    return pa


def _rows_of(result: StoredResult) -> Iterator[dict[str, object]]:
    """The rows of one stored outcome."""
    base = _row(result)
    if not result.ok or result.result_json is None:
        if result.ok:
            error = "no result stored"
        else:
            parts = (result.error_type, result.error_message)
            error = ": ".join(part for part in parts if part) or "failed (no reason stored)"
        yield {**base, "error": error}
        return
    try:
        yield from _answer_rows(result.operation, result.result_json, base)
    except ValidationError as exc:
        count = exc.error_count()
        yield {**base, "error": f"unreadable stored result ({count} validation errors)"}


def _answer_rows(operation: str, text: str, base: dict[str, object]) -> Iterator[dict[str, object]]:
    if operation not in RESULTS_BY_OPERATION:
        yield {**base, "error": f"unknown operation {operation!r}: not exported"}
        return
    result = RESULTS_BY_OPERATION[operation].model_validate_json(text)
    yield from _result_rows(operation, result, base)


def _result_rows(
    operation: str, result: Any, base: dict[str, object]
) -> Iterator[dict[str, object]]:
    """The rows of one answer (a result model of ``operation``); ``base`` when it has none."""
    found = False
    if operation in ("face", "analyze"):
        for index, face in enumerate(result.faces):
            found = True
            yield {**base, "face": index, **_face_cells(face)}
    elif operation == "celebrity":
        for index, named in enumerate(result.faces):
            found = True
            yield {**base, "face": index, **_lookalike_cells(named.celebrity)}
    else:  # lookalike
        leader = result.best or (result.candidates[0] if result.candidates else None)
        if leader is not None:
            found = True
            # About the photo as a whole: no face index, as for the box.
            yield {
                **base,
                "lookalike": leader.name,
                "lookalike_confidence": leader.mean_confidence,
            }
    if not found:
        yield base


def _row(result: StoredResult) -> dict[str, object]:
    """A row of ``result`` with every face cell empty."""
    row: dict[str, object] = dict.fromkeys(_NAMES)
    row.update(
        file=result.source,
        sha256=result.sha256,
        operation=result.operation,
        request_id=result.request_id,
    )
    return row


def _face_cells(face: Face) -> dict[str, object]:
    roi = face.roi
    cells: dict[str, object] = {"x": roi.x, "y": roi.y, "width": roi.width, "height": roi.height}
    if face.landmark is not None:
        for name, point in face.landmark.points().items():
            cells[f"{name}_x"], cells[f"{name}_y"] = point.x, point.y
    for name, prediction in (
        ("gender", face.gender),
        ("emotion", face.emotion),
        ("pose", face.pose),
    ):
        cells.update(_prediction_cells(name, prediction))
    if face.age is not None:
        cells.update(_prediction_cells("age", face.age))
        cells["age_low"], cells["age_high"] = face.age.low, face.age.high
    if isinstance(face, AnalyzedFace) and face.lookalike is not None:
        cells.update(_lookalike_cells(face.lookalike))
    return cells


def _prediction_cells(name: str, prediction: Prediction | None) -> dict[str, object]:
    if prediction is None:
        return {}
    # str() of a known value's enum member is its text ("female"), as for an unknown string.
    return {name: str(prediction.value), f"{name}_confidence": prediction.confidence}


def _lookalike_cells(celebrity: Celebrity) -> dict[str, object]:
    return {"lookalike": celebrity.value, "lookalike_confidence": celebrity.confidence}
