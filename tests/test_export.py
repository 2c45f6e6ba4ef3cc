"""Export: stored results as one flat table, one row per face, in CSV, JSON Lines and Parquet."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ncp_cfr.errors import CFRError, InvalidArgumentError
from ncp_cfr.export import COLUMNS, rows, write
from ncp_cfr.models import Analysis, CelebrityResult, FaceResult, Lookalike
from ncp_cfr.store import StoredResult, content_hash
from ncp_cfr.testing import make_celebrity, make_face

NAMES = [name for name, _ in COLUMNS]
INFO = {"size": {"width": 640, "height": 480}, "faceCount": 2}


def stored(
    source: str, operation: str, result: Any = None, *, error: tuple[str, str] | None = None
) -> StoredResult:
    return StoredResult(
        key=f"key-{source}-{operation}",
        sha256=content_hash(source.encode()),
        operation=operation,
        source=source,
        ok=error is None,
        result_json=None if result is None else result.model_dump_json(by_alias=True),
        raw_json=None,
        request_id=None if error else f"req-{source}",
        error_type=error[0] if error else None,
        error_message=error[1] if error else None,
        calls=0 if error else 1,
        stored_at=1.0,
    )


def face_result() -> FaceResult:
    return FaceResult.model_validate(
        {
            "info": INFO,
            "faces": [
                make_face(100, 80, 120, 140, gender="female", age="22~26", emotion="smile"),
                make_face(300, 60, 40, 44, landmark=None, gender="male", age="30~34"),
            ],
        }
    )


def analysis_result() -> Analysis:
    faces = [
        {**make_face(10, 20, 100, 100, gender="male", age="35~39"), "lookalike": None},
        {
            **make_face(200, 20, 90, 90, gender="female", age="24~28", emotion="laugh"),
            "lookalike": {"value": "송중기", "confidence": 0.77},
        },
    ]
    faces[0]["lookalike_error"] = "face too small"
    return Analysis.model_validate({"info": INFO, "faces": faces})


def celebrity_result(*names: tuple[str, float]) -> CelebrityResult:
    faces = [make_celebrity(name, confidence) for name, confidence in names]
    return CelebrityResult.model_validate({"info": INFO, "faces": faces})


def lookalike_result(best: bool = True, candidates: bool = True) -> Lookalike:
    leader = {
        "name": "이다희",
        "votes": 3,
        "meanConfidence": 0.52,
        "maxConfidence": 0.61,
        "minConfidence": 0.41,
        "sides": [480, 960, 1920],
    }
    runner_up = {**leader, "name": "송중기", "votes": 1, "meanConfidence": 0.2, "sides": [640]}
    return Lookalike.model_validate(
        {
            "size": {"width": 640, "height": 480},
            "best": leader if best else None,
            "candidates": [leader, runner_up] if candidates else [],
            "stable": best,
        }
    )


def library() -> list[StoredResult]:
    """One photo of every kind an export meets."""
    return [
        stored("faces.jpg", "face", face_result()),
        stored("empty.jpg", "face", FaceResult.model_validate({"info": INFO, "faces": []})),
        stored("broken.jpg", "face", error=("InvalidImageError", "HTTP 400, CFR code ER11")),
        stored("team.jpg", "analyze", analysis_result()),
        stored("stars.jpg", "celebrity", celebrity_result(("이다희", 0.61), ("Kim Tae-ri", 0.3))),
        stored("me.jpg", "lookalike", lookalike_result()),
    ]


# --- rows --------------------------------------------------------------------------------------


def test_every_row_has_the_columns_in_order() -> None:
    table = list(rows(library()))
    assert len(table) == 2 + 1 + 1 + 2 + 2 + 1
    for row in table:
        assert list(row) == NAMES
    assert {kind for _, kind in COLUMNS} == {"string", "int", "float"}
    assert len(set(NAMES)) == len(NAMES)


def test_face_rows_carry_box_landmarks_and_attributes() -> None:
    first, side = rows([stored("faces.jpg", "face", face_result())])
    assert first["file"] == "faces.jpg" and first["operation"] == "face"
    assert first["sha256"] == content_hash(b"faces.jpg")
    assert first["request_id"] == "req-faces.jpg" and first["error"] is None
    assert (first["face"], first["x"], first["y"], first["width"], first["height"]) == (
        0,
        100,
        80,
        120,
        140,
    )
    # make_face's frontal landmarks: leftEye at (x + 0.32 w, y + 0.38 h) ...
    assert (first["left_eye_x"], first["left_eye_y"]) == (138, 133)
    assert (first["right_mouth_x"], first["right_mouth_y"]) == (177, 186)
    assert (first["gender"], first["gender_confidence"]) == ("female", 0.9)
    assert (first["age"], first["age_low"], first["age_high"]) == ("22~26", 22, 26)
    assert (first["emotion"], first["pose"]) == ("smile", "frontal_face")
    assert first["lookalike"] is None
    # landmark null: every landmark cell empty, the rest filled
    assert side["face"] == 1 and side["x"] == 300
    assert all(side[name] is None for name in NAMES[8:18])
    assert (side["gender"], side["age_low"], side["age_high"]) == ("male", 30, 34)


def test_a_photo_without_faces_gets_one_row_without_a_face() -> None:
    empty = FaceResult.model_validate({"info": INFO, "faces": []})
    (row,) = rows([stored("empty.jpg", "face", empty)])
    assert row["file"] == "empty.jpg" and row["face"] is None and row["error"] is None
    assert all(row[name] is None for name in NAMES[3:30])
    (row,) = rows([stored("nobody.jpg", "celebrity", celebrity_result())])
    assert row["face"] is None and row["lookalike"] is None


def test_a_failed_photo_gets_one_row_with_its_error() -> None:
    failed = stored("broken.jpg", "analyze", error=("InvalidImageError", "HTTP 400, CFR code ER11"))
    (row,) = rows([failed])
    assert row["error"] == "InvalidImageError: HTTP 400, CFR code ER11"
    assert row["file"] == "broken.jpg" and row["operation"] == "analyze"
    assert row["face"] is None and row["request_id"] is None


def test_analyze_rows_add_each_faces_lookalike() -> None:
    small, named = rows([stored("team.jpg", "analyze", analysis_result())])
    assert small["face"] == 0 and small["lookalike"] is None and small["error"] is None
    assert small["gender"] == "male" and small["x"] == 10
    assert (named["lookalike"], named["lookalike_confidence"]) == ("송중기", 0.77)
    assert (named["emotion"], named["age_low"], named["left_eye_x"]) == ("laugh", 24, 229)


def test_celebrity_rows_have_a_name_and_no_box() -> None:
    result = celebrity_result(("이다희", 0.61), ("Kim Tae-ri", 0.3))
    first, second = rows([stored("stars.jpg", "celebrity", result)])
    assert (first["face"], first["lookalike"], first["lookalike_confidence"]) == (0, "이다희", 0.61)
    assert (second["face"], second["lookalike"]) == (1, "Kim Tae-ri")
    for row in (first, second):
        assert all(row[name] is None for name in NAMES[4:28])  # box, landmarks, attributes


@pytest.mark.parametrize(
    ("best", "candidates", "expected"),
    [(True, True, ("이다희", 0.52)), (False, True, ("이다희", 0.52)), (False, False, (None, None))],
)
def test_lookalike_is_one_row_with_the_match_or_the_leading_candidate(
    best: bool, candidates: bool, expected: tuple[object, object]
) -> None:
    (row,) = rows([stored("me.jpg", "lookalike", lookalike_result(best, candidates))])
    assert (row["lookalike"], row["lookalike_confidence"]) == expected
    assert row["face"] is None and row["x"] is None and row["error"] is None


def test_an_unreadable_entry_becomes_an_error_row_and_the_export_goes_on() -> None:
    good = stored("faces.jpg", "face", face_result())
    corrupt = StoredResult(
        "k", "0" * 64, "face", "bad.jpg", True, '{"faces": 3}', None, None, None, None, 1
    )
    future = StoredResult(
        "k2", "0" * 64, "mosaic", "new.jpg", True, "{}", None, None, None, None, 1
    )
    table = list(rows([corrupt, future, good]))
    assert "unreadable stored result" in str(table[0]["error"])
    assert "unknown operation 'mosaic'" in str(table[1]["error"])
    assert [row["file"] for row in table[2:]] == ["faces.jpg", "faces.jpg"]


# --- files -------------------------------------------------------------------------------------


def typed(cell: str, kind: str) -> object:
    """A CSV cell back to its COLUMNS type."""
    if cell == "":
        return None
    return {"int": int, "float": float, "string": str}[kind](cell)


def test_csv_reads_back_equal_with_hangul_intact(tmp_path: Path) -> None:
    out = tmp_path / "faces.csv"
    count = write(library(), out, "csv")
    expected = list(rows(library()))
    assert count == len(expected)
    text = out.read_bytes().decode("utf-8")
    assert "이다희" in text and "송중기" in text
    with out.open(encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == NAMES
        back = [{name: typed(row[name], kind) for name, kind in COLUMNS} for row in reader]
    assert back == expected


def test_jsonl_reads_back_equal_one_object_per_line(tmp_path: Path) -> None:
    out = tmp_path / "faces.jsonl"
    assert write(library(), str(out), "jsonl") == 9
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 9
    assert "이다희" in lines[6]  # readable, not \\uc774...
    assert [json.loads(line) for line in lines] == list(rows(library()))


def test_text_formats_write_to_an_open_file() -> None:
    buffer = io.StringIO()
    assert write(library()[:2], buffer, "jsonl") == 3
    assert len(buffer.getvalue().splitlines()) == 3
    buffer = io.StringIO(newline="")
    assert write([], buffer, "csv") == 0
    assert buffer.getvalue().strip() == ",".join(NAMES)


def test_parquet_reads_back_equal_with_typed_columns(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "faces.parquet"
    assert write(library(), out, "parquet") == 9
    table = pq.read_table(out)
    assert table.column_names == NAMES
    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64()}
    assert [table.schema.field(name).type for name in NAMES] == [types[k] for _, k in COLUMNS]
    assert table.to_pylist() == list(rows(library()))


def test_parquet_to_a_binary_file_and_an_empty_export_keeps_the_schema() -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    buffer = io.BytesIO()
    assert write([], buffer, "parquet") == 0
    buffer.seek(0)
    table = pq.read_table(buffer)
    assert table.num_rows == 0 and table.column_names == NAMES


def test_parquet_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(CFRError, match=r'pip install "clova-face\[parquet\]"'):
        write(library(), tmp_path / "faces.parquet", "parquet")
    assert not (tmp_path / "faces.parquet").exists()


def test_wrong_format_or_file_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="format"):
        write(library(), tmp_path / "x", "xlsx")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="text"):
        write(library(), io.BytesIO(), "csv")
    with pytest.raises(InvalidArgumentError, match="binary"):
        write(library(), io.StringIO(), "parquet")
