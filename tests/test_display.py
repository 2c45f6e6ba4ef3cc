"""Results as HTML (notebooks) and as aligned text (terminals)."""

from __future__ import annotations

import html
import importlib
import sys
import types
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from ncp_cfr.display import (
    display_width,
    face_html,
    lookalike_table,
    result_html,
    result_rows,
    result_table,
)
from ncp_cfr.models import Analysis, CelebrityResult, FaceResult, Lookalike
from ncp_cfr.testing import Emulator

from .conftest import CONTRACT_FACE, HOPPER

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


# -- issue 10: single faces, batches and lookalike verdicts in notebooks --------------------------


def test_a_single_face_shows_itself_as_html() -> None:
    face = face_result().faces[1]
    page = face._repr_html_()
    assert page == face_html(face)
    assert "<caption" in page and ">Face<" in page and page.count("<tr>") == 2
    assert "<td>80,45 61x61</td>" in page and "<td>right_face 62%</td>" in page
    assert "<th>#</th>" not in page and "&lt;b&gt;new&lt;/b&gt;" in page

    analyzed = analysis_result().faces[0]
    assert "<th>lookalike</th>" in analyzed._repr_html_()
    assert "송중기 77%" in analyzed._repr_html_()

    named = celebrity_result(("<i>이다희</i>", 0.61)).faces[0]
    page = named._repr_html_()
    assert ">CelebrityFace<" in page and "<td>61%</td>" in page
    assert "&lt;i&gt;이다희&lt;/i&gt;" in page


def lookalike(*candidates: tuple[str, int, float], best: int | None, stable: bool) -> Lookalike:
    sides = [320, 480, 640, 800]
    rows = [
        {"name": n, "votes": v, "mean_confidence": c, "max_confidence": c, "min_confidence": c}
        for n, v, c in candidates
    ]
    return Lookalike.model_validate(
        {
            "size": {"width": 800, "height": 600},
            "candidates": rows,
            "best": rows[best] if best is not None else None,
            "stable": stable,
            "per_scale": [{"side": s, "width": s, "height": s * 3 // 4} for s in sides],
        }
    )


def test_lookalike_verdicts() -> None:
    stable = lookalike(("이다희", 3, 0.61), ("A", 1, 0.4), best=0, stable=True)
    assert (
        lookalike_table(stable).splitlines()[0] == "best: 이다희 (3 of 4 sizes, mean 61%, stable)"
    )
    unstable = lookalike(("이다희", 2, 0.61), ("A", 1, 0.4), best=0, stable=False)
    assert "unstable" in lookalike_table(unstable).splitlines()[0]
    weak = lookalike(("그레이스 호퍼", 4, 0.01), best=None, stable=False)
    assert lookalike_table(weak).splitlines()[0] == (
        "no clear match: the leading name, 그레이스 호퍼, averages 1% (a match needs 30%)"
    )
    tie = lookalike(("A", 2, 0.6), ("B", 2, 0.5), best=None, stable=False)
    assert lookalike_table(tie).splitlines()[0] == "no clear match: A, B tie at 2 of 4 sizes each"
    nobody = lookalike(best=None, stable=False)
    assert lookalike_table(nobody) == "no clear match: no name at any of 4 sizes"
    assert "no clear match" in weak._repr_html_()


def test_many_returns_a_batch_that_renders_as_html(emu: Emulator) -> None:
    with emu.client() as client:
        items = client.detect_faces_many([HOPPER, b"not an image"])
    assert isinstance(items, list) and type(items).__name__ == "Batch"
    page = items._repr_html_()  # type: ignore[attr-defined]
    assert f"<td>{HOPPER}</td>" in page and "ImageError" in page
    assert "1 succeeded, 1 failed" in page


@pytest.fixture
def notebook_without_ipywidgets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What tqdm sees in a Jupyter kernel where ipywidgets is not installed."""
    shell = type("ZMQInteractiveShell", (), {})()
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets -> ImportError
    # tqdm decides at import time: forget the modules that decided outside a notebook.
    names = ("tqdm.auto", "tqdm.autonotebook", "tqdm.notebook")
    saved = {name: sys.modules.pop(name, None) for name in names}
    try:
        yield
    finally:
        for name, module in saved.items():
            sys.modules.pop(name, None)
            if module is not None:
                sys.modules[name] = module


@pytest.mark.usefixtures("notebook_without_ipywidgets")
def test_progress_in_a_notebook_without_ipywidgets_gives_no_warning() -> None:
    pytest.importorskip("tqdm")
    from ncp_cfr.clients._base import progress_hook as _progress_hook

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        update, close = _progress_hook(True, 2)
        update(1, 2)
        update(2, 2)
        close()
    assert [str(w.message) for w in caught] == []


@pytest.mark.usefixtures("notebook_without_ipywidgets")
def test_the_simulated_notebook_reproduces_the_ipywidgets_warning() -> None:
    # The fixture is faithful: tqdm.auto itself warns there, which the hook must avoid.
    package = pytest.importorskip("tqdm")
    with pytest.warns(package.TqdmWarning, match="IProgress not found"):
        importlib.import_module("tqdm.auto")
