"""The models parse every answer in the contract and stay forward compatible."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ncp_cfr import (
    Analysis,
    CelebrityResult,
    EmotionValue,
    FaceResult,
    GenderValue,
    PoseValue,
)

from .conftest import CONTRACT_FACE

FACE_DOC = {
    "info": {"size": {"width": 900, "height": 1349}, "faceCount": 1},
    "faces": [CONTRACT_FACE],
}
FACE_NULL_LANDMARK = json.loads(
    '{"info":{"size":{"width":264,"height":200},"faceCount":1},"faces":[{"roi":{"x":80,"y":45,'
    '"width":61,"height":61},"landmark":null,"gender":{"value":"female","confidence":0.999912},'
    '"age":{"value":"24~28","confidence":0.856547},"emotion":{"value":"neutral","confidence":'
    '0.999967},"pose":{"value":"right_face","confidence":0.61542}}]}'
)
CELEBRITY_DOC = {
    "info": {"size": {"width": 223, "height": 226}, "faceCount": 2},
    "faces": [
        {"celebrity": {"value": "송중기", "confidence": 0.773768}},
        {"celebrity": {"value": "이연희", "confidence": 0.150873}},
    ],
}


@pytest.mark.parametrize(
    ("model", "doc"),
    [(FaceResult, FACE_DOC), (FaceResult, FACE_NULL_LANDMARK), (CelebrityResult, CELEBRITY_DOC)],
)
def test_contract_examples_round_trip_to_the_same_json(model: type, doc: dict) -> None:
    result = model.model_validate(doc)
    assert result.model_dump(by_alias=True, mode="json") == doc


def test_face_fields_are_snake_case_and_typed() -> None:
    face = FaceResult.model_validate(FACE_DOC).faces[0]
    assert (face.roi.x, face.roi.y, face.roi.width, face.roi.height) == (235, 227, 326, 326)
    assert (face.roi.right, face.roi.bottom) == (561, 553)
    assert face.landmark is not None
    assert (face.landmark.left_eye.x, face.landmark.right_mouth.y) == (311, 429)
    assert face.gender is not None and face.gender.value == "male"
    assert face.gender.value is GenderValue.MALE
    assert face.emotion is not None and face.emotion.value is EmotionValue.SMILE
    assert face.pose is not None and face.pose.value is PoseValue.FRONTAL_FACE
    assert face.age is not None and (face.age.low, face.age.high) == (22, 26)


def test_null_landmark_parses_as_none() -> None:
    face = FaceResult.model_validate(FACE_NULL_LANDMARK).faces[0]
    assert face.landmark is None
    assert face.gender is not None and face.gender.value == "female"


@pytest.mark.parametrize("landmark", [{}, {"leftEye": {"x": 1, "y": 2}}])
def test_empty_or_partial_landmark_is_none(landmark: dict) -> None:
    doc = json.loads(json.dumps(FACE_DOC))
    doc["faces"][0]["landmark"] = landmark
    assert FaceResult.model_validate(doc).faces[0].landmark is None


def test_unknown_enum_values_and_fields_are_kept_and_dumped() -> None:
    doc = json.loads(json.dumps(FACE_DOC))
    face = doc["faces"][0]
    face["gender"]["value"] = "nonbinary"
    face["emotion"]["value"] = "smlie"
    face["pose"]["value"] = "upside_down_face"
    face["mask"] = {"value": "on", "confidence": 0.5}
    doc["info"]["model"] = "v3"
    doc["requestId"] = "abc"
    result = FaceResult.model_validate(doc)
    parsed = result.faces[0]
    assert parsed.gender is not None and parsed.gender.value == "nonbinary"
    assert parsed.emotion is not None and parsed.emotion.value == "smlie"
    assert parsed.pose is not None and parsed.pose.value == "upside_down_face"
    assert result.model_dump(by_alias=True, mode="json") == doc


def test_missing_optional_attributes_parse_as_none() -> None:
    doc = {
        "info": {"size": {"width": 100, "height": 100}},
        "faces": [{"roi": {"x": 1, "y": 2, "width": 3, "height": 4}}],
    }
    result = FaceResult.model_validate(doc)
    assert result.info.face_count == 0
    face = result.faces[0]
    assert face.landmark is None and face.gender is None and face.age is None
    assert face.emotion is None and face.pose is None


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [("19~23", 19, 23), (" 40 ~ 44 ", 40, 44), ("60+", None, None), ("", None, None)],
)
def test_age_bounds(value: str, low: int | None, high: int | None) -> None:
    doc = json.loads(json.dumps(FACE_DOC))
    doc["faces"][0]["age"]["value"] = value
    age = FaceResult.model_validate(doc).faces[0].age
    assert age is not None and (age.low, age.high) == (low, high)
    assert age.value == value


def test_confidence_one_and_integer_codes_parse() -> None:
    doc = json.loads(json.dumps(CELEBRITY_DOC))
    doc["faces"][0]["celebrity"]["confidence"] = 1
    result = CelebrityResult.model_validate(doc)
    assert result.faces[0].celebrity.confidence == 1.0


def test_celebrity_names_rank_and_threshold() -> None:
    result = CelebrityResult.model_validate(CELEBRITY_DOC)
    assert result.names() == ["송중기", "이연희"]
    assert result.names(min_confidence=0.5) == ["송중기"]
    assert len(result.faces) == 2


def test_no_face_answer_is_an_empty_result() -> None:
    result = CelebrityResult.model_validate(
        {"info": {"size": {"width": 10, "height": 10}, "faceCount": 0}, "faces": []}
    )
    assert result.faces == [] and result.info.face_count == 0


@pytest.mark.parametrize("model", [FaceResult, CelebrityResult, Analysis])
def test_a_result_without_faces_is_still_truthy(model: type[Any]) -> None:
    # `if result:` means "an answer came"; an empty answer used to be falsy through __len__.
    result = model.model_validate(
        {"info": {"size": {"width": 10, "height": 10}, "faceCount": 0}, "faces": []}
    )
    assert result
    assert bool(result) is True
    assert len(result.faces) == 0
