"""The pure pipelines, driven by hand: no HTTP, no threads, every outcome chosen by the test.

Plans prepare the image themselves and receive answers in the *upload's* pixels, as the service
sends them; what they return is in the caller's pixels.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ncp_cfr import (
    Batch,
    BatchItem,
    CelebrityResult,
    CFRError,
    FaceResult,
    ImageError,
    InvalidArgumentError,
    ServerError,
    Transform,
    prepare_image,
)
from ncp_cfr.images import PreparedImage
from ncp_cfr.models import Analysis, Lookalike
from ncp_cfr.pipelines import (
    DEFAULT_MATCH_CONFIDENCE,
    MAX_SCALE,
    Finished,
    Job,
    JobOutcome,
    Pending,
    Plan,
    advance,
    analyze_plan,
    call_plan,
    lookalike_plan,
    resolve_scales,
    to_caller,
)
from ncp_cfr.protocol import Endpoint, parse_result
from ncp_cfr.testing import make_celebrity, make_face

RED = (220, 20, 20)
BLUE = (20, 20, 220)


def two_faces(size: tuple[int, int] = (400, 300)) -> Image.Image:
    """A grey picture with a red "face" at (40, 60) and a blue one at (240, 60), 100 px each."""
    image = Image.new("RGB", size, (128, 128, 128))
    image.paste(RED, (40, 60, 140, 160))
    image.paste(BLUE, (240, 60, 340, 160))
    return image


def dominant(prepared: PreparedImage) -> str:
    with Image.open(io.BytesIO(prepared.data)) as img:
        r, _, b = img.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    return "red" if r > b + 30 else "blue" if b > r + 30 else "grey"


def answer(endpoint: Endpoint, body: dict[str, Any], request_id: str | None = None) -> Any:
    """A 200 answer parsed as the clients parse it (with its request id header, if given)."""
    headers = {"X-NCP-TRACE-ID": request_id} if request_id else {}
    return parse_result(endpoint, 200, headers, json.dumps(body).encode())


def face_result(
    *faces: dict[str, Any], size: tuple[int, int] = (400, 300), request_id: str | None = None
) -> FaceResult:
    """A face answer; ``size`` and the faces are in the upload's pixels, as the service's."""
    body = {"info": {"size": {"width": size[0], "height": size[1]}}, "faces": list(faces)}
    result: FaceResult = answer(Endpoint.FACE, body, request_id)
    return result


def celebrities(*faces: dict[str, Any], request_id: str | None = None) -> CelebrityResult:
    body = {"info": {"size": {"width": 100, "height": 100}, "faceCount": len(faces)}}
    result: CelebrityResult = answer(Endpoint.CELEBRITY, {**body, "faces": faces}, request_id)
    return result


def pending(step: Any) -> list[Job]:
    assert isinstance(step, Pending), step
    return step.jobs


def finished(step: Any) -> Any:
    assert isinstance(step, Finished), step
    return step.value


def start_analysis(
    image: Image.Image, face_request_id: str | None = None, **options: Any
) -> tuple[Plan[Analysis], list[Job]]:
    """Run the plan up to its crop calls, answering the face call with two faces and a tiny one."""
    plan = analyze_plan(image, **options)
    [face_job] = pending(advance(plan, None))
    # The plan uploads the whole image first, prepared as prepare_image would.
    assert face_job == Job(Endpoint.FACE, prepare_image(image))
    found = face_result(
        make_face(40, 60, 100, 100, gender="female"),
        make_face(240, 60, 100, 100, gender="male"),
        make_face(180, 250, 20, 20),  # under min_face: never cropped
        request_id=face_request_id,
    )
    return plan, pending(advance(plan, [found]))


# -- one call: prepared in the first step, answered in the caller's pixels ------------------------


def test_call_plan_returns_the_result_or_raises_the_error() -> None:
    image = two_faces()
    plan = call_plan(Endpoint.FACE, image)
    assert pending(advance(plan, None)) == [Job(Endpoint.FACE, prepare_image(image))]
    result = face_result()
    assert finished(advance(plan, [result])) is result
    failing = call_plan(Endpoint.CELEBRITY, image)
    advance(failing, None)
    with pytest.raises(ImageError):
        advance(failing, [ImageError("bad")])


def test_call_plan_uploads_with_its_options_and_answers_in_the_callers_pixels() -> None:
    plan = call_plan(Endpoint.FACE, two_faces(), max_side=200, max_bytes=100_000)
    [job] = pending(advance(plan, None))
    assert (job.image.width, job.image.height) == (200, 150)
    assert len(job.image.data) <= 100_000
    # The service saw the half-size upload and answers in its pixels.
    result = finished(advance(plan, [face_result(make_face(20, 30, 50, 50), size=(200, 150))]))
    roi = result.faces[0].roi
    assert (roi.x, roi.y, roi.width, roi.height) == (40, 60, 100, 100)
    assert (result.info.size.width, result.info.size.height) == (400, 300)
    assert result.upload is not None and (result.upload.width, result.upload.scale) == (200, 0.5)


def test_call_plan_sends_a_prepared_image_as_it_is() -> None:
    upload = prepare_image(two_faces((800, 600)), max_side=400)
    plan = call_plan(Endpoint.FACE, upload, max_side=100)  # options apply to raw inputs only
    [job] = pending(advance(plan, None))
    assert job.image is upload
    result = finished(advance(plan, [face_result(make_face(20, 30, 50, 50))]))
    assert (result.faces[0].roi.x, result.info.size.width) == (40, 800)


def test_call_plan_reads_an_array_in_the_channel_order_given() -> None:
    np = pytest.importorskip("numpy")
    bgr = np.zeros((100, 100, 3), dtype=np.uint8)
    bgr[...] = (20, 20, 220)  # red, in OpenCV's order
    [job] = pending(advance(call_plan(Endpoint.FACE, bgr, channel_order="bgr"), None))
    assert dominant(job.image) == "red"


def test_a_plan_reads_its_image_only_when_first_advanced(tmp_path: Path) -> None:
    path = tmp_path / "later.png"
    plan = call_plan(Endpoint.FACE, path)  # the file does not exist yet: building reads nothing
    two_faces().save(path)
    [job] = pending(advance(plan, None))
    assert (job.image.source_width, job.image.source_height) == (400, 300)


@pytest.mark.parametrize(
    "make_plan",
    [lambda image: call_plan(Endpoint.FACE, image), analyze_plan, lookalike_plan],
    ids=["call", "analyze", "lookalike"],
)
@pytest.mark.parametrize("bad", ["bytes", "missing file"])
def test_a_bad_input_fails_the_first_advance_before_any_job(
    make_plan: Any, bad: str, tmp_path: Path
) -> None:
    source = b"not an image" if bad == "bytes" else tmp_path / "missing.jpg"
    plan = make_plan(source)
    # Raising from advance means the plan never reached its first yield: no job was asked for.
    with pytest.raises(ImageError):
        advance(plan, None)


# -- to_caller ------------------------------------------------------------------------------------

#: The upload of an 800x600 image at half size, with 10 px of padding added on its left.
PADDED = PreparedImage(
    data=b"\xff" * 1234,
    content_type="image/jpeg",
    format="JPEG",
    width=410,
    height=300,
    source_width=800,
    source_height=600,
    transform=Transform(0.5, 0.5, offset_x=10.0),
    reencoded=True,
    quality=90,
)
LANDMARK = {
    "leftEye": {"x": 70, "y": 55},
    "rightEye": {"x": 95, "y": 55},
    "nose": {"x": 85, "y": 65},
    "leftMouth": {"x": 75, "y": 78},
    "rightMouth": {"x": 96, "y": 77},
}


def test_to_caller_maps_boxes_and_landmarks_through_the_transform() -> None:
    result = face_result(
        make_face(60, 40, 50, 50, landmark=LANDMARK, gender="female"),
        make_face(10, 0, 20, 30, landmark=None),
        size=(410, 300),
        request_id="trace-1",
    )
    mapped = to_caller(result, PADDED)
    assert mapped is result  # in place
    first, second = mapped.faces
    assert (first.roi.x, first.roi.y, first.roi.width, first.roi.height) == (100, 80, 100, 100)
    assert first.landmark is not None
    points = {name: (p.x, p.y) for name, p in first.landmark.points().items()}
    assert points == {
        "left_eye": (120, 110),
        "right_eye": (170, 110),
        "nose": (150, 130),
        "left_mouth": (130, 156),
        "right_mouth": (172, 154),
    }
    assert (second.roi.x, second.roi.y, second.roi.width, second.roi.height) == (0, 0, 40, 60)
    assert second.landmark is None
    assert first.gender is not None and first.gender.value == "female"  # attributes untouched
    assert (mapped.info.size.width, mapped.info.size.height) == (800, 600)
    assert mapped.upload is not None
    assert mapped.upload.model_dump() == {
        "width": 410,
        "height": 300,
        "bytes": 1234,
        "format": "JPEG",
        "scale": 0.5,
        "reencoded": True,
        "quality": 90,
    }
    assert mapped.request_id == "trace-1"
    # The raw JSON keeps the service's own numbers.
    assert mapped.raw is not None
    assert mapped.raw["faces"][0]["roi"]["x"] == 60
    assert mapped.raw["info"]["size"]["width"] == 410


def test_to_caller_gives_a_celebrity_answer_the_callers_size_and_the_upload() -> None:
    result = to_caller(celebrities(make_celebrity("이다희", 0.6), request_id="trace-2"), PADDED)
    assert (result.info.size.width, result.info.size.height) == (800, 600)
    assert result.upload is not None and result.upload.bytes == 1234
    assert result.names() == ["이다희"] and result.request_id == "trace-2"


# -- analyze --------------------------------------------------------------------------------------


def test_analyze_crops_each_face_and_maps_each_answer_to_its_own_face() -> None:
    plan, jobs = start_analysis(two_faces())
    assert [job.endpoint for job in jobs] == [Endpoint.CELEBRITY] * 2
    assert [dominant(job.image) for job in jobs] == ["red", "blue"]
    analysis = finished(
        advance(
            plan,
            [
                celebrities(make_celebrity("이다희", 0.6)),
                celebrities(make_celebrity("송중기", 0.7)),
            ],
        )
    )
    assert isinstance(analysis, Analysis)
    red, blue, tiny = analysis.faces
    assert red.lookalike is not None and red.lookalike.value == "이다희"
    assert blue.lookalike is not None and blue.lookalike.value == "송중기"
    assert tiny.lookalike is None and tiny.lookalike_error is None
    # The face answer's own facts are kept, in the caller's pixels.
    assert (red.roi.x, red.roi.width) == (40, 100) and red.gender is not None
    assert (analysis.info.size.width, analysis.info.size.height) == (400, 300)


def test_analyze_keeps_the_face_calls_request_id_and_raw_answer() -> None:
    plan, _ = start_analysis(two_faces(), face_request_id="face-trace")
    analysis = finished(
        advance(
            plan,
            [
                celebrities(make_celebrity("이다희", 0.6), request_id="crop-1"),
                celebrities(request_id="crop-2"),
            ],
        )
    )
    assert analysis.request_id == "face-trace"
    assert analysis.raw is not None and len(analysis.raw["faces"]) == 3


def test_crops_keep_a_margin_and_small_crops_are_upscaled_to_the_minimum() -> None:
    image = two_faces()
    _, jobs = start_analysis(image, margin=0.5, min_face=10)
    # 100 px box + 50 px each side = 200 px; x = 40 - 50 is clipped at the left edge, y fits.
    assert (jobs[0].image.source_width, jobs[0].image.source_height) == (190, 200)
    assert len(jobs) == 3  # min_face=10 lets the 20 px face through ...
    assert min(jobs[2].image.width, jobs[2].image.height) >= 50  # ... upscaled to 50 px


def test_the_most_confident_name_of_a_crop_wins_and_no_name_means_no_lookalike() -> None:
    plan, _ = start_analysis(two_faces())
    analysis = finished(
        advance(
            plan,
            [
                celebrities(make_celebrity("옆사람", 0.2), make_celebrity("이다희", 0.8)),
                celebrities(),
            ],
        )
    )
    assert analysis.faces[0].lookalike.value == "이다희"
    assert analysis.faces[1].lookalike is None and analysis.faces[1].lookalike_error is None


def test_min_confidence_drops_weak_names() -> None:
    plan, _ = start_analysis(two_faces(), min_confidence=0.5)
    analysis = finished(
        advance(
            plan,
            [
                celebrities(make_celebrity("이다희", 0.6)),
                celebrities(make_celebrity("송중기", 0.1)),
            ],
        )
    )
    assert analysis.faces[0].lookalike is not None
    assert analysis.faces[1].lookalike is None and analysis.faces[1].lookalike_error is None


def test_a_failed_crop_only_costs_its_own_face() -> None:
    plan, _ = start_analysis(two_faces())
    busy = ServerError("Server is too busy", status_code=400, code="ER22")
    analysis = finished(advance(plan, [celebrities(make_celebrity("이다희", 0.6)), busy]))
    assert analysis.faces[0].lookalike is not None
    assert analysis.faces[1].lookalike is None
    assert analysis.faces[1].lookalike_error is not None
    assert "ER22" in analysis.faces[1].lookalike_error


def test_a_failed_face_call_fails_the_analysis() -> None:
    plan = analyze_plan(two_faces())
    pending(advance(plan, None))
    with pytest.raises(ServerError):
        advance(plan, [ServerError("down", status_code=503)])


def test_no_faces_means_no_crop_calls() -> None:
    plan = analyze_plan(two_faces())
    pending(advance(plan, None))
    assert pending(advance(plan, [face_result()])) == []
    assert finished(advance(plan, [])).faces == []


def test_analyze_on_an_upload_crops_from_it_through_its_transform() -> None:
    # Only a half-size upload is at hand: crops are cut from its pixels, the answer's boxes
    # (upload pixels) reach the caller in the original image's pixels.
    upload = prepare_image(two_faces((800, 600)), max_side=400)
    assert upload.transform == Transform(0.5, 0.5)
    plan = analyze_plan(upload, margin=0.0)
    [face_job] = pending(advance(plan, None))
    assert face_job.image is upload  # sent as it is, not prepared again
    found = face_result(make_face(20, 30, 50, 50), make_face(120, 30, 50, 50), size=(400, 300))
    jobs = pending(advance(plan, [found]))
    assert [dominant(job.image) for job in jobs] == ["red", "blue"]
    assert jobs[0].image.source_width == 50  # 100 caller px on a half-size upload
    analysis = finished(advance(plan, [celebrities(), celebrities()]))
    boxes = [(f.roi.x, f.roi.y, f.roi.width, f.roi.height) for f in analysis.faces]
    assert boxes == [(40, 60, 100, 100), (240, 60, 100, 100)]
    assert (analysis.info.size.width, analysis.info.size.height) == (800, 600)


def test_analyze_reads_a_stream_once_for_both_the_upload_and_the_crops() -> None:
    buffer = io.BytesIO()
    two_faces().save(buffer, "PNG")
    buffer.seek(0)
    plan = analyze_plan(buffer)
    pending(advance(plan, None))
    found = face_result(make_face(40, 60, 100, 100), make_face(240, 60, 100, 100))
    assert [dominant(job.image) for job in pending(advance(plan, [found]))] == ["red", "blue"]


@pytest.mark.parametrize(
    "options", [{"margin": -1}, {"min_face": 0}, {"min_confidence": 2}, {"min_face": 1.5}]
)
def test_analyze_options_are_checked(options: dict[str, Any]) -> None:
    with pytest.raises(CFRError):
        advance(analyze_plan(two_faces(), **options), None)


# -- lookalike consensus --------------------------------------------------------------------------


def test_resolve_scales_caps_merges_and_reads_fractions() -> None:
    assert resolve_scales([320, 480, 640, 2048], 600, 400) == [320, 480, 600]
    assert resolve_scales([0.5, 1.0, 300], 600, 400) == [300, 600]
    assert resolve_scales([320], 30, 20) == [50]  # a tiny image is asked at the minimum once
    for bad in ([], [20], [0], [-1], ["640"], [True]):
        with pytest.raises(CFRError):
            resolve_scales(bad, 600, 400)  # type: ignore[arg-type]


def run_lookalike(sides_to_answers: dict[int, JobOutcome], **options: Any) -> Lookalike:
    image = Image.new("RGB", (1000, 800), (90, 100, 110))
    plan = lookalike_plan(image, scales=list(sides_to_answers), **options)
    jobs = pending(advance(plan, None))
    assert [max(j.image.width, j.image.height) for j in jobs] == list(sides_to_answers)
    result: Lookalike = finished(advance(plan, list(sides_to_answers.values())))
    return result


def test_lookalike_counts_one_vote_per_size_and_ranks_by_votes_then_confidence() -> None:
    found = run_lookalike(
        {
            320: celebrities(make_celebrity("A", 0.9)),
            480: celebrities(make_celebrity("B", 0.3), make_celebrity("A", 0.1)),
            640: celebrities(make_celebrity("B", 0.5)),
            800: celebrities(make_celebrity("C", 0.95)),
            1000: celebrities(make_celebrity("B", 0.4)),
        }
    )
    assert [(c.name, c.votes) for c in found.candidates] == [("B", 3), ("C", 1), ("A", 1)]
    best = found.best
    assert best is not None and best.name == "B" and best.sides == [480, 640, 1000]
    assert best.mean_confidence == pytest.approx(0.4)
    assert (best.min_confidence, best.max_confidence) == (0.3, 0.5)
    assert found.stable  # 3 of 5
    assert [s.top.value if s.top else None for s in found.per_scale] == ["A", "B", "B", "C", "B"]
    assert [n.value for n in found.per_scale[1].names] == ["B", "A"]
    assert (found.size.width, found.size.height) == (1000, 800)


def test_lookalike_keeps_each_sizes_request_id() -> None:
    busy = ServerError("busy", status_code=400, code="ER22", request_id="trace-640")
    found = run_lookalike(
        {
            320: celebrities(make_celebrity("A", 0.5), request_id="trace-320"),
            640: busy,
            800: celebrities(make_celebrity("A", 0.5)),  # an answer without the header
        }
    )
    assert [s.request_id for s in found.per_scale] == ["trace-320", "trace-640", None]


def test_lookalike_without_a_majority_is_not_stable() -> None:
    found = run_lookalike(
        {
            320: celebrities(make_celebrity("A", 0.5)),
            640: celebrities(make_celebrity("B", 0.6)),
            800: celebrities(make_celebrity("A", 0.4)),
            1000: celebrities(),
        }
    )
    assert found.best is not None and found.best.name == "A" and found.best.votes == 2
    assert not found.stable  # 2 of 4 is no majority


def test_failed_sizes_are_recorded_and_do_not_vote() -> None:
    busy = ServerError("busy", status_code=400, code="ER22")
    found = run_lookalike({320: busy, 640: celebrities(make_celebrity("A", 0.5))})
    assert found.per_scale[0].error is not None and "ER22" in found.per_scale[0].error
    assert found.best is not None and found.best.votes == 1 and found.stable


def test_every_size_failing_raises_the_last_error() -> None:
    first = ServerError("first", status_code=500)
    last = ServerError("last", status_code=503)
    with pytest.raises(ServerError, match="last"):
        run_lookalike({320: first, 640: last})


def test_lookalike_threshold_turns_weak_sizes_into_no_vote() -> None:
    found = run_lookalike(
        {320: celebrities(make_celebrity("A", 0.05)), 640: celebrities(make_celebrity("B", 0.6))},
        min_confidence=0.1,
    )
    assert [c.name for c in found.candidates] == ["B"]


def test_lookalike_on_an_upload_resizes_from_its_pixels() -> None:
    upload = prepare_image(Image.new("RGB", (1000, 800), (90, 100, 110)), max_side=500)
    plan = lookalike_plan(upload, scales=[320, 1.0, 800])
    jobs = pending(advance(plan, None))
    # The upload is the largest image at hand: sizes are capped at its 500 px.
    assert [max(j.image.width, j.image.height) for j in jobs] == [320, 500]


# -- issue 10: scale limit, what a match is -------------------------------------------------------


def test_pixel_scales_above_the_limit_are_refused_not_capped() -> None:
    assert MAX_SCALE == 2048
    assert resolve_scales([320, 2048], 5000, 4000) == [320, 2048]  # the limit itself is fine
    with pytest.raises(InvalidArgumentError, match="above the limit of 2048 px"):
        resolve_scales([320, 4096], 5000, 4000)
    with pytest.raises(InvalidArgumentError, match="2048"):
        resolve_scales([2049], 600, 400)  # refused even where the image's own size would cap it


def test_fractions_of_a_large_image_are_capped_at_the_limit() -> None:
    # A fraction asks for a share of the image, whatever its size: the documented cap.
    assert resolve_scales([0.25, 0.5, 1.0], 6000, 4000) == [1500, 2048]
    assert resolve_scales([1.0], 600, 400) == [600]


def test_a_weak_leader_is_no_clear_match() -> None:
    found = run_lookalike(
        {
            320: celebrities(make_celebrity("A", 0.01)),
            640: celebrities(make_celebrity("A", 0.02)),
            1000: celebrities(make_celebrity("A", 0.01)),
        }
    )
    assert found.best is None and not found.stable
    assert found.candidates[0].name == "A" and found.candidates[0].votes == 3
    assert found.match_confidence == DEFAULT_MATCH_CONFIDENCE == 0.3


def test_a_tie_for_most_votes_is_no_clear_match() -> None:
    found = run_lookalike(
        {
            320: celebrities(make_celebrity("A", 0.6)),
            640: celebrities(make_celebrity("B", 0.7)),
            800: celebrities(make_celebrity("A", 0.6)),
            1000: celebrities(make_celebrity("B", 0.7)),
        }
    )
    assert found.best is None and not found.stable
    assert [(c.name, c.votes) for c in found.candidates] == [("B", 2), ("A", 2)]


def test_match_confidence_sets_the_bar() -> None:
    answers: dict[int, JobOutcome] = {
        320: celebrities(make_celebrity("A", 0.2)),
        640: celebrities(make_celebrity("A", 0.25)),
    }
    assert run_lookalike(answers).best is None
    relaxed = run_lookalike(answers, match_confidence=0.2)
    assert relaxed.best is not None and relaxed.best.name == "A" and relaxed.stable
    for bad in (-0.1, 1.5, "0.3", True):
        with pytest.raises(InvalidArgumentError):
            run_lookalike(answers, match_confidence=bad)


def test_a_match_without_a_majority_is_best_but_not_stable() -> None:
    found = run_lookalike(
        {
            320: celebrities(make_celebrity("A", 0.5)),
            480: celebrities(make_celebrity("A", 0.5)),
            640: celebrities(make_celebrity("B", 0.6)),
            800: celebrities(make_celebrity("C", 0.6)),
            1000: celebrities(),
        }
    )
    assert found.best is not None and found.best.name == "A" and not found.stable  # 2 of 5


# -- batch items ----------------------------------------------------------------------------------


def test_batch_item() -> None:
    good: BatchItem[int] = BatchItem(0, "a.jpg", result=3)
    bad: BatchItem[int] = BatchItem(1, "b.jpg", error=ImageError("no such file"))
    assert good.ok and good.unwrap() == 3
    assert not bad.ok
    with pytest.raises(ImageError):
        bad.unwrap()


def test_a_batch_is_a_list_that_shows_itself_as_a_table() -> None:
    good = face_result(make_face(10, 10, 60, 60), make_face(100, 10, 60, 60))
    items: list[BatchItem[FaceResult]] = [
        BatchItem(0, "photos/a.jpg", result=good),
        BatchItem(1, b"not an image", error=ImageError("<not> an image")),
    ]
    batch = Batch(items)
    assert isinstance(batch, list) and batch == items and batch[1].error is not None
    page = batch._repr_html_()
    assert page.count("<tr>") == 3  # header + 2 inputs
    assert "<td>photos/a.jpg</td>" in page and "<td>2</td>" in page
    assert "<td>bytes (12 B)</td>" in page
    assert "ImageError: &lt;not&gt; an image" in page and "<not>" not in page
    assert "1 succeeded, 1 failed" in page
