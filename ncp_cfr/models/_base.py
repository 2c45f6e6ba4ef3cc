"""The base of every model: the API's camelCase keys as aliases, new fields kept, dict-style
access by those keys; and the open enums of the answer's values.
"""

from __future__ import annotations

import functools
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


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


class _OpenEnum(str, Enum):
    """A known value of an open set: equal to its string, and printed as it."""

    def __str__(self) -> str:
        return str(self.value)


class GenderValue(_OpenEnum):
    """Known ``gender.value`` strings. ``child`` is seen in third-party label maps only."""

    MALE = "male"
    FEMALE = "female"
    CHILD = "child"


class EmotionValue(_OpenEnum):
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


class PoseValue(_OpenEnum):
    """Known ``pose.value`` strings."""

    PART_FACE = "part_face"
    FALSE_FACE = "false_face"
    SUNGLASSES = "sunglasses"
    FRONTAL_FACE = "frontal_face"
    LEFT_FACE = "left_face"
    RIGHT_FACE = "right_face"
    ROTATE_FACE = "rotate_face"
