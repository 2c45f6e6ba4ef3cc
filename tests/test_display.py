"""Results as HTML (notebooks) and as aligned text (terminals)."""

from __future__ import annotations

import html
from typing import Any

import pytest

from ncp_cfr.display import display_width, result_html, result_rows, result_table
from ncp_cfr.models import Analysis, CelebrityResult, FaceResult

from .conftest import CONTRACT_FACE

INFO = {"size": {"width": 640, "height": 480}, "faceCount": 2}
FACE: dict[str, Any] = CONTRACT_FACE
SIDE_FACE: dict[str, Any] = {
    "roi": {"x": 80, "y": 45, "width": 61, "height": 61},
    "landmark": None,
    "gender": {"value": "female", "confidence": 0.999912},
    "age": {"value": "24~28", "confidence": 0.856547},
    "emotion": {"value": "<b>new</b>", "confidence": 0.999967},
    "pose": {"value": "right_face", "confidence": 0.61542},
}


def face_result() -> FaceResult:
    return FaceResult.model_validate({"info": INFO, "faces": [FACE, SIDE_FACE]})


def celebrity_result(*names: tuple[str, float]) -> CelebrityResult:
    faces = [{"celebrity": {"value": n, "confidence": c}} for n, c in names]
    return CelebrityResult.model_validate({"info": INFO, "faces": faces})


def analysis_result() -> Analysis:
    faces = [
        {**FACE, "lookalike": {"value": "송중기", "confidence": 0.773768}},
        {**SIDE_FACE, "lookalike": None, "lookalike_error": "face too small"},
    ]
    return Analysis.model_validate({"info": INFO, "faces": faces})


def test_face_html_has_every_value() -> None:
    page = result_html(face_result())
    for text in [
        "235,227 326x326",
        "yes",
        "no",
        "male 91%",
        "22~26 74%",
        "smile 46%",
        "frontal_face 94%",
        "female 100%",
        "right_face 62%",
        "2 faces in a 640x480",
    ]:
        assert f">{text}<" in page or text in page, text
    assert page.count("<tr>") == 3  # header + 2 faces
    assert "<th>pose</th>" in page


def test_html_escapes_what_the_server_sent() -> None:
    page = result_html(celebrity_result(("<script>alert(1)</script>", 0.5), ("이다희", 0.61)))
    assert "<script>" not in page
    assert html.escape("<script>alert(1)</script>") in page
    assert "<td>이다희</td>" in page and "<td>61%</td>" in page
    assert "<b>new</b>" not in result_html(face_result())  # an unknown emotion, escaped too


def test_analysis_html_has_the_lookalike_column() -> None:
    page = result_html(analysis_result())
    assert "<th>lookalike</th>" in page
    assert "송중기 77%" in page and "(face too small)" in page


def test_models_display_themselves_in_notebooks() -> None:
    result = celebrity_result(("송중기", 0.77))
    assert result._repr_html_() == result_html(result)


def test_empty_results() -> None:
    empty = CelebrityResult.model_validate({"info": INFO, "faces": []})
    assert "no faces" in result_html(empty)
    assert result_table(empty) == "no faces"
    assert result_table(empty, caption=True).splitlines() == [
        "CelebrityResult: 0 faces in a 640x480 image",
        "no faces",
    ]


def test_display_width_counts_hangul_twice() -> None:
    assert display_width("이다희") == 6
    assert display_width("abc") == 3
    assert display_width("e\u0301") == 1  # a combining accent takes no column
    assert display_width("ｆｕｌｌ") == 8


def test_text_table_aligns_hangul() -> None:
    result = celebrity_result(("이다희", 0.61), ("Hopper", 0.2), ("남궁민수", 0.05))
    lines = result_table(result).splitlines()
    assert len(lines) == 5  # header, rule, 3 rows
    assert len({display_width(line) for line in lines}) == 1
    # The confidence column starts at the same display column on every line.
    starts = {
        display_width(line[: line.index(pct)])
        for line, pct in zip(lines[2:], ["61%", "20%", "5%"], strict=True)
    }
    assert starts == {display_width(lines[0][: lines[0].index("confidence")])}


def test_text_table_of_faces_and_analyses() -> None:
    for result in (face_result(), analysis_result()):
        lines = result_table(result, caption=True).splitlines()
        assert lines[0].startswith(type(result).__name__)
        assert len({display_width(line) for line in lines[1:]}) == 1
    assert "송중기 77%" in result_table(analysis_result())
    header, rows = result_rows(face_result())
    assert header[:3] == ["#", "box", "landmarks"] and rows[1][2] == "no"


def test_other_objects_are_refused() -> None:
    with pytest.raises(TypeError):
        result_html(object())  # type: ignore[arg-type]
