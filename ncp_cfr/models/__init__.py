"""Pydantic models of what the CFR service answers.

Attributes are snake_case; the API's own camelCase keys are their aliases, so
``result.model_dump(by_alias=True, mode="json")`` gives back the service's JSON shape.

Everything is forward compatible: unknown fields are kept (and dumped again), enum-like values
(gender, emotion, pose) are *open*: a known value parses to its enum member (which is also a
``str``, so ``face.gender.value == "female"`` holds) and an unknown one stays a plain string.
"""

from ncp_cfr.models._base import EmotionValue, GenderValue, PoseValue
from ncp_cfr.models._faces import (
    Age,
    Celebrity,
    CelebrityFace,
    Emotion,
    Face,
    Gender,
    Info,
    Landmark,
    Point,
    Pose,
    Prediction,
    Roi,
    Size,
    UploadInfo,
)

# Not in __all__: the export and the batches read answers back by it; users never need it.
from ncp_cfr.models._results import RESULTS_BY_OPERATION as RESULTS_BY_OPERATION
from ncp_cfr.models._results import (
    Analysis,
    AnalyzedFace,
    CelebrityResult,
    EndpointResult,
    FaceResult,
    Lookalike,
    LookalikeCandidate,
    LookalikeScale,
)

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
