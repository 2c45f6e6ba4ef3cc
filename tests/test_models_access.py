"""Results read like the service's JSON, box helpers, ranking, request ids, and NOT_GIVEN.

Much code around CFR (blog posts, notebooks, older wrappers) indexes the raw JSON:
``res["faces"][0]["roi"]["x"]``. The models answer the same keys, so such code runs unchanged.
"""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from PIL import Image

import ncp_cfr
from ncp_cfr import (
    NOT_GIVEN,
    CelebrityResult,
    EmotionValue,
    FaceResult,
    GenderValue,
    NotGiven,
    PoseValue,
    Roi,
    ServerError,
)
from ncp_cfr.protocol import Endpoint, parse_result
from ncp_cfr.testing import Emulator, make_celebrity, make_face

#: An answer as the service sends it, plus fields a newer service version might add.
ANSWER: dict[str, Any] = {
    "info": {"size": {"width": 640, "height": 480}, "faceCount": 2, "modelVersion": "v3"},
    "faces": [
        {
            "roi": {"x": 235, "y": 227, "width": 126, "height": 130},
            "landmark": {
                "leftEye": {"x": 270, "y": 270},
                "rightEye": {"x": 320, "y": 268},
                "nose": {"x": 296, "y": 300},
                "leftMouth": {"x": 275, "y": 330},
                "rightMouth": {"x": 318, "y": 329},
            },
            "gender": {"value": "female", "confidence": 0.91},
            "age": {"value": "22~26", "confidence": 0.74},
            "emotion": {"value": "smile", "confidence": 0.46},
            "pose": {"value": "frontal_face", "confidence": 0.93},
            "mask": {"value": "none", "confidence": 0.99},
        },
        {
            "roi": {"x": 20, "y": 30, "width": 60, "height": 60},
            "landmark": None,
            "gender": {"value": "nonbinary", "confidence": 0.4},
            "age": {"value": "30~34", "confidence": 0.5},
            "emotion": {"value": "neutral", "confidence": 0.7},
            "pose": {"value": "left_face", "confidence": 0.8},
        },
    ],
    "requestedAt": "2026-01-01T00:00:00Z",
}


@pytest.fixture
def res() -> FaceResult:
    result = parse_result(Endpoint.FACE, 200, {}, json.dumps(ANSWER).encode())
    assert isinstance(result, FaceResult)
    return result


# -- dict-style access ----------------------------------------------------------------------------


def test_the_apis_keys_index_the_same_values_as_the_attributes(res: FaceResult) -> None:
    assert res["faces"][0]["roi"]["x"] == 235 == res.faces[0].roi.x
    assert res["info"]["faceCount"] == 2
    assert res["info"]["size"]["width"] == 640
    assert res["faces"][0]["landmark"]["leftEye"]["y"] == 270
    assert res["faces"][0]["age"]["value"] == "22~26"
    assert res["faces"][0]["gender"]["confidence"] == pytest.approx(0.91)
    assert len(res["faces"]) == 2


def test_snake_case_names_index_too(res: FaceResult) -> None:
    assert res["info"]["face_count"] == res["info"]["faceCount"] == 2
    assert res["faces"][0]["landmark"]["left_eye"] is res["faces"][0]["landmark"]["leftEye"]


def test_fields_the_service_adds_are_reachable_by_their_keys(res: FaceResult) -> None:
    assert res["requestedAt"] == "2026-01-01T00:00:00Z"
    assert res["info"]["modelVersion"] == "v3"
    assert res["faces"][0]["mask"] == {"value": "none", "confidence": 0.99}
    assert "mask" in res["faces"][0] and "mask" not in res["faces"][1]


def test_get_and_in_work_as_on_a_dict(res: FaceResult) -> None:
    face = res["faces"][0]
    assert face.get("roi") is face.roi
    assert face.get("hat") is None
    assert face.get("hat", "no hat") == "no hat"
    assert res["faces"][1].get("mask", {}).get("value", "unknown") == "unknown"
    assert "roi" in face and "faceCount" in res["info"] and "face_count" in res["info"]
    assert "hat" not in face
    assert 0 not in face  # only strings are keys


@pytest.mark.parametrize("key", ["hat", "Roi", "ROI", ""])
def test_a_missing_key_raises_key_error(res: FaceResult, key: str) -> None:
    with pytest.raises(KeyError):
        res["faces"][0][key]


def test_a_missing_nested_key_raises_key_error(res: FaceResult) -> None:
    with pytest.raises(KeyError, match="z"):
        res["faces"][0]["roi"]["z"]


def test_a_null_landmark_reads_as_none(res: FaceResult) -> None:
    face = res["faces"][1]
    assert face["landmark"] is None and face.landmark is None
    assert "landmark" in face  # the service sent the key, with null


def test_enum_values_equal_their_strings(res: FaceResult) -> None:
    face = res["faces"][0]
    known: list[str] = [GenderValue.FEMALE, EmotionValue.SMILE, PoseValue.FRONTAL_FACE]
    assert known == ["female", "smile", "frontal_face"]
    assert face["gender"]["value"] == "female" and face["gender"]["value"] is GenderValue.FEMALE
    assert face["emotion"]["value"] == "smile" and face.emotion is not None
    assert face.emotion.value is EmotionValue.SMILE
    assert face["pose"]["value"] == "frontal_face"
    assert str(face["gender"]["value"]) == "female" and f"{face['gender']['value']}" == "female"
    assert {"female": "F", "male": "M"}[face["gender"]["value"]] == "F"  # hashes as its string
    # A value the enum does not know stays the plain string it was.
    assert res["faces"][1]["gender"]["value"] == "nonbinary"
    assert type(res["faces"][1]["gender"]["value"]) is str


def blog_post_loop(res: Any) -> list[str]:
    """Code as blog posts write it against ``response.json()``: it must run on results unchanged."""
    lines = [f"{res['info']['faceCount']} face(s) in a {res['info']['size']['width']} px image"]
    for face in res["faces"]:
        roi = face["roi"]
        x, y, w, h = roi["x"], roi["y"], roi["width"], roi["height"]
        gender = face["gender"]["value"]
        age = face["age"]["value"]
        who = "man" if gender == "male" else "woman" if gender == "female" else gender
        confidence = face["gender"]["confidence"] * 100
        low, high = (int(part) for part in age.split("~"))
        lines.append(f"{who} ({confidence:.0f}%), {low}-{high}, box ({x}, {y}, {w}, {h})")
    return lines


def test_raw_json_code_runs_unchanged_on_a_result_from_the_emulator(emu: Emulator) -> None:
    emu.reply(
        "face",
        faces=[
            make_face(40, 60, 100, 100, gender="female", age="24~28", confidence=0.9),
            make_face(240, 60, 100, 100, gender="male", age="30~34", confidence=0.8),
        ],
    )
    with emu.client(max_retries=0) as client:
        res = client.detect_faces(Image.new("RGB", (400, 300), (128, 128, 128)))
    expected = [
        "2 face(s) in a 400 px image",
        "woman (90%), 24-28, box (40, 60, 100, 100)",
        "man (80%), 30-34, box (240, 60, 100, 100)",
    ]
    assert blog_post_loop(res) == expected
    assert res.raw is not None and blog_post_loop(res.raw) == expected  # the JSON itself agrees


def test_dict_style_coordinates_are_in_the_callers_pixels(emu: Emulator) -> None:
    # The image is sent at half size: the service's numbers are the upload's, the keys read the
    # caller's, as the attributes do.
    emu.reply("face", faces=[make_face(20, 30, 50, 50, gender="female", age="24~28")])
    with emu.client(max_retries=0, max_side=400) as client:
        res = client.detect_faces(Image.new("RGB", (800, 600), (128, 128, 128)))
    assert blog_post_loop(res)[1] == "woman (90%), 24-28, box (40, 60, 100, 100)"
    assert res["info"]["size"]["width"] == 800
    assert res.raw is not None and res.raw["faces"][0]["roi"]["x"] == 20


# -- Roi helpers ----------------------------------------------------------------------------------


def test_expanded_grows_by_the_margin_on_each_side() -> None:
    roi = Roi(x=10, y=20, width=100, height=50)
    assert roi.expanded() == (10, 20, 110, 70)
    assert roi.expanded(0.1) == pytest.approx((0, 15, 120, 75))
    assert roi.expanded(0.5) == pytest.approx((-40, -5, 160, 95))  # not clipped


def test_expanded_square_is_the_smallest_square_on_the_same_centre() -> None:
    roi = Roi(x=10, y=20, width=100, height=50)
    assert roi.expanded(square=True) == pytest.approx((10, -5, 110, 95))
    assert roi.expanded(0.1, square=True) == pytest.approx((0, -15, 120, 105))
    tall = Roi(x=0, y=0, width=20, height=80)
    assert tall.expanded(square=True) == pytest.approx((-30, 0, 50, 80))


def test_crop_box_grows_by_the_margin_and_clips_to_the_image() -> None:
    assert Roi(x=100, y=100, width=50, height=40).crop_box((400, 300), 0.2) == (90, 92, 160, 148)
    assert Roi(x=-10, y=280, width=50, height=40).crop_box((400, 300), 0.5) == (0, 260, 65, 300)


def test_crop_box_rounds_outwards_to_whole_pixels() -> None:
    # 1.3 px of margin (8.7 .. 24.3): the box keeps all of it rather than cutting into the face.
    assert Roi(x=10, y=10, width=13, height=13).crop_box((100, 100), 0.1) == (8, 8, 25, 25)


def test_crop_box_square_is_clipped_too() -> None:
    box = Roi(x=10, y=20, width=100, height=50).crop_box((400, 300), square=True)
    assert box == (10, 0, 110, 95)
    assert Image.new("RGB", (400, 300)).crop(box).size == (100, 95)


@pytest.mark.parametrize(
    "roi",
    [
        Roi(x=500, y=10, width=50, height=50),
        Roi(x=10, y=400, width=50, height=50),
        Roi(x=-100, y=-100, width=50, height=50),
    ],
)
def test_crop_box_is_empty_when_the_box_is_outside_the_image(roi: Roi) -> None:
    left, top, right, bottom = roi.crop_box((400, 300), 0.1)
    assert right == left or bottom == top
    assert 0 <= left <= 400 and 0 <= top <= 300 and right <= 400 and bottom <= 300


# -- ranked ---------------------------------------------------------------------------------------


def celebrity_result(*names: tuple[str, float]) -> CelebrityResult:
    faces = [make_celebrity(name, confidence) for name, confidence in names]
    body = {"info": {"size": {"width": 100, "height": 100}, "faceCount": len(faces)}}
    return CelebrityResult.model_validate({**body, "faces": faces})


def test_ranked_puts_the_most_confident_first_and_ties_keep_the_services_order() -> None:
    result = celebrity_result(("A", 0.3), ("B", 0.9), ("C", 0.3), ("D", 0.5))
    assert [c.value for c in result.ranked()] == ["B", "D", "A", "C"]
    swapped = celebrity_result(("C", 0.3), ("B", 0.9), ("A", 0.3))
    assert [c.value for c in swapped.ranked()] == ["B", "C", "A"]
    assert result.names(min_confidence=0.5) == ["B", "D"]
    assert [f.celebrity.value for f in result.faces] == ["A", "B", "C", "D"]  # left as sent
    assert celebrity_result().ranked() == []


# -- request ids ----------------------------------------------------------------------------------


def test_results_carry_the_request_id_the_emulator_answered_with(emu: Emulator) -> None:
    image = Image.new("RGB", (200, 160), (128, 128, 128))
    with emu.client(max_retries=0) as client:
        faces = client.detect_faces(image)
        names = client.recognize_celebrities(image)
    assert (faces.request_id, names.request_id) == ("emu-00000001", "emu-00000002")
    assert [r.request_id for r in emu.requests] == ["emu-00000001", "emu-00000002"]


def test_the_request_id_is_read_from_the_x_ncp_trace_id_header(emu: Emulator) -> None:
    emu.reply("face", faces=[], headers={"X-NCP-TRACE-ID": "a1b2c3-trace"})
    with emu.client(max_retries=0) as client:
        res = client.detect_faces(Image.new("RGB", (200, 160)))
    assert res.request_id == "a1b2c3-trace"
    assert parse_result(Endpoint.FACE, 200, {}, json.dumps(ANSWER).encode()).request_id is None


def test_an_analysis_carries_the_face_calls_request_id(emu: Emulator) -> None:
    emu.reply("face", faces=[make_face(40, 60, 100, 100)])
    with emu.client(max_retries=0) as client:
        analysis = client.analyze(Image.new("RGB", (400, 300), (128, 128, 128)))
    assert emu.calls("celebrity") == 1  # the crop call came second
    assert analysis.request_id == "emu-00000001"


def test_an_error_carries_the_request_id_of_its_answer(emu: Emulator) -> None:
    emu.inject("ER21")
    with emu.client(max_retries=0) as client, pytest.raises(ServerError) as caught:
        client.detect_faces(Image.new("RGB", (200, 160)))
    assert caught.value.request_id == "emu-00000001"
    assert "[request id emu-00000001]" in str(caught.value)


def test_after_retries_ids_are_those_of_the_last_attempt(emu: Emulator, fake_clock: Any) -> None:
    emu.inject("ER21", times=2)
    with emu.client(max_retries=1) as client:
        with pytest.raises(ServerError) as caught:
            client.detect_faces(Image.new("RGB", (200, 160)))
        assert caught.value.request_id == "emu-00000002"
        assert client.detect_faces(Image.new("RGB", (200, 160))).request_id == "emu-00000003"


# -- NOT_GIVEN and with_options -------------------------------------------------------------------


def test_not_given_is_a_falsy_singleton_named_in_its_repr() -> None:
    assert repr(NOT_GIVEN) == "NOT_GIVEN" and str(NOT_GIVEN) == "NOT_GIVEN"
    assert not NOT_GIVEN and bool(NOT_GIVEN) is False
    assert NOT_GIVEN is not None
    assert NotGiven() is NOT_GIVEN
    assert ncp_cfr.NOT_GIVEN is NOT_GIVEN and isinstance(NOT_GIVEN, ncp_cfr.NotGiven)


def test_not_given_stays_the_singleton_after_copy_and_pickle() -> None:
    assert copy.copy(NOT_GIVEN) is NOT_GIVEN
    assert copy.deepcopy({"timeout": NOT_GIVEN})["timeout"] is NOT_GIVEN
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(NOT_GIVEN, protocol)) is NOT_GIVEN
    assert pickle.loads(pickle.dumps([NOT_GIVEN, None]))[0] is NOT_GIVEN


def upload_width(client: ncp_cfr.Client) -> int:
    res = client.detect_faces(Image.new("RGB", (400, 300), (128, 128, 128)))
    assert res.upload is not None
    return res.upload.width


def test_with_options_keeps_what_is_not_given(emu: Emulator) -> None:
    with emu.client(max_retries=0, timeout=7, max_side=100) as client:
        changed = client.with_options(max_retries=2)
        assert (changed.max_retries, changed.timeout, changed.base_url) == (
            2,
            7,
            client.base_url,
        )
        assert upload_width(changed) == 100  # max_side kept
        assert client.max_retries == 0  # the original is unchanged
        explicit = client.with_options(timeout=NOT_GIVEN, max_side=NOT_GIVEN)
        assert (explicit.timeout, upload_width(explicit)) == (7, 100)


def test_with_options_max_side_none_is_a_value_no_limit(emu: Emulator) -> None:
    with emu.client(max_retries=0, max_side=100) as client:
        assert upload_width(client.with_options(max_side=None)) == 400  # the image's own size
        assert upload_width(client) == 100
