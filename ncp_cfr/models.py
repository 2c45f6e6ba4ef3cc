"""Pydantic models of what the CFR service answers.

Attributes are snake_case; the API's own camelCase keys are their aliases, so
``result.model_dump(by_alias=True, mode="json")`` gives back the service's JSON shape.

Everything is forward compatible: unknown fields are kept (and dumped again), enum-like values
(gender, emotion, pose) are *open*: a known value parses to its enum member (which is also a
``str``, so ``face.gender.value == "female"`` holds) and an unknown one stays a plain string.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "Age",
    "Analysis",
    "AnalyzedFace",
    "Celebrity",
    "CelebrityFace",
    "CelebrityResult",
    "Emotion",
    "EmotionValue",
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
    )


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

    def _repr_html_(self) -> str:
        from ncp_cfr import display  # lazy: notebooks only

        return display.face_html(self)


class Celebrity(Prediction):
    """The most similar celebrity's name (often Hangul) and the similarity confidence."""


class CelebrityFace(_Model):
    """One face of a celebrity answer. The service does not say where this face is."""

    celebrity: Celebrity

    def _repr_html_(self) -> str:
        from ncp_cfr import display  # lazy: notebooks only

        return display.face_html(self)


class UploadInfo(BaseModel):
    """What was actually uploaded for a result: not part of the service's JSON."""

    model_config = ConfigDict(frozen=True)

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

    @property
    def raw(self) -> dict[str, Any] | None:
        """The service's JSON exactly as received (coordinates in the upload's pixels), if any."""
        if self._raw is None and self._raw_body is not None:
            # Parsed on first use: most callers never look, and every call would pay for it.
            self._raw = json.loads(self._raw_body)
        return self._raw

    # No __len__ on purpose: a result with no face must still be truthy (`if result:` after a
    # call means "we got an answer"); count faces with len(result.faces).

    def _repr_html_(self) -> str:
        from ncp_cfr import display  # lazy: notebooks only

        return display.result_html(self)  # type: ignore[arg-type]


class FaceResult(_Result):
    """The face endpoint's answer. Coordinates are pixels of the image the caller passed."""

    faces: list[Face] = Field(default_factory=list)


class CelebrityResult(_Result):
    """The celebrity endpoint's answer: one name per detected face, without positions."""

    faces: list[CelebrityFace] = Field(default_factory=list)

    def names(self, min_confidence: float = 0.0) -> list[str]:
        """Names at or above ``min_confidence``, most confident first.

        The service names *somebody* even at confidence 0.01: pick a threshold for your use.
        """
        ranked = sorted(self.faces, key=lambda f: f.celebrity.confidence, reverse=True)
        return [f.celebrity.value for f in ranked if f.celebrity.confidence >= min_confidence]


class AnalyzedFace(Face):
    """A face of [`Analysis`][ncp_cfr.Analysis]: everything [`Face`][ncp_cfr.Face] has, plus its own
    lookalike.

    ``lookalike`` is ``None`` when the face was too small to crop usefully, when the celebrity
    endpoint named nobody above the threshold, or when its call failed (``lookalike_error`` says).
    """

    lookalike: Celebrity | None = None
    lookalike_error: str | None = None


class Analysis(_Result):
    """Faces with attributes and a per-face lookalike, in the caller's pixels (``analyze``)."""

    faces: list[AnalyzedFace] = Field(default_factory=list)


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

    def _repr_html_(self) -> str:
        from ncp_cfr import display  # lazy: notebooks only

        return display.lookalike_html(self)
