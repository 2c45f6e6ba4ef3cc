"""Boxes, landmarks and labels over the photo ([`draw_faces`][ncp_cfr.draw_faces]), and the
celebrity legend.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Literal, TypeGuard, Union, cast

from PIL import Image, ImageColor, ImageDraw, ImageFont

from ncp_cfr import fonts
from ncp_cfr.draw._checks import _check_size
from ncp_cfr.errors import InvalidArgumentError
from ncp_cfr.images import ImageSource, open_image
from ncp_cfr.models import (
    Analysis,
    AnalyzedFace,
    CelebrityResult,
    Face,
    FaceResult,
    Prediction,
    Roi,
)

#: A colour Pillow understands: a name or ``"#rrggbb"`` string, or an ``(r, g, b)`` tuple.
Color = Union[str, tuple[int, int, int]]

#: The default box colours, one per face in turn: saturated hues that stand out on skin, hair and
#: the usual backgrounds, and from each other.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 230, 118),  # green
    (41, 182, 246),  # blue
    (255, 145, 0),  # orange
    (240, 60, 140),  # pink
    (180, 100, 255),  # violet
    (255, 225, 40),  # yellow
    (0, 210, 210),  # teal
    (255, 70, 70),  # red
)

_SEPARATOR = " · "
_MISSING_TEXT = "?"
_FRONTAL = "frontal_face"

_warned_missing_glyphs = False


def draw_faces(
    image: ImageSource,
    result: FaceResult | Analysis | CelebrityResult,
    *,
    boxes: bool = True,
    landmarks: bool = True,
    labels: bool = True,
    color: Color | Sequence[Color] | None = None,
    landmark_color: Color | None = None,
    line_width: int | None = None,
    font: fonts.FontLike | None = None,
    font_size: int | None = None,
    label: Callable[[Face], str] | None = None,
    min_confidence: float = 0.0,
    channel_order: Literal["rgb", "bgr"] = "rgb",
) -> Image.Image:
    """Draw a result over its image: boxes, landmarks and a label per face.

    ```python
    result = client.detect_faces("photo.jpg")
    draw_faces("photo.jpg", result)            # shows itself in a notebook
    draw_faces("photo.jpg", result).save("faces.jpg")
    ```

    For a [`FaceResult`][ncp_cfr.FaceResult] each face gets its box, its five landmarks as dots
    sized to the face (none when the service sent no landmarks) and a label such as
    ``female 24~28 · smile`` (plus the pose when it is not frontal). For an
    [`Analysis`][ncp_cfr.Analysis] the label adds the face's lookalike (``이다희 61%``).
    A [`CelebrityResult`][ncp_cfr.CelebrityResult] has no positions, so its names are listed,
    most confident first, in a panel at the top left.

    Labels sit above their box, or below it when there is no room, and always inside the image.
    Names need a font with Hangul (see [`find_font`][ncp_cfr.fonts.find_font]); without one, a
    warning is issued once per process and the characters the font cannot draw are replaced by
    ``?``.

    Args:
        image: the image the result was computed for: a path, bytes, a binary file, a PIL image
            or an array (see [`ncp_cfr.images.open_image`][ncp_cfr.open_image]). It is not modified.
        result: what [`detect_faces`][ncp_cfr.Client.detect_faces],
            [`analyze`][ncp_cfr.Client.analyze] or
            [`recognize_celebrities`][ncp_cfr.Client.recognize_celebrities] returned.
        boxes: draw the face boxes.
        landmarks: draw the five landmarks.
        labels: draw the labels (and the panel of a celebrity result).
        color: one colour for every face, or a sequence of colours used in turn. The default
            gives each face its own colour from ``ncp_cfr.draw.PALETTE``.
        landmark_color: the fill of the landmark dots; by default the face's colour. The dots
            always get an outline that contrasts with their fill.
        line_width: the box line width in pixels; by default 1/300 of the image's size (the
            square root of its area; at least 2 px), and never heavier than a small face can
            carry.
        font: a font file path or a loaded Pillow font; by default resolved by
            [`ncp_cfr.fonts.find_font`][ncp_cfr.fonts.find_font].
        font_size: the label font size in pixels; by default 2.8% of the image's size
            (at least 12 px), or the size of a loaded ``font``.
        label: a function from a face to its label text (``""`` for none; may contain newlines),
            instead of [`face_label`][ncp_cfr.draw.face_label].
        min_confidence: names (lookalikes, celebrity entries) below this confidence are left
            out. Faces are always drawn: the face endpoint gives no detection confidence.
        channel_order: ``"bgr"`` for OpenCV arrays; ignored for other inputs.

    Returns:
        A new RGB image the size of ``image``.

    Raises:
        ncp_cfr.errors.ImageError: ``image`` cannot be read.
        ncp_cfr.fonts.FontError: ``font`` or ``NCP_CFR_FONT`` is not a readable font file.
        InvalidArgumentError: ``result`` is not a result of this SDK.
    """
    canvas = open_image(image, channel_order=channel_order).convert("RGB")
    if not isinstance(result, (FaceResult, Analysis, CelebrityResult)):
        raise InvalidArgumentError(
            f"draw_faces expects a FaceResult, Analysis or CelebrityResult, got {result!r}"
        )
    text_font = None
    if labels:  # only then: a broken NCP_CFR_FONT must not stop a boxes-only drawing
        size = font_size if font_size is not None else _loaded_size(font)
        text_font = fonts.load_font(size or _auto_font_size(canvas.size), font)
    missing_glyphs = False

    if isinstance(result, CelebrityResult):
        if text_font is not None:
            missing_glyphs = _draw_legend(canvas, result, text_font, min_confidence)
    else:
        _check_size(result, canvas)
        draw = ImageDraw.Draw(canvas)
        colors = _face_colors(color, len(result.faces))
        width = line_width if line_width is not None else _auto_line_width(canvas.size)
        strokes = [
            width if line_width is not None else _face_line_width(width, face.roi)
            for face in result.faces
        ]
        for face, face_color, stroke in zip(result.faces, colors, strokes, strict=True):
            if boxes:
                _draw_box(draw, face.roi, face_color, stroke)
            if landmarks and face.landmark is not None:
                _draw_landmarks(draw, face, landmark_color or face_color)
        if text_font is not None:
            # Labels last, so no box or dot of a neighbouring face is drawn over one.
            for face, face_color, stroke in zip(result.faces, colors, strokes, strict=True):
                text = label(face) if label is not None else face_label(face, min_confidence)
                if text:
                    missing_glyphs |= _draw_label(
                        draw, canvas.size, face.roi, text, text_font, face_color, stroke
                    )
    if missing_glyphs:
        _warn_missing_glyphs()
    return canvas


def face_label(face: Face, min_confidence: float = 0.0, *, confidences: bool = False) -> str:
    """The default label of a face, as [`draw_faces`][ncp_cfr.draw_faces] draws it.

    ``"female 24~28 · smile"``, plus the pose when it is not frontal (``· left face``), plus, for
    a face of an [`Analysis`][ncp_cfr.Analysis], a second line with its lookalike
    (``"이다희 61%"``) when its confidence is at least ``min_confidence``.

    Args:
        face: a face of a result.
        min_confidence: the lowest lookalike confidence shown.
        confidences: append each attribute's confidence (``female 99%``): pass
            ``label=lambda f: face_label(f, confidences=True)`` to
            [`draw_faces`][ncp_cfr.draw_faces].

    Returns:
        The label text, possibly with a newline; ``""`` when the face has nothing to say.
    """

    def known(prediction: Prediction | None) -> Prediction | None:
        # A prediction at confidence 0 is no estimate at all, whatever its value says.
        return prediction if prediction is not None and prediction.confidence > 0 else None

    gender, age = known(face.gender), known(face.age)
    parts: list[str] = []
    for name, prediction in (
        ("gender", gender),
        ("age", age),
        ("emotion", known(face.emotion)),
        ("pose", known(face.pose)),
    ):
        if prediction is None:
            continue
        value = str(prediction.value)
        if name == "pose":
            if value == _FRONTAL:
                continue
            value = value.replace("_", " ")
        parts.append(f"{value} {prediction.confidence:.0%}" if confidences else value)
    if not confidences and gender is not None and age is not None:
        # "female 24~28" reads as one phrase; the separator would split it.
        parts[:2] = [f"{parts[0]} {parts[1]}"]
    lines = [_SEPARATOR.join(parts)] if parts else []
    lookalike = face.lookalike if isinstance(face, AnalyzedFace) else None
    if lookalike is not None and lookalike.confidence >= min_confidence:
        lines.append(f"{lookalike.value} {lookalike.confidence:.0%}")
    return "\n".join(lines)


def _scale(size: tuple[int, int]) -> float:
    # The side of a square of the same area: a panorama gets the sizes its height can carry,
    # not those of its long side.
    return math.sqrt(size[0] * size[1])


def _auto_line_width(size: tuple[int, int]) -> int:
    return max(2, round(_scale(size) / 300))


def _face_line_width(width: int, roi: Roi) -> int:
    # A 12 px line suits a 24 MP photo but would bury a 60 px face in it.
    return max(1, min(width, max(2, min(roi.width, roi.height) // 16)))


def _auto_font_size(size: tuple[int, int]) -> int:
    return max(12, round(_scale(size) * 0.028))


def _loaded_size(font: fonts.FontLike | None) -> int | None:
    return int(font.size) if isinstance(font, ImageFont.FreeTypeFont) else None


def _marker_radius(roi: Roi) -> int:
    return max(2, round(0.03 * roi.width))


def _rgb(color: Color) -> tuple[int, int, int]:
    if isinstance(color, str):
        r, g, b = ImageColor.getrgb(color)[:3]
        return (r, g, b)
    r, g, b = color[:3]
    return (int(r), int(g), int(b))


def _face_colors(color: Color | Sequence[Color] | None, count: int) -> list[tuple[int, int, int]]:
    if color is None:
        palette = list(PALETTE)
    elif _is_one_color(color):
        palette = [_rgb(color)]
    else:
        palette = [_rgb(c) for c in cast("Sequence[Color]", color)]
        if not palette:
            raise InvalidArgumentError("color must not be an empty sequence")
    return [palette[i % len(palette)] for i in range(count)]


def _is_one_color(color: Color | Sequence[Color]) -> TypeGuard[Color]:
    # An (r, g, b) tuple is itself a sequence: tell it apart from a sequence of colours.
    return isinstance(color, str) or (
        isinstance(color, tuple) and all(isinstance(c, int) for c in color)
    )


def _contrast(color: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = color
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 128 else (255, 255, 255)


# -- drawing ------------------------------------------------------------------------------------


def _draw_box(draw: ImageDraw.ImageDraw, roi: Roi, color: tuple[int, int, int], width: int) -> None:
    # Centre the stroke on the box edge, so the roi's own edge pixels are always painted.
    half = width // 2
    outer = (roi.x - half, roi.y - half, roi.right - 1 + half, roi.bottom - 1 + half)
    draw.rectangle(outer, outline=color, width=width)


def _draw_landmarks(draw: ImageDraw.ImageDraw, face: Face, fill: Color) -> None:
    assert face.landmark is not None
    radius = _marker_radius(face.roi)
    fill_rgb = _rgb(fill)
    ring = max(1, round(radius / 3))
    for point in face.landmark.points().values():
        draw.ellipse(
            (point.x - radius, point.y - radius, point.x + radius, point.y + radius),
            fill=fill_rgb,
            outline=_contrast(fill_rgb),
            width=ring,
        )


def _draw_label(
    draw: ImageDraw.ImageDraw,
    image_size: tuple[int, int],
    roi: Roi,
    text: str,
    font: fonts.LoadedFont,
    color: tuple[int, int, int],
    line_width: int,
) -> bool:
    """Draw ``text`` on a ``color`` tag at the box; True if some characters had no glyph."""
    text, missing = _drawable(text, font)
    spacing = max(2, round(_font_px(font) * 0.2))
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, spacing=spacing)
    pad = max(2, round(_font_px(font) * 0.25))
    tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
    width, height = image_size
    half = line_width // 2

    above = roi.y - half - tag_h
    below = roi.bottom + half
    if above >= 0:
        y = above
    elif below + tag_h <= height:
        y = below
    else:  # a face filling the image: the tag goes inside, over the top of the box
        y = roi.y - half
    y = max(0, min(y, height - tag_h))
    x = max(0, min(roi.x - half, width - tag_w))

    draw.rectangle((x, y, x + tag_w - 1, y + tag_h - 1), fill=color)
    draw.multiline_text(
        (x + pad - left, y + pad - top), text, font=font, fill=_contrast(color), spacing=spacing
    )
    return missing


def _draw_legend(
    canvas: Image.Image, result: CelebrityResult, font: fonts.LoadedFont, min_confidence: float
) -> bool:
    """A ranked list of names in a translucent panel at the top left; True if glyphs missing."""
    entries = [c for c in result.ranked() if c.confidence >= min_confidence]
    if entries:
        lines = [f"{i}. {c.value} {c.confidence:.0%}" for i, c in enumerate(entries, 1)]
    elif result.faces:
        lines = [f"no name at {min_confidence:.0%} or more"]
    else:
        lines = ["no faces"]
    text, missing = _drawable("\n".join(lines), font)

    px = _font_px(font)
    spacing = max(2, round(px * 0.3))
    margin = pad = max(4, round(px * 0.5))
    probe = ImageDraw.Draw(canvas)
    left, top, right, bottom = probe.multiline_textbbox((0, 0), text, font=font, spacing=spacing)
    panel = (
        margin,
        margin,
        min(canvas.width, margin + right - left + 2 * pad),
        min(canvas.height, margin + bottom - top + 2 * pad),
    )
    # Blend only the panel's region: compositing a whole 24 MP frame would cost far more.
    region = canvas.crop(panel).convert("RGBA")
    shade = Image.new("RGBA", region.size, (0, 0, 0, 170))
    region = Image.alpha_composite(region, shade).convert("RGB")
    ImageDraw.Draw(region).multiline_text(
        (pad - left, pad - top), text, font=font, fill=(255, 255, 255), spacing=spacing
    )
    canvas.paste(region, panel[:2])
    return missing


def _font_px(font: fonts.LoadedFont) -> int:
    size = getattr(font, "size", None)
    return int(size) if isinstance(size, (int, float)) else 11


def _drawable(text: str, font: fonts.LoadedFont) -> tuple[str, bool]:
    """``text`` with every run of characters ``font`` cannot draw replaced by ``?``.

    Drawing them anyway would put identical boxes where names should be, which reads as a
    result rather than as a missing font. The flag says whether anything was replaced.
    """
    out: list[str] = []
    missing = False
    for ch in text:
        if ch.isspace() or fonts.has_glyphs(font, ch):
            out.append(ch)
        elif ch == "·":  # only our own separator: not worth a warning
            out.append("-")
        else:
            missing = True
            if not out or out[-1] != _MISSING_TEXT:
                out.append(_MISSING_TEXT)
    return "".join(out), missing


def _warn_missing_glyphs() -> None:
    global _warned_missing_glyphs
    if _warned_missing_glyphs:
        return
    _warned_missing_glyphs = True
    warnings.warn(
        "ncp_cfr.draw_faces: the label font has no glyphs for some characters (Hangul names?), "
        f"so they were drawn as {_MISSING_TEXT!r}. To draw them, install a Hangul font with "
        f'`pip install "clova-face[fonts]"` or set {fonts.ENV_VAR} to a .ttf/.otf/.ttc file '
        "that has them (or pass font=).",
        UserWarning,
        stacklevel=3,
    )
