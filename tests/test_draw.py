"""Overlays, crops, blur and font resolution, checked on pixels."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageFont, ImageStat

from ncp_cfr import draw, fonts
from ncp_cfr.draw import _overlay, blur_faces, crop_faces, draw_faces, face_label
from ncp_cfr.errors import ImageError
from ncp_cfr.models import Analysis, CelebrityResult, Face, FaceResult
from ncp_cfr.testing import frontal_landmarks

GRAY = (128, 128, 128)
RED = (255, 0, 0)
ROI = {"x": 100, "y": 80, "width": 120, "height": 140}


def landmark_for(roi: dict[str, int]) -> dict[str, dict[str, int]]:
    return frontal_landmarks(roi["x"], roi["y"], roi["width"], roi["height"])


def face_json(roi: dict[str, int] = ROI, *, landmarks: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "roi": roi,
        "landmark": landmark_for(roi) if landmarks else None,
        "gender": {"value": "female", "confidence": 0.99},
        "age": {"value": "24~28", "confidence": 0.8},
        "emotion": {"value": "smile", "confidence": 0.7},
        "pose": {"value": "frontal_face", "confidence": 0.9},
        **extra,
    }


def faces(*items: dict[str, Any], size: tuple[int, int] = (300, 300)) -> FaceResult:
    info = {"size": {"width": size[0], "height": size[1]}, "faceCount": len(items)}
    return FaceResult.model_validate({"info": info, "faces": list(items)})


def analysis(*items: dict[str, Any], size: tuple[int, int] = (300, 300)) -> Analysis:
    info = {"size": {"width": size[0], "height": size[1]}, "faceCount": len(items)}
    return Analysis.model_validate({"info": info, "faces": list(items)})


def celebrities(*names: tuple[str, float], size: tuple[int, int] = (300, 300)) -> CelebrityResult:
    info = {"size": {"width": size[0], "height": size[1]}, "faceCount": len(names)}
    items = [{"celebrity": {"value": n, "confidence": c}} for n, c in names]
    return CelebrityResult.model_validate({"info": info, "faces": items})


def gray(size: tuple[int, int] = (300, 300)) -> Image.Image:
    return Image.new("RGB", size, GRAY)


def noisy(size: tuple[int, int] = (300, 300)) -> Image.Image:
    """A textured image: blurring or pixelating it changes nearly every pixel."""
    bands = [Image.effect_noise(size, 60 + 20 * i) for i in range(3)]
    return Image.merge("RGB", bands)


def changed(before: Image.Image, after: Image.Image, box: tuple[int, int, int, int]) -> int:
    """How many pixels in ``box`` differ between the two images."""
    diff = ImageChops.difference(before.crop(box), after.crop(box)).convert("L")
    return sum(diff.point(lambda v: 255 if v else 0).histogram()[1:])


def same_outside(a: Image.Image, b: Image.Image, boxes: list[tuple[int, int, int, int]]) -> bool:
    """Whether the images are identical, bit for bit, outside ``boxes``."""
    a, b = a.copy(), b.copy()
    for box in boxes:
        a.paste((0, 0, 0), box)
        b.paste((0, 0, 0), box)
    return a.tobytes() == b.tobytes()


def pixel(image: Image.Image, x: int, y: int) -> tuple[int, ...]:
    value = image.getpixel((x, y))
    assert isinstance(value, tuple)
    return value


def tag_rows(image: Image.Image, x: int, color: tuple[int, int, int]) -> list[int]:
    """The rows where column ``x`` has ``color``: where a label tag of that colour lies."""
    return [y for y in range(image.height) if image.getpixel((x, y)) == color]


@pytest.fixture(autouse=True)
def fresh_fonts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(fonts.ENV_VAR, raising=False)
    monkeypatch.setattr(_overlay, "_warned_missing_glyphs", False)
    fonts.clear_font_cache()
    yield
    fonts.clear_font_cache()


@pytest.fixture
def nanum() -> Path:
    path = fonts._extra_font()
    if path is None:
        pytest.skip("the [fonts] extra (koreanize-matplotlib) is not installed")
    return path


def no_hangul_font(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fonts, "_system_candidates", lambda: iter(()))
    monkeypatch.setattr(fonts, "_extra_font", lambda: None)
    fonts.clear_font_cache()


# -- boxes, landmarks, labels ---------------------------------------------------------------------


def test_box_edges_lie_on_the_roi_and_the_face_is_untouched() -> None:
    image = gray()
    out = draw_faces(image, faces(face_json()), color=RED, landmarks=False, labels=False)
    x, y, right, bottom = 100, 80, 219, 219
    for point in [(x, 150), (right, 150), (160, y), (160, bottom), (x, y), (right, bottom)]:
        assert out.getpixel(point) == RED, point
    assert out.getpixel((160, 150)) == GRAY
    assert out.getpixel((x + 5, 150)) == GRAY  # the line is thin: 2 px on a 300 px image
    assert out.getpixel((x - 5, 150)) == GRAY
    assert out.size == image.size and out.mode == "RGB"


def test_defaults_draw_everything_and_leave_the_face_clear() -> None:
    image = gray()
    out = draw_faces(image, faces(face_json()))
    assert out.getpixel((100, 150)) == draw.PALETTE[0]
    assert out.getpixel((115, 205)) == GRAY  # inside the box, away from dots and label
    lm = landmark_for(ROI)["nose"]
    assert out.getpixel((lm["x"], lm["y"])) == draw.PALETTE[0]
    assert tag_rows(out, 100, draw.PALETTE[0])[0] < 70  # the label tag, above the box


def test_each_face_gets_its_own_colour_and_a_single_colour_applies_to_all() -> None:
    second = {"x": 20, "y": 200, "width": 60, "height": 60}
    result = faces(face_json(), face_json(second))
    out = draw_faces(gray(), result, labels=False)
    assert out.getpixel((100, 150)) == draw.PALETTE[0]
    assert out.getpixel((20, 230)) == draw.PALETTE[1]
    out = draw_faces(gray(), result, labels=False, color="#0000ff")
    assert out.getpixel((100, 150)) == out.getpixel((20, 230)) == (0, 0, 255)


@pytest.mark.parametrize(
    ("size", "roi", "minimum"),
    [
        ((300, 300), ROI, 12),  # 120 px face: dots of ~4 px radius
        ((6000, 4000), {"x": 2000, "y": 1000, "width": 2400, "height": 2800}, 2000),
    ],
)
def test_landmark_markers_are_visible_at_any_size(
    size: tuple[int, int], roi: dict[str, int], minimum: int
) -> None:
    image = gray(size)
    out = draw_faces(image, faces(face_json(roi), size=size), boxes=False, labels=False)
    radius = max(2, round(0.03 * roi["width"]))
    for point in landmark_for(roi).values():
        x, y = point["x"], point["y"]
        window = (x - 2 * radius, y - 2 * radius, x + 2 * radius + 1, y + 2 * radius + 1)
        count = changed(image, out, window)
        assert count >= minimum, (point, count)
        assert count <= (4 * radius + 1) ** 2 // 2  # a dot, not a smear
    # Nothing beyond the dots.
    assert out.getpixel((roi["x"] + 2, roi["y"] + 2)) == GRAY


def test_markers_have_a_contrasting_outline() -> None:
    out = draw_faces(gray(), faces(face_json()), boxes=False, labels=False, landmark_color="yellow")
    nose = landmark_for(ROI)["nose"]
    x, y = nose["x"], nose["y"]
    colours = {pixel(out, x + dx, y + dy) for dx in range(-5, 6) for dy in range(-5, 6)}
    assert (255, 255, 0) in colours and (0, 0, 0) in colours


def test_no_markers_without_landmarks() -> None:
    image = gray()
    out = draw_faces(image, faces(face_json(landmarks=False)), boxes=False, labels=False)
    assert out.tobytes() == image.tobytes()
    out = draw_faces(image, faces(face_json()), boxes=False, labels=False, landmarks=False)
    assert out.tobytes() == image.tobytes()


def test_label_goes_below_a_face_at_the_top_and_stays_inside_the_image() -> None:
    roi = {"x": 240, "y": 0, "width": 60, "height": 60}  # top right corner
    out = draw_faces(gray(), faces(face_json(roi)), color=RED, landmarks=False)
    rows = tag_rows(out, 299, RED)
    assert rows[0] == 0  # the box's top edge
    assert max(rows) > 70  # the tag, below the box
    # Pushed left so the whole tag fits: its fill reaches well left of the box.
    assert out.getpixel((200, max(rows))) == RED


def test_result_without_faces_gives_an_unchanged_copy() -> None:
    image = gray()
    out = draw_faces(image, faces())
    assert out is not image and out.tobytes() == image.tobytes()


def test_face_label_text() -> None:
    face = Face.model_validate(face_json())
    assert face_label(face) == "female 24~28 · smile"
    side = Face.model_validate(face_json(pose={"value": "left_face", "confidence": 0.6}))
    assert face_label(side) == "female 24~28 · smile · left face"
    assert face_label(face, confidences=True) == "female 99% · 24~28 80% · smile 70%"
    assert face_label(Face.model_validate({"roi": ROI})) == ""


def test_custom_label_and_no_labels() -> None:
    plain = draw_faces(gray(), faces(face_json()), color=RED, labels=False)
    assert tag_rows(plain, 100, RED) == list(range(79, 221))  # just the box edge
    custom = draw_faces(gray(), faces(face_json()), color=RED, label=lambda f: "A\nB\nC")
    default = draw_faces(gray(), faces(face_json()), color=RED)
    assert len(tag_rows(custom, 100, RED)) > len(tag_rows(default, 100, RED))
    empty = draw_faces(gray(), faces(face_json()), color=RED, label=lambda f: "")
    assert empty.tobytes() == plain.tobytes()


def test_analysis_label_adds_the_lookalike(nanum: Path) -> None:
    with_name = face_json(lookalike={"value": "이다희", "confidence": 0.61})
    named = draw_faces(gray(), analysis(with_name), color=RED)
    anonymous = draw_faces(gray(), analysis(face_json()), color=RED)
    named_rows, anonymous_rows = tag_rows(named, 100, RED), tag_rows(anonymous, 100, RED)
    assert len(named_rows) > len(anonymous_rows) + 8  # a second line of text
    below = draw_faces(gray(), analysis(with_name), color=RED, min_confidence=0.7)
    assert below.tobytes() == anonymous.tobytes()


def test_celebrity_legend_is_drawn_top_left() -> None:
    image = gray()
    out = draw_faces(image, celebrities(("송중기", 0.77), ("이연희", 0.15)))
    panel = (0, 0, 100, 40)
    assert changed(image, out, panel) > 1000
    pixels = [pixel(out, x, y) for x in range(5, 100) for y in range(5, 40)]
    assert any(p[0] < 80 for p in pixels)  # the shade is dark but translucent, not black
    assert all(p[0] > 0 for p in pixels)
    assert any(p[0] > 200 for p in pixels)  # white text
    assert changed(image, out, (150, 100, 300, 300)) == 0
    assert draw_faces(image, celebrities(), labels=False).tobytes() == image.tobytes()


def test_celebrity_legend_says_no_faces() -> None:
    image = gray()
    assert changed(image, draw_faces(image, celebrities()), (0, 0, 60, 30)) > 100


# -- Hangul ---------------------------------------------------------------------------------------


def label_region(text: str, font: fonts.FontLike | None = None) -> bytes:
    out = draw_faces(
        gray(),
        faces(face_json()),
        label=lambda f: text,
        boxes=False,
        landmarks=False,
        font=font,
        font_size=20,
    )
    return out.crop((100, 0, 300, 80)).tobytes()


def test_hangul_names_render_as_distinct_real_glyphs(nanum: Path) -> None:
    font = fonts.load_font(24)
    missing = bytes(font.getmask("\U0010ffff"))
    for ch in "이다희송중기":
        assert bytes(font.getmask(ch)) != missing
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a Hangul font was found: no warning
        first, second = label_region("이다희"), label_region("송중기")
    assert first != second
    assert first != label_region("?")  # not replaced
    with pytest.warns(UserWarning):  # U+FFFF has no glyph anywhere
        assert first != label_region("\uffff\uffff\uffff", font=str(nanum))


def test_without_a_hangul_font_boxes_are_drawn_and_one_warning_is_issued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_hangul_font(monkeypatch)
    assert fonts.find_font() is None
    result = analysis(face_json(lookalike={"value": "이다희", "confidence": 0.61}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = draw_faces(gray(), result, color=RED)
        second = draw_faces(gray(), result, color=RED)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1
    assert 'pip install "clova-face[fonts]"' in messages[0] and fonts.ENV_VAR in messages[0]
    assert first.getpixel((100, 150)) == RED  # boxes still drawn
    assert first.tobytes() == second.tobytes()
    # The name became "?": the same picture as a label written that way.
    question = draw_faces(
        gray(), result, color=RED, label=lambda f: face_label(f).replace("이다희", "?")
    )
    assert first.tobytes() == question.tobytes()


def test_latin_labels_need_no_font_and_do_not_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    no_hangul_font(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = draw_faces(gray(), faces(face_json()), color=RED)
    assert len(tag_rows(out, 100, RED)) > 142 + 10  # box edge + tag


# -- font resolution ------------------------------------------------------------------------------


def test_font_resolution_order(monkeypatch: pytest.MonkeyPatch, nanum: Path) -> None:
    bold = nanum.with_name("NanumGothicBold.ttf")
    light = nanum.with_name("NanumGothicLight.ttf")
    if not (bold.is_file() and light.is_file()):
        pytest.skip("the NanumGothic family is incomplete")
    monkeypatch.setattr(fonts, "_system_candidates", lambda: iter([light]))
    monkeypatch.setattr(fonts, "_extra_font", lambda: nanum)
    monkeypatch.setenv(fonts.ENV_VAR, str(bold))

    assert fonts.find_font(str(nanum)) == nanum  # 1. the argument
    assert fonts.find_font() == bold  # 2. the environment
    monkeypatch.delenv(fonts.ENV_VAR)
    fonts.clear_font_cache()
    assert fonts.find_font() == light  # 3. the system
    monkeypatch.setattr(fonts, "_system_candidates", lambda: iter(()))
    fonts.clear_font_cache()
    assert fonts.find_font() == nanum  # 4. the extra
    monkeypatch.setattr(fonts, "_extra_font", lambda: None)
    fonts.clear_font_cache()
    assert fonts.find_font() is None


def test_discovered_fonts_without_hangul_are_skipped(
    monkeypatch: pytest.MonkeyPatch, nanum: Path
) -> None:
    latin = Path(str(ImageFont.truetype("DejaVuSans.ttf", 10).path)) if _has_dejavu() else None
    if latin is None:
        pytest.skip("no Latin-only TrueType font on this system")
    monkeypatch.setattr(fonts, "_system_candidates", lambda: iter([latin, nanum]))
    fonts.clear_font_cache()
    assert fonts.find_font() == nanum
    # Given explicitly, it is used as is, and Hangul in a label becomes "?" with a warning.
    with pytest.warns(UserWarning, match="NCP_CFR_FONT"):
        draw_faces(gray(), faces(face_json()), font=latin, label=lambda f: "이다희")


def _has_dejavu() -> bool:
    try:
        ImageFont.truetype("DejaVuSans.ttf", 10)
    except OSError:
        return False
    return True


def test_discovery_is_cached(monkeypatch: pytest.MonkeyPatch, nanum: Path) -> None:
    calls: list[int] = []

    def candidates() -> Iterator[Path]:
        calls.append(1)
        return iter([nanum])

    monkeypatch.setattr(fonts, "_system_candidates", candidates)
    fonts.clear_font_cache()
    assert fonts.find_font() == fonts.find_font() == nanum
    assert len(calls) == 1


@pytest.mark.parametrize("via_env", [False, True])
def test_a_bad_font_path_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, via_env: bool
) -> None:
    bogus = tmp_path / "not-a-font.ttf"
    bogus.write_bytes(b"hello")
    for path in (bogus, tmp_path / "missing.ttf"):
        if via_env:
            monkeypatch.setenv(fonts.ENV_VAR, str(path))
        with pytest.raises(fonts.FontError, match=r"clova-face\[fonts\]") as info:
            draw_faces(gray(), faces(face_json()), font=None if via_env else path)
        assert isinstance(info.value, ValueError)
        assert (fonts.ENV_VAR if via_env else "font=") in str(info.value)


def test_the_extra_is_found_without_importing_matplotlib() -> None:
    before = set(sys.modules)
    path = fonts._extra_font()
    if path is None:
        pytest.skip("the [fonts] extra is not installed")
    assert path.name == "NanumGothic.ttf"
    imported = set(sys.modules) - before
    assert not any(m.startswith(("koreanize_matplotlib", "matplotlib")) for m in imported)


def test_fc_list_output_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    output = "/f/NotoSansCJK-Bold.ttc: \n/f/NanumGothic.ttf:\n/f/readme.txt:\n\n"
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/fc-list")

    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert args[1:] == [":lang=ko", "file"] and kwargs["timeout"] <= 5
        return subprocess.CompletedProcess(args, 0, stdout=output, stderr="")

    monkeypatch.setattr(subprocess, "run", run)
    assert fonts._fc_list_korean() == [Path("/f/NanumGothic.ttf"), Path("/f/NotoSansCJK-Bold.ttc")]

    def hang(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(args, kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", hang)
    assert fonts._fc_list_korean() == []


def test_load_font_sizes(nanum: Path) -> None:
    loaded = fonts.load_font(30, str(nanum))
    assert isinstance(loaded, ImageFont.FreeTypeFont) and loaded.size == 30
    smaller = fonts.load_font(12, loaded)
    assert isinstance(smaller, ImageFont.FreeTypeFont) and smaller.size == 12
    assert fonts.find_font(loaded) == nanum


# -- crops ----------------------------------------------------------------------------------------


def test_crops_have_the_margin_and_the_right_pixels() -> None:
    image = noisy()
    second = {"x": 10, "y": 10, "width": 50, "height": 40}
    crops = crop_faces(image, faces(face_json(), face_json(second)), margin=0.2)
    assert [c.size for c in crops] == [(168, 196), (70, 56)]
    assert crops[0].tobytes() == image.crop((76, 52, 244, 248)).tobytes()
    bare = crop_faces(image, faces(face_json()), margin=0)[0]
    assert bare.tobytes() == image.crop((100, 80, 220, 220)).tobytes()


def test_crops_are_clipped_at_the_border_and_none_is_skipped() -> None:
    partly = {"x": -30, "y": -20, "width": 100, "height": 100}
    corner = {"x": 250, "y": 260, "width": 100, "height": 100}
    outside = {"x": 400, "y": 400, "width": 50, "height": 50}
    result = faces(face_json(partly), face_json(outside), face_json(corner))
    crops = crop_faces(noisy(), result, margin=0)
    assert [c.size for c in crops] == [(70, 80), (0, 0), (50, 40)]


def test_square_crops() -> None:
    crop = crop_faces(noisy(), faces(face_json()), margin=0, square=True)[0]
    assert crop.size == (140, 140)
    crop = crop_faces(noisy(), faces(face_json()), margin=0.5, square=True)[0]
    assert crop.size == (280, 280)  # 140 * 2 around (160, 150), clipped to the image: 20..300
    crop = crop_faces(noisy(), faces(face_json()), margin=0.25, square=True)[0]
    assert crop.size == (210, 210)


def test_crops_and_blur_need_positions() -> None:
    with pytest.raises(TypeError, match="positions"):
        crop_faces(gray(), celebrities(("송중기", 0.9)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="positions"):
        blur_faces(gray(), celebrities(("송중기", 0.9)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="margin"):
        crop_faces(gray(), faces(face_json()), margin=-0.1)


# -- blur -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["gaussian", "pixelate"])
@pytest.mark.parametrize("shape", ["rect", "ellipse"])
def test_blur_changes_only_the_faces(method: str, shape: str) -> None:
    image = noisy()
    partly = {"x": 250, "y": -30, "width": 80, "height": 100}
    result = faces(face_json(), face_json(partly))
    out = blur_faces(image, result, method=method, shape=shape)  # type: ignore[arg-type]
    grown = [(88, 66, 232, 234), (242, 0, 300, 80)]  # margin 0.1, clipped
    assert same_outside(image, out, grown)
    inner = (130, 110, 190, 190)  # well inside the first face (and its ellipse)
    assert changed(image, out, inner) > 0.9 * 60 * 80
    assert changed(image, out, (260, 0, 300, 40)) > 0.9 * 40 * 40
    if shape == "ellipse":
        assert out.getpixel((89, 67)) == image.getpixel((89, 67))  # the box's corner
    else:
        assert out.getpixel((89, 67)) != image.getpixel((89, 67))


def test_blur_strength_and_margin() -> None:
    image = noisy()
    weak = blur_faces(image, faces(face_json()), strength=1, margin=0)
    strong = blur_faces(image, faces(face_json()), margin=0)
    inner = image.crop((110, 90, 210, 210))

    def spread(im: Image.Image) -> float:
        return float(ImageStat.Stat(im.crop((110, 90, 210, 210)).convert("L")).var[0])

    assert spread(strong) < spread(weak) < spread(image)
    assert inner.tobytes() != weak.crop((110, 90, 210, 210)).tobytes()
    assert same_outside(image, strong, [(100, 80, 220, 220)])
    blocks = blur_faces(image, faces(face_json()), method="pixelate", strength=20, margin=0)
    assert blocks.getpixel((100, 80)) == blocks.getpixel((119, 99))  # one 20 px block
    with pytest.raises(ValueError, match="method"):
        blur_faces(image, faces(face_json()), method="swirl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strength"):
        blur_faces(image, faces(face_json()), strength=0)


# -- inputs ---------------------------------------------------------------------------------------


def test_the_input_image_is_never_modified() -> None:
    image = noisy()
    before = image.tobytes()
    result = analysis(face_json(lookalike={"value": "이다희", "confidence": 0.61}))
    outputs = [
        draw_faces(image, result),
        blur_faces(image, result, method="pixelate"),
        *crop_faces(image, result),
    ]
    assert image.tobytes() == before
    assert all(out is not image for out in outputs)


def test_paths_and_bytes_are_loaded_like_the_client_does(tmp_path: Path) -> None:
    path = tmp_path / "face.png"
    noisy().save(path)
    out = draw_faces(path, faces(face_json()), color=RED)
    assert out.getpixel((100, 150)) == RED
    assert draw_faces(path.read_bytes(), faces(face_json())).size == (300, 300)
    with pytest.raises(ImageError):
        draw_faces(b"not an image", faces(face_json()))


def test_bgr_arrays() -> None:
    np = pytest.importorskip("numpy")
    array = np.zeros((300, 300, 3), dtype=np.uint8)
    array[..., 0] = 255  # blue, in OpenCV's order
    out = draw_faces(array, faces(face_json()), channel_order="bgr", labels=False)
    assert out.getpixel((5, 5)) == (0, 0, 255)
    assert array[..., 1:].max() == 0 and array[..., 0].min() == 255  # untouched


def test_a_result_for_another_image_size_warns() -> None:
    with pytest.warns(UserWarning, match="misplaced"):
        draw_faces(gray((200, 200)), faces(face_json()))


def test_emulator_placeholders_are_left_out_of_labels() -> None:
    from ncp_cfr.draw import face_label
    from ncp_cfr.models import Face
    from ncp_cfr.testing import make_face

    face = Face.model_validate(make_face(10, 10, 80, 80, pose="left_face"))
    assert face.gender is not None and face.gender.value == "unknown"
    assert face_label(face) == "left face"
    named = Face.model_validate(make_face(10, 10, 80, 80, gender="female", age="24~28"))
    assert face_label(named) == "female 24~28"
