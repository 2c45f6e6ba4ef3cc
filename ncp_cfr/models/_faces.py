"""One face as the service describes it: box, landmarks, attributes, celebrity; and the upload
facts the SDK adds.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ncp_cfr import _tables
from ncp_cfr.models._base import EmotionValue, GenderValue, PoseValue, _Model


class Size(_Model):
    """Image size in pixels."""

    width: int
    height: int


class Info(_Model):
    """The ``info`` block of every answer: the image size and how many faces were found."""

    size: Size
    face_count: int = 0


class Point(_Model):
    """A pixel position, origin top-left."""

    x: int
    y: int


class Roi(_Model):
    """A face's bounding box: top-left corner and size. Not clipped to the image."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        """``x + width``."""
        return self.x + self.width

    @property
    def bottom(self) -> int:
        """``y + height``."""
        return self.y + self.height

    @property
    def center(self) -> tuple[float, float]:
        """The centre of the box."""
        return (self.x + self.width / 2, self.y + self.height / 2)

    def expanded(
        self, margin: float = 0.0, *, square: bool = False
    ) -> tuple[float, float, float, float]:
        """The box grown by ``margin`` x its size on each side: ``(left, top, right, bottom)``.

        With ``square``, the smallest square around that box, on the same centre. Not clipped.
        """
        dx, dy = self.width * margin, self.height * margin
        left, top, right, bottom = self.x - dx, self.y - dy, self.right + dx, self.bottom + dy
        if square:
            cx, cy = (left + right) / 2, (top + bottom) / 2
            half = max(right - left, bottom - top) / 2
            left, top, right, bottom = cx - half, cy - half, cx + half, cy + half
        return (left, top, right, bottom)

    def crop_box(
        self, image_size: tuple[int, int], margin: float = 0.0, *, square: bool = False
    ) -> tuple[int, int, int, int]:
        """The [`expanded`][ncp_cfr.models.Roi.expanded] box in whole pixels, clipped to the image.

        Returns ``(left, top, right, bottom)`` as ``PIL.Image.crop`` takes it: empty
        (``right == left`` or ``bottom == top``) when the box lies outside the image.
        """
        x0, y0, x1, y1 = self.expanded(margin, square=square)
        width, height = image_size
        left = min(max(math.floor(x0), 0), width)
        top = min(max(math.floor(y0), 0), height)
        right = min(max(math.ceil(x1), left), width)
        bottom = min(max(math.ceil(y1), top), height)
        return (left, top, right, bottom)


class Landmark(_Model):
    """The five facial landmarks. ``left_eye`` is the eye on the image's left side."""

    left_eye: Point
    right_eye: Point
    nose: Point
    left_mouth: Point
    right_mouth: Point

    def points(self) -> dict[str, Point]:
        """The five points by their snake_case name, in a fixed order."""
        return {
            "left_eye": self.left_eye,
            "right_eye": self.right_eye,
            "nose": self.nose,
            "left_mouth": self.left_mouth,
            "right_mouth": self.right_mouth,
        }


class Prediction(_Model):
    """A value the service estimated, with its confidence (0..1)."""

    value: str
    confidence: float = 0.0


class Gender(Prediction):
    """``male`` / ``female`` (a [`GenderValue`][ncp_cfr.GenderValue]), or an unknown string kept as
    is.
    """

    value: GenderValue | str = Field(union_mode="left_to_right")


class Emotion(Prediction):
    """One of [`EmotionValue`][ncp_cfr.EmotionValue], or an unknown string kept as is."""

    value: EmotionValue | str = Field(union_mode="left_to_right")


class Pose(Prediction):
    """One of [`PoseValue`][ncp_cfr.PoseValue], or an unknown string kept as is."""

    value: PoseValue | str = Field(union_mode="left_to_right")


_AGE_RANGE = re.compile(r"^\s*(\d+)\s*~\s*(\d+)\s*$")


class Age(Prediction):
    """An age window as sent (``"22~26"``), with [`low`][ncp_cfr.models.Age.low] and
    [`high`][ncp_cfr.models.Age.high] parsed from it.
    """

    @property
    def low(self) -> int | None:
        """The window's lower bound, or ``None`` when ``value`` is not of the form ``"A~B"``."""
        match = _AGE_RANGE.match(self.value)
        return int(match.group(1)) if match else None

    @property
    def high(self) -> int | None:
        """The window's upper bound, or ``None`` when ``value`` is not of the form ``"A~B"``."""
        match = _AGE_RANGE.match(self.value)
        return int(match.group(2)) if match else None


class Face(_Model):
    """One face found by the face endpoint.

    ``landmark`` is ``None`` when the service sent ``null`` (small, side-on or partial faces),
    ``{}``, or an incomplete set of points. The attributes are ``None`` only if the service left
    them out, which it is not documented to do.
    """

    roi: Roi
    landmark: Landmark | None = None
    gender: Gender | None = None
    age: Age | None = None
    emotion: Emotion | None = None
    pose: Pose | None = None

    @field_validator("landmark", mode="before")
    @classmethod
    def _incomplete_landmark_is_none(cls, value: Any) -> Any:
        if isinstance(value, dict):
            keys = {"leftEye", "rightEye", "nose", "leftMouth", "rightMouth"}
            snake = {"left_eye", "right_eye", "nose", "left_mouth", "right_mouth"}
            present = {k for k, v in value.items() if isinstance(v, (dict, Point))}
            if not (keys <= present or snake <= present):
                return None
        return value

    _HEADER: ClassVar[tuple[str, ...]] = ("box", "landmarks", "gender", "age", "emotion", "pose")

    def _row(self) -> list[str]:
        """This face as table cells, in the columns of ``_HEADER``."""
        roi = self.roi
        return [
            f"{roi.x},{roi.y} {roi.width}x{roi.height}",
            "yes" if self.landmark is not None else "no",
            *(_cell(p) for p in (self.gender, self.age, self.emotion, self.pose)),
        ]

    def _repr_html_(self) -> str:
        return _tables.html_table("ncp-cfr-face", type(self).__name__, self._HEADER, [self._row()])


def _cell(prediction: Prediction | None) -> str:
    if prediction is None:
        return _tables.NONE
    return f"{prediction.value!s} {_tables.percent(prediction.confidence)}"


class Celebrity(Prediction):
    """The most similar celebrity's name (often Hangul) and the similarity confidence."""


class CelebrityFace(_Model):
    """One face of a celebrity answer. The service does not say where this face is."""

    celebrity: Celebrity

    _HEADER: ClassVar[tuple[str, ...]] = ("name", "confidence")

    def _row(self) -> list[str]:
        """This face as table cells, in the columns of ``_HEADER``."""
        return [self.celebrity.value, _tables.percent(self.celebrity.confidence)]

    def _repr_html_(self) -> str:
        return _tables.html_table("ncp-cfr-face", type(self).__name__, self._HEADER, [self._row()])


class UploadInfo(BaseModel):
    """What was actually uploaded for a result: not part of the service's JSON."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    width: int
    height: int
    bytes: int
    format: str
    scale: float = Field(description="upload width / caller's image width")
    reencoded: bool
    quality: int | None = None
