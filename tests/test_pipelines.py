"""The pure pipelines, driven by hand: no HTTP, no threads, every outcome chosen by the test."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from PIL import Image

from ncp_cfr import (
    CelebrityResult,
    CFRError,
    FaceResult,
    ImageError,
    InvalidArgumentError,
    ServerError,
    prepare_image,
)
from ncp_cfr.images import PreparedImage
from ncp_cfr.models import Analysis, Lookalike
from ncp_cfr.pipelines import (
    DEFAULT_MATCH_CONFIDENCE,
    MAX_SCALE,
    Batch,
    BatchItem,
    Finished,
    Job,
    Outcome,
    Pending,
    Plan,
    RateLimiter,
    advance,
    analyze_plan,
    call_plan,
    crop_box,
    lookalike_plan,
    resolve_scales,
)
from ncp_cfr.protocol import Endpoint
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


def face_result(*faces: dict[str, Any], size: tuple[int, int] = (400, 300)) -> FaceResult:
    return FaceResult.model_validate(
        {"info": {"size": {"width": size[0], "height": size[1]}}, "faces": list(faces)}
    )


def celebrities(*faces: dict[str, Any]) -> CelebrityResult:
    return CelebrityResult.model_validate(
        {"info": {"size": {"width": 100, "height": 100}, "faceCount": len(faces)}, "faces": faces}
    )


def pending(step: Any) -> list[Job]:
    assert isinstance(step, Pending), step
    return step.jobs


def finished(step: Any) -> Any:
    assert isinstance(step, Finished), step
    return step.value


def start_analysis(image: Image.Image, **options: Any) -> tuple[Plan[Analysis], list[Job]]:
    """Run the plan up to its crop calls, answering the face call with two faces and a tiny one."""
    prepared = prepare_image(image)
    plan = analyze_plan(image, prepared, **options)
    [face_job] = pending(advance(plan, None))
    assert face_job == Job(Endpoint.FACE, prepared)
    found = face_result(
        make_face(40, 60, 100, 100, gender="female"),
        make_face(240, 60, 100, 100, gender="male"),
        make_face(180, 250, 20, 20),  # under min_face: never cropped
    )
    return plan, pending(advance(plan, [found]))


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


def test_crops_keep_a_margin_and_small_crops_are_upscaled_to_the_minimum() -> None:
    image = two_faces()
    _, jobs = start_analysis(image, margin=0.5, min_face=10)
    # 100 px box + 50 px each side = 200 px; x = 40 - 50 is clipped at the left edge, y fits.
    assert (jobs[0].image.source_width, jobs[0].image.source_height) == (190, 200)
    assert len(jobs) == 3  # min_face=10 lets the 20 px face through ...
    assert min(jobs[2].image.width, jobs[2].image.height) >= 50  # ... upscaled to 50 px


def test_crop_box_grows_by_the_margin_and_clips_to_the_image() -> None:
    assert crop_box(100, 100, 50, 40, 0.2, 400, 300) == (90, 92, 160, 148)
    assert crop_box(-10, 280, 50, 40, 0.5, 400, 300) == (0, 260, 65, 300)
    left, _, right, _ = crop_box(500, 10, 50, 50, 0.1, 400, 300)
    assert right <= left  # entirely outside: empty


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
    image = two_faces()
    plan = analyze_plan(image, prepare_image(image))
    pending(advance(plan, None))
    with pytest.raises(ServerError):
        advance(plan, [ServerError("down", status_code=503)])


def test_no_faces_means_no_crop_calls() -> None:
    image = two_faces()
    plan = analyze_plan(image, prepare_image(image))
    pending(advance(plan, None))
    assert pending(advance(plan, [face_result()])) == []
    assert finished(advance(plan, [])).faces == []


def test_cropping_from_an_upload_goes_through_its_transform() -> None:
    # Only a half-size upload is at hand: the roi (caller pixels) must land on it scaled.
    image = two_faces((800, 600))
    upload = prepare_image(image, max_side=400)
    pixels = Image.open(io.BytesIO(upload.data))
    plan = analyze_plan(pixels, upload, pixels=upload.transform, margin=0.0)
    pending(advance(plan, None))
    found = face_result(make_face(40, 60, 100, 100), make_face(240, 60, 100, 100), size=(800, 600))
    jobs = pending(advance(plan, [found]))
    assert [dominant(job.image) for job in jobs] == ["red", "blue"]
    assert jobs[0].image.source_width == 50  # 100 caller px on a half-size upload


@pytest.mark.parametrize(
    "options", [{"margin": -1}, {"min_face": 0}, {"min_confidence": 2}, {"min_face": 1.5}]
)
def test_analyze_options_are_checked(options: dict[str, Any]) -> None:
    image = two_faces()
    with pytest.raises(CFRError):
        advance(analyze_plan(image, prepare_image(image), **options), None)


# -- lookalike consensus --------------------------------------------------------------------------


def test_resolve_scales_caps_merges_and_reads_fractions() -> None:
    assert resolve_scales([320, 480, 640, 2048], 600, 400) == [320, 480, 600]
    assert resolve_scales([0.5, 1.0, 300], 600, 400) == [300, 600]
    assert resolve_scales([320], 30, 20) == [50]  # a tiny image is asked at the minimum once
    for bad in ([], [20], [0], [-1], ["640"], [True]):
        with pytest.raises(CFRError):
            resolve_scales(bad, 600, 400)  # type: ignore[arg-type]


def run_lookalike(sides_to_answers: dict[int, Outcome], **options: Any) -> Lookalike:
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


# -- single calls, batch items, rate limiting -----------------------------------------------------


def test_call_plan_returns_the_result_or_raises_the_error() -> None:
    prepared = prepare_image(two_faces())
    plan = call_plan(Endpoint.FACE, prepared)
    assert pending(advance(plan, None)) == [Job(Endpoint.FACE, prepared)]
    result = face_result()
    assert finished(advance(plan, [result])) is result
    failing = call_plan(Endpoint.CELEBRITY, prepared)
    advance(failing, None)
    with pytest.raises(ImageError):
        advance(failing, [ImageError("bad")])


def test_batch_item() -> None:
    good: BatchItem[int] = BatchItem(0, "a.jpg", result=3)
    bad: BatchItem[int] = BatchItem(1, "b.jpg", error=ImageError("no such file"))
    assert good.ok and good.unwrap() == 3
    assert not bad.ok
    with pytest.raises(ImageError):
        bad.unwrap()


def test_rate_limiter_spaces_requests_evenly() -> None:
    limiter = RateLimiter(20)
    assert [round(limiter.reserve(10.0), 3) for _ in range(4)] == [0.0, 0.05, 0.1, 0.15]
    # After an idle spell there is no credit beyond the burst.
    assert limiter.reserve(100.0) == 0.0
    assert limiter.reserve(100.0) == pytest.approx(0.05)


def test_rate_limiter_burst() -> None:
    limiter = RateLimiter(10, burst=3)
    waits = [limiter.reserve(0.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


def test_rate_limiter_gives_every_thread_its_own_slot() -> None:
    limiter = RateLimiter(1000)
    slots: list[float] = []
    lock = threading.Lock()

    def book() -> None:
        for _ in range(100):
            wait = limiter.reserve(0.0)
            with lock:
                slots.append(wait)

    threads = [threading.Thread(target=book) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(round(s * 1000) for s in slots) == list(range(800))


@pytest.mark.parametrize("rate", [0, -1, True, "5"])
def test_rate_limiter_refuses_nonsense(rate: Any) -> None:
    with pytest.raises(CFRError):
        RateLimiter(rate)


# -- issue 10: scale limit, what a match is, batches in notebooks --------------------------------


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
    answers: dict[int, Outcome] = {
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


def test_a_batch_is_a_list_that_shows_itself_as_a_table() -> None:
    good = face_result(make_face(10, 10, 60, 60), make_face(100, 10, 60, 60))
    items = [
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
