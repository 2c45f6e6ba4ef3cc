"""Pydantic models of what the CFR service answers.

Attributes are snake_case; the API's own camelCase keys are their aliases, so
``result.model_dump(by_alias=True, mode="json")`` gives back the service's JSON shape.

Everything is forward compatible: unknown fields are kept (and dumped again), enum-like values
(gender, emotion, pose) are *open*: a known value parses to its enum member (which is also a
``str``, so ``face.gender.value == "female"`` holds) and an unknown one stays a plain string.
"""

from __future__ import annotations

import functools
import json
import math
import re
from enum import Enum
from typing import Any, ClassVar, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator
from pydantic.alias_generators import to_camel

from ncp_cfr import _tables

__all__ = [
    "Age",
    "Analysis",
    "AnalyzedFace",
    "Celebrity",
    "CelebrityFace",
    "CelebrityResult",
    "Emotion",
    "EmotionValue",
    "EndpointResult",
    "Face",
    "FaceResult",
    "Gender",
    "GenderValue",
    "Info",
    "Landmark",
    "Lookalike",
    "LookalikeCandidate",
    "LookalikeScale",
    "Point",
    "Pose",
    "PoseValue",
    "Prediction",
    "Roi",
    "Size",
    "UploadInfo",
]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        # Validators are built on first use, not at import: `import ncp_cfr.models` stays cheap
        # for code that never parses (the CLI's --help, a script that fails early).
        defer_build=True,
    )

    # Code written against the raw JSON (``res["faces"][0]["roi"]["x"]``) keeps working on the
    # models: the API's keys (and the snake_case names) index the same values the attributes
    # hold, coordinates in the caller's pixels. Attributes stay the typed, documented way.

    def __getitem__(self, key: str) -> Any:
        """The value under the API's JSON key (``result["info"]["faceCount"]``), like the raw JSON.

        Raises:
            KeyError: no field of that name, among the API's keys and any new ones it sent.
        """
        name = _keys(type(self)).get(key)
        if name is not None:
            return getattr(self, name)
        extra = self.__pydantic_extra__
        if extra and key in extra:
            return extra[key]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """``self[key]``, or ``default`` when there is no such key (as ``dict.get``)."""
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        # As in the raw JSON: a key the answer had (``null`` included), not every field we model.
        if not isinstance(key, str):
            return False
        name = _keys(type(self)).get(key)
        if name is not None:
            return name in self.model_fields_set
        extra = self.__pydantic_extra__
        return extra is not None and key in extra


@functools.cache
def _keys(cls: type[BaseModel]) -> dict[str, str]:
    """A model's keys (the API's camelCase and the snake_case names) mapped to field names."""
    keys = {name: name for name in cls.model_fields}
    keys.update({f.alias: name for name, f in cls.model_fields.items() if f.alias})
    return keys


class GenderValue(str, Enum):
    """Known ``gender.value`` strings. ``child`` is seen in third-party label maps only."""

    MALE = "male"
    FEMALE = "female"
    CHILD = "child"

    def __str__(self) -> str:
        return self.value


class EmotionValue(str, Enum):
    """Known ``emotion.value`` strings (the reference misspells ``smile`` as ``smlie``)."""

    ANGRY = "angry"
    DISGUST = "disgust"
    FEAR = "fear"
    LAUGH = "laugh"
    NEUTRAL = "neutral"
    SAD = "sad"
    SURPRISE = "surprise"
    SMILE = "smile"
    TALKING = "talking"

    def __str__(self) -> str:
        return self.value


class PoseValue(str, Enum):
    """Known ``pose.value`` strings."""

    PART_FACE = "part_face"
    FALSE_FACE = "false_face"
    SUNGLASSES = "sunglasses"
    FRONTAL_FACE = "frontal_face"
    LEFT_FACE = "left_face"
    RIGHT_FACE = "right_face"
    ROTATE_FACE = "rotate_face"

    def __str__(self) -> str:
        return self.value


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


class _Result(_Model):
    info: Info
    upload: UploadInfo | None = Field(default=None, exclude=True, repr=False)
    _raw: dict[str, Any] | None = PrivateAttr(default=None)
    _raw_body: bytes | None = PrivateAttr(default=None)
    _request_id: str | None = PrivateAttr(default=None)
    #: The class of this result's faces, for the table's columns.
    _FACE: ClassVar[type[Face] | type[CelebrityFace]]

    @property
    def request_id(self) -> str | None:
        """The service's id of the request this answers (from its headers), for support tickets.

        ``None`` when the answer carried none. For an [`Analysis`][ncp_cfr.Analysis], the id of
        the face call.
        """
        return self._request_id

    @property
    def raw(self) -> dict[str, Any] | None:
        """The service's JSON exactly as received (coordinates in the upload's pixels), if any."""
        if self._raw is None and self._raw_body is not None:
            # Parsed on first use: most callers never look, and every call would pay for it.
            self._raw = json.loads(self._raw_body)
        return self._raw

    # No __len__ on purpose: a result with no face must still be truthy (`if result:` after a
    # call means "we got an answer"); count faces with len(result.faces).

    def _table(self) -> tuple[str, list[str], list[list[str]]]:
        """``(caption, header, rows)``: one row per face, numbered, in result order."""
        size, count = self.info.size, len(self.faces)  # type: ignore[attr-defined]
        caption = f"{type(self).__name__}: {count} {'face' if count == 1 else 'faces'} in a "
        caption += f"{size.width}x{size.height} image"
        rows = [[str(i), *face._row()] for i, face in enumerate(self.faces)]  # type: ignore[attr-defined]
        return caption, ["#", *self._FACE._HEADER], rows

    def _repr_html_(self) -> str:
        caption, header, rows = self._table()
        return _tables.html_table("ncp-cfr-result", caption, header, rows, empty="no faces")


class FaceResult(_Result):
    """The face endpoint's answer. Coordinates are pixels of the image the caller passed."""

    faces: list[Face] = Field(default_factory=list)
    _FACE = Face


class CelebrityResult(_Result):
    """The celebrity endpoint's answer: one name per detected face, without positions."""

    faces: list[CelebrityFace] = Field(default_factory=list)
    _FACE = CelebrityFace

    def ranked(self) -> list[Celebrity]:
        """The names of all faces, most confident first (ties keep the service's order)."""
        return sorted((f.celebrity for f in self.faces), key=lambda c: -c.confidence)

    def names(self, min_confidence: float = 0.0) -> list[str]:
        """Names at or above ``min_confidence``, most confident first.

        The service names *somebody* even at confidence 0.01: pick a threshold for your use.
        """
        return [c.value for c in self.ranked() if c.confidence >= min_confidence]


class AnalyzedFace(Face):
    """A face of [`Analysis`][ncp_cfr.Analysis]: everything [`Face`][ncp_cfr.Face] has, plus its own
    lookalike.

    ``lookalike`` is ``None`` when the face was too small to crop usefully, when the celebrity
    endpoint named nobody above the threshold, or when its call failed (``lookalike_error`` says).
    """

    lookalike: Celebrity | None = None
    lookalike_error: str | None = None

    _HEADER = (*Face._HEADER, "lookalike")

    def _row(self) -> list[str]:
        if self.lookalike is not None:
            found = f"{self.lookalike.value} {_tables.percent(self.lookalike.confidence)}"
        else:
            found = f"({self.lookalike_error})" if self.lookalike_error else _tables.NONE
        return [*super()._row(), found]


class Analysis(_Result):
    """Faces with attributes and a per-face lookalike, in the caller's pixels (``analyze``)."""

    faces: list[AnalyzedFace] = Field(default_factory=list)
    _FACE = AnalyzedFace


class LookalikeScale(_Model):
    """What the celebrity endpoint said at one upload size (``find_lookalike``)."""

    side: int = Field(description="the longest side asked for, in pixels")
    width: int = Field(description="the upload's width")
    height: int = Field(description="the upload's height")
    names: list[Celebrity] = Field(default_factory=list)
    """Every name this size returned (one per face it saw), most confident first."""
    top: Celebrity | None = None
    """This size's vote: its most confident name, ``None`` if none (or under the threshold)."""
    error: str | None = None
    """Why this size failed, if it did (it then does not vote)."""
    request_id: str | None = None
    """The service's id of this size's request, when its answer carried one."""


class LookalikeCandidate(_Model):
    """A name some upload sizes voted for, with how sure the service was across them."""

    name: str
    votes: int = Field(description="how many sizes had this as their most confident name")
    mean_confidence: float
    max_confidence: float
    min_confidence: float
    sides: list[int] = Field(default_factory=list)
    """The sizes (longest side, px) that voted for it, ascending."""


class Lookalike(_Model):
    """The celebrity endpoint asked at several upload sizes, and the names ranked by votes.

    Each size that answered votes for its most confident name (none if that name is under the
    call's `min_confidence`). `candidates` rank every name voted for by votes, then mean
    confidence: that ranking is always there, however weak.

    **A match.** The leading candidate is the match, `best`, when both hold:

    - its mean confidence over the sizes that voted for it is at least `match_confidence`
      (default 0.3: the service names somebody for every face, down to 0.01);
    - it won more sizes than any other name (a tie for most votes is no match).

    Otherwise `best` is `None` and the answer is "no clear match"; `candidates[0]` is still
    the leading name, for a caller who wants it anyway. (Version 0.1.0 made `best` the first
    candidate always, a 1 % guess included; `best is None` already meant "nobody", so code that
    checks for `None` keeps working and now also skips guesses.)

    **A stable vote.** `stable` is true when there is a match and it won more than half of
    the sizes that answered (a size that answered with no face, or with a name under
    `min_confidence`, counts as answered). A match that won only two sizes of eight is the best
    guess, not a settled answer.
    """

    size: Size = Field(description="the caller's image size")
    best: LookalikeCandidate | None = None
    """The match, or `None` when there is no clear match (see above)."""
    candidates: list[LookalikeCandidate] = Field(default_factory=list)
    stable: bool = False
    match_confidence: float = Field(
        default=0.3, description="the mean confidence a candidate needed to be the match"
    )
    per_scale: list[LookalikeScale] = Field(default_factory=list)

    _HEADER: ClassVar[tuple[str, ...]] = (
        "rank",
        "name",
        "votes",
        "mean",
        "min",
        "max",
        "sizes (px)",
    )

    def _table(self) -> tuple[str, list[str], list[list[str]]]:
        """``(verdict, header, rows)``: one row per candidate, best first."""
        answered = sum(1 for scale in self.per_scale if scale.error is None)
        pct = _tables.percent
        rows = [
            [
                str(rank),
                c.name,
                f"{c.votes}/{answered}",
                pct(c.mean_confidence),
                pct(c.min_confidence),
                pct(c.max_confidence),
                ",".join(str(side) for side in c.sides),
            ]
            for rank, c in enumerate(self.candidates, start=1)
        ]
        return self._verdict(answered), list(self._HEADER), rows

    def _verdict(self, answered: int) -> str:
        """One line: the match and whether the vote is stable, or why there is no clear match."""
        pct = _tables.percent
        if self.best is not None:
            best = self.best
            stability = "stable" if self.stable else "unstable: it did not win most sizes"
            return (
                f"best: {best.name} ({best.votes} of {answered} sizes, "
                f"mean {pct(best.mean_confidence)}, {stability})"
            )
        if not self.candidates:
            return f"no clear match: no name at any of {answered} sizes"
        leader = self.candidates[0]
        if leader.mean_confidence < self.match_confidence:
            return (
                f"no clear match: the leading name, {leader.name}, averages "
                f"{pct(leader.mean_confidence)} (a match needs {pct(self.match_confidence)})"
            )
        tied = [c.name for c in self.candidates if c.votes == leader.votes]
        return f"no clear match: {', '.join(tied)} tie at {leader.votes} of {answered} sizes each"

    def _repr_html_(self) -> str:
        return _tables.html_table("ncp-cfr-lookalike", *self._table())


#: What one call of either endpoint answers.
EndpointResult = Union[FaceResult, CelebrityResult]
