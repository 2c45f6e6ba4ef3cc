"""``analyze`` and ``find_lookalike`` against the loopback emulator, on both shells."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from ncp_cfr import CFRError, InvalidImageError, ServerError, prepare_image
from ncp_cfr.models import Analysis, Lookalike
from ncp_cfr.testing import Emulator, RecordedRequest, make_celebrity, make_face

from .conftest import Runner

RED = (220, 20, 20)
BLUE = (20, 20, 220)


def two_faces() -> Image.Image:
    """A grey 400x300 picture, a red "face" at (40, 60) and a blue one at (240, 60), 100 px each."""
    image = Image.new("RGB", (400, 300), (128, 128, 128))
    image.paste(RED, (40, 60, 140, 160))
    image.paste(BLUE, (240, 60, 340, 160))
    return image


def colour(request: RecordedRequest) -> str:
    pixel = request.image.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(pixel, tuple)
    r, _, b = pixel
    return "red" if r > b + 30 else "blue" if b > r + 30 else "grey"


def is_red(request: RecordedRequest) -> bool:
    return colour(request) == "red"


def is_blue(request: RecordedRequest) -> bool:
    return colour(request) == "blue"


@pytest.fixture
def scene(emu: Emulator) -> Emulator:
    """Two faces and a tiny one; the celebrity endpoint names whoever's colour it is shown."""
    emu.reply(
        "face",
        faces=[
            make_face(40, 60, 100, 100, gender="female"),
            make_face(240, 60, 100, 100, gender="male"),
            make_face(180, 250, 16, 16),
        ],
    )
    emu.reply("celebrity", faces=[make_celebrity("이다희", 0.61)], match=is_red, times=None)
    emu.reply("celebrity", faces=[make_celebrity("송중기", 0.77)], match=is_blue, times=None)
    return emu


def test_each_face_gets_the_name_found_in_its_own_crop(shell: Runner, scene: Emulator) -> None:
    analysis = shell("analyze", two_faces())
    assert isinstance(analysis, Analysis)
    red, blue, tiny = analysis.faces
    assert red.lookalike is not None and red.lookalike.value == "이다희"
    assert blue.lookalike is not None and blue.lookalike.value == "송중기"
    assert red.gender is not None and red.gender.value == "female"
    assert (blue.roi.x, blue.roi.y, blue.roi.width) == (240, 60, 100)
    # The tiny face cost nothing: one face call and one call per cropped face.
    assert tiny.lookalike is None and tiny.lookalike_error is None
    assert scene.calls("face") == 1 and scene.calls("celebrity") == 2
    assert sorted(colour(r) for r in scene.requests if r.endpoint == "celebrity") == ["blue", "red"]


def test_results_are_in_the_callers_pixels_whatever_was_uploaded(
    shell: Runner, scene: Emulator
) -> None:
    big = two_faces().resize((4000, 3000), Image.Resampling.NEAREST)  # over the max side
    scene.reset()
    # The service answers in the 1920x1440 upload's pixels: the squares are at x 192 and 1152.
    scene.reply("face", faces=[make_face(192, 288, 480, 480), make_face(1152, 288, 480, 480)])
    scene.reply("celebrity", faces=[make_celebrity("이다희", 0.61)], match=is_red, times=None)
    scene.reply("celebrity", faces=[make_celebrity("송중기", 0.77)], match=is_blue, times=None)
    analysis = shell("analyze", big)
    assert (analysis.info.size.width, analysis.info.size.height) == (4000, 3000)
    assert [f.lookalike.value for f in analysis.faces] == ["이다희", "송중기"]
    assert [f.roi.x for f in analysis.faces] == [400, 2400]  # mapped back from the upload
    assert analysis.upload is not None and analysis.upload.width < 4000


def test_threshold_drops_weak_names(shell: Runner, scene: Emulator) -> None:
    analysis = shell("analyze", two_faces(), call_kwargs={"min_confidence": 0.7})
    assert analysis.faces[0].lookalike is None  # 0.61
    assert analysis.faces[1].lookalike is not None  # 0.77


def test_min_face_is_in_the_callers_pixels(shell: Runner, scene: Emulator) -> None:
    shell("analyze", two_faces(), call_kwargs={"min_face": 150})
    assert scene.calls("celebrity") == 0


def test_one_failing_crop_leaves_the_other_faces_answer(shell: Runner, scene: Emulator) -> None:
    scene.inject("ER22", endpoint="celebrity", match=is_blue, times=None)
    analysis = shell("analyze", two_faces(), max_retries=1)
    red, blue, _ = analysis.faces
    assert red.lookalike is not None and red.lookalike.value == "이다희"
    assert blue.lookalike is None
    assert blue.lookalike_error is not None and "ER22" in blue.lookalike_error
    assert sum(1 for r in scene.requests if r.endpoint == "celebrity" and is_blue(r)) == 2


def test_a_failing_face_call_raises(shell: Runner, emu: Emulator) -> None:
    emu.inject("ER15", endpoint="face")
    with pytest.raises(InvalidImageError):
        shell("analyze", two_faces())
    assert emu.calls("celebrity") == 0


def test_crop_calls_run_side_by_side_within_the_bound(shell: Runner, emu: Emulator) -> None:
    emu.latency = 0.1
    emu.reply("face", faces=[make_face(10 + 60 * i, 60, 50, 50) for i in range(6)])
    image = Image.new("RGB", (400, 300), (128, 128, 128))
    shell("analyze", image, call_kwargs={"concurrency": 3, "margin": 0.1})
    assert emu.calls("celebrity") == 6
    assert emu.max_in_flight == 3


def test_analyze_reads_a_stream_once_and_takes_a_prepared_image(
    shell: Runner, scene: Emulator
) -> None:
    buf = io.BytesIO()
    two_faces().save(buf, "PNG")
    analysis = shell("analyze", io.BytesIO(buf.getvalue()))
    assert [f.lookalike.value for f in analysis.faces[:2]] == ["이다희", "송중기"]

    scene.reply("face", faces=[make_face(40, 60, 100, 100), make_face(240, 60, 100, 100)])
    analysis = shell("analyze", prepare_image(two_faces()))
    assert [f.lookalike.value for f in analysis.faces] == ["이다희", "송중기"]


def test_analyze_leaves_the_callers_stream_where_it_was(shell: Runner, scene: Emulator) -> None:
    # The caller may read the same stream again (to draw on it, to save it): no EOF surprise.
    buf = io.BytesIO()
    two_faces().save(buf, "PNG")
    stream = io.BytesIO(b"header" + buf.getvalue())
    stream.seek(6)
    analysis = shell("analyze", stream)
    assert [f.lookalike.value for f in analysis.faces[:2]] == ["이다희", "송중기"]
    assert stream.tell() == 6
    assert stream.read() == buf.getvalue()


def test_missing_file_is_an_image_error_before_any_call(
    shell: Runner, emu: Emulator, tmp_path: Path
) -> None:
    with pytest.raises(CFRError):
        shell("analyze", tmp_path / "missing.jpg")
    assert emu.calls() == 0


# -- find_lookalike -------------------------------------------------------------------------------


def small_upload(request: RecordedRequest) -> bool:
    return request.width is not None and request.width <= 500


@pytest.fixture
def by_size(emu: Emulator) -> Emulator:
    """Small uploads look like 이다희, larger ones like 송중기 (resolution instability)."""
    emu.reply("celebrity", faces=[make_celebrity("이다희", 0.4)], match=small_upload, times=None)
    emu.reply("celebrity", faces=[make_celebrity("송중기", 0.6)], times=None)
    return emu


def photo(width: int = 1200, height: int = 900) -> Image.Image:
    return Image.new("RGB", (width, height), (150, 120, 100))


def test_consensus_counts_votes_per_size(shell: Runner, by_size: Emulator) -> None:
    found = shell("find_lookalike", photo(), call_kwargs={"scales": [320, 480, 640, 800, 1024]})
    assert isinstance(found, Lookalike)
    assert [(c.name, c.votes) for c in found.candidates] == [("송중기", 3), ("이다희", 2)]
    assert found.best is not None and found.best.sides == [640, 800, 1024]
    assert found.stable
    assert sorted(r.width or 0 for r in by_size.requests) == [320, 480, 640, 800, 1024]
    assert [s.width for s in found.per_scale] == [320, 480, 640, 800, 1024]


def test_default_scales_are_capped_at_the_images_size(shell: Runner, by_size: Emulator) -> None:
    found = shell("find_lookalike", photo(700, 500))
    assert [s.side for s in found.per_scale] == [320, 480, 640, 700]
    assert by_size.calls("celebrity") == 4
    # A tie on votes goes to the higher mean confidence, but a tie is no majority.
    assert [(c.name, c.votes) for c in found.candidates] == [("송중기", 2), ("이다희", 2)]
    assert not found.stable


def test_fractions_of_the_image(shell: Runner, by_size: Emulator) -> None:
    found = shell("find_lookalike", photo(), call_kwargs={"scales": [0.25, 0.5, 1.0]})
    assert [s.side for s in found.per_scale] == [300, 600, 1200]


def test_a_failing_size_is_recorded_not_fatal(shell: Runner, by_size: Emulator) -> None:
    # Faults fire before the emulator decodes the upload: look at the image itself.
    by_size.inject("ER15", match=lambda r: r.image.width == 640, times=None)
    found = shell("find_lookalike", photo(), call_kwargs={"scales": [320, 640, 1024]})
    failed = found.per_scale[1]
    assert failed.error is not None and "ER15" in failed.error and failed.top is None
    assert sum(c.votes for c in found.candidates) == 2


def test_every_size_failing_raises(shell: Runner, emu: Emulator) -> None:
    emu.inject("ER22", times=None)
    with pytest.raises(ServerError):
        shell("find_lookalike", photo(), max_retries=0, call_kwargs={"scales": [320, 640]})
    assert emu.calls() == 2
