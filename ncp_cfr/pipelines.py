"""Work that spans several calls (analyze, lookalike consensus, batches), planned as pure code.

A *plan* is a generator. It yields a list of [`Job`][ncp_cfr.pipelines.Job] (calls that may run
concurrently), receives their outcomes in the same order (a result, or the
[`CFRError`][ncp_cfr.CFRError] that call ended with after the client's retries), and eventually
returns its value::

    plan = analyze_plan(image, prepared)
    step = advance(plan, None)
    while isinstance(step, Pending):
        outcomes = run_somehow(step.jobs)  # threads, a task group, or by hand in a test
        step = advance(plan, outcomes)
    analysis = step.value

Every decision (what to crop, which answer belongs to which face, how to count votes) is made
here, once. The sync and async clients only execute jobs: they differ in how they send, sleep and
run things side by side. Nothing here opens a socket, sleeps, or starts a thread or an event
loop; cropping and encoding images is CPU work, which is why the async client advances plans in a
worker thread.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, Union

from ncp_cfr.errors import CFRError, ImageError, InvalidArgumentError, NotAttempted
from ncp_cfr.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SIDE,
    MIN_SIDE,
    ChannelOrder,
    ImageSource,
    PreparedImage,
    Transform,
    pixels_of,
    prepare_image,
    rereadable,
)
from ncp_cfr.models import (
    Analysis,
    AnalyzedFace,
    Celebrity,
    CelebrityResult,
    EndpointResult,
    FaceResult,
    Lookalike,
    LookalikeCandidate,
    LookalikeScale,
    Point,
    Roi,
    Size,
    UploadInfo,
)
from ncp_cfr.protocol import Endpoint

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_MATCH_CONFIDENCE",
    "DEFAULT_MIN_FACE",
    "DEFAULT_SCALES",
    "MAX_SCALE",
    "Finished",
    "Job",
    "JobOutcome",
    "Pending",
    "Plan",
    "Step",
    "advance",
    "analyze_plan",
    "call_plan",
    "lookalike_plan",
    "resolve_scales",
    "to_caller",
]

T = TypeVar("T")

#: Extra context around a face's box on each side, as a fraction of the box's size. The
#: celebrity model was trained on portraits, not on tightly cut boxes: some hair, chin and
#: background help, while 0.35 still keeps most neighbours out of the crop.
DEFAULT_MARGIN = 0.35
#: Faces narrower or lower than this (caller pixels) get no lookalike and cost no call: an
#: upscaled 20 px face carries too little detail for a name to mean anything.
DEFAULT_MIN_FACE = 32
#: Upload sizes (longest side, px) [`find_lookalike`][ncp_cfr.Client.find_lookalike] asks for,
#: capped at the image's own.
DEFAULT_SCALES: tuple[int, ...] = (320, 480, 640, 800, 1024, 1280, 1600, 2048)
#: The largest longest side a lookalike scale may ask for, in pixels. The service takes at most
#: 2 MB: a photo (4:3, JPEG quality 90) still fits at 2048 px, while at 3000-4000 px a phone
#: photo no longer does and would be re-encoded smaller, so the size asked for would not be the
#: size sent. A larger pixel size is refused, never quietly lowered.
MAX_SCALE = 2048
#: The mean confidence a lookalike candidate needs to count as a match. The service names
#: somebody for every face, down to 0.01; a real resemblance scores well above 0.3 at most
#: sizes, while a guess wanders under it.
DEFAULT_MATCH_CONFIDENCE = 0.3


@dataclass(frozen=True)
class Job:
    """One call to make: send ``image`` to ``endpoint`` (with the client's usual retries)."""

    endpoint: Endpoint
    image: PreparedImage


#: What a job ended with: the answer as parsed (in the upload's pixels), or the error the call
#: failed with after the client's retries.
JobOutcome = Union[FaceResult, CelebrityResult, CFRError]
Plan = Generator[list[Job], list[JobOutcome], T]
ResultT = TypeVar("ResultT", bound=Union[FaceResult, CelebrityResult])


@dataclass(frozen=True)
class Pending:
    """The plan waits for these jobs' outcomes (``[]`` is allowed: answer it with ``[]``)."""

    jobs: list[Job]


@dataclass(frozen=True)
class Finished(Generic[T]):
    """The plan is done and returned ``value``."""

    value: T


Step = Union[Pending, Finished[T]]


def advance(plan: Plan[T], outcomes: list[JobOutcome] | None) -> Step[T]:
    """Start ``plan`` (``outcomes=None``) or give it the outcomes of the jobs it asked for.

    Turns the generator protocol into a value: ``StopIteration`` cannot cross a coroutine or a
    thread boundary cleanly, a [`Finished`][ncp_cfr.pipelines.Finished] can. Errors the plan raises
    propagate.
    """
    try:
        jobs = next(plan) if outcomes is None else plan.send(outcomes)
    except StopIteration as stop:
        return Finished(stop.value)
    return Pending(jobs)


def call_plan(
    endpoint: Endpoint,
    image: ImageSource | PreparedImage,
    *,
    channel_order: ChannelOrder = "rgb",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> Plan[EndpointResult]:
    """One call as a plan: prepare ``image``, send it, answer in the caller's pixels.

    How ``detect_faces`` and ``recognize_celebrities`` run, alone and in batches. Preparing the
    image is the plan's first step, so it runs where the driver advances plans (the async client:
    a worker thread), and a bad input fails as the plan's own error.
    """
    prepared = _prepared(image, channel_order, max_bytes, max_side)
    [outcome] = yield [Job(endpoint, prepared)]
    if isinstance(outcome, CFRError):
        raise outcome
    return to_caller(outcome, prepared)


def _prepared(
    image: ImageSource | PreparedImage,
    channel_order: ChannelOrder,
    max_bytes: int,
    max_side: int | None,
) -> PreparedImage:
    if isinstance(image, PreparedImage):
        return image
    return prepare_image(image, max_bytes=max_bytes, max_side=max_side, channel_order=channel_order)


def to_caller(result: ResultT, prepared: PreparedImage) -> ResultT:
    """Move a freshly parsed ``result`` into the caller's pixels, in place, with its upload facts.

    The service answers in the uploaded image's pixels; the caller wants the pixels of the image
    they passed (upright for files). ``prepared.transform`` says how the two relate. The
    result's ``raw`` JSON is a separate object and keeps the service's own numbers.
    """
    result.info.size.width = prepared.source_width
    result.info.size.height = prepared.source_height
    # Our own numbers, already typed: no validation pass needed.
    result.upload = UploadInfo.model_construct(
        width=prepared.width,
        height=prepared.height,
        bytes=len(prepared.data),
        format=prepared.format,
        scale=prepared.scale,
        reencoded=prepared.reencoded,
        quality=prepared.quality,
    )
    transform = prepared.transform
    if isinstance(result, FaceResult) and transform != Transform.IDENTITY:
        for face in result.faces:
            roi = face.roi
            roi.x, roi.y, roi.width, roi.height = transform.box_to_source(
                roi.x, roi.y, roi.width, roi.height
            )
            if face.landmark is not None:
                for name, point in face.landmark.points().items():
                    x, y = transform.to_source(point.x, point.y)
                    setattr(face.landmark, name, Point(x=round(x), y=round(y)))
    return result


# --- analyze -------------------------------------------------------------------------------------


def _check_analyze_options(margin: float, min_face: int, min_confidence: float) -> None:
    if not (isinstance(margin, (int, float)) and 0 <= margin <= 5):
        raise InvalidArgumentError(
            f"margin is a fraction of the face box between 0 and 5, got {margin!r}"
        )
    if not (isinstance(min_face, int) and min_face >= 1):
        raise InvalidArgumentError(f"min_face is a positive number of pixels, got {min_face!r}")
    if not (isinstance(min_confidence, (int, float)) and 0 <= min_confidence <= 1):
        raise InvalidArgumentError(f"min_confidence is between 0 and 1, got {min_confidence!r}")


def _unless_not_sent(outcomes: list[JobOutcome]) -> None:
    """A call its batch never sent (the batch stopped) leaves the photo unfinished, not answered
    with a gap: the photo is then not attempted, and a rerun does it whole.
    """
    for outcome in outcomes:
        if isinstance(outcome, NotAttempted):
            raise outcome


def _top(ranked: list[Celebrity], min_confidence: float) -> Celebrity | None:
    """The most confident name, unless it is under ``min_confidence``."""
    return ranked[0] if ranked and ranked[0].confidence >= min_confidence else None


def analyze_plan(
    image: ImageSource | PreparedImage,
    *,
    channel_order: ChannelOrder = "rgb",
    margin: float = DEFAULT_MARGIN,
    min_face: int = DEFAULT_MIN_FACE,
    min_confidence: float = 0.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> Plan[Analysis]:
    """Faces of ``image``, then one celebrity call per face on a crop around it.

    The celebrity endpoint names faces without saying where they are; a crop that holds one face
    makes the answer that face's. Each crop's answer goes back to the face it was cut around: if
    the service still sees several faces in it (a neighbour at the edge) the most confident name
    wins; if it sees none, or the name is under ``min_confidence``, the face has no lookalike.

    Args:
        image: any image the clients take. Crops come from the caller's pixels (a stream is
            read once and kept); for a [`PreparedImage`][ncp_cfr.PreparedImage], from its upload.
        channel_order: the channel order of an array ``image``.
        margin: context added around each box, as a fraction of the box's width/height per side.
        min_face: faces whose box is narrower or lower than this (caller pixels) are not cropped:
            no call, no lookalike, no error.
        min_confidence: lookalikes under this confidence are dropped (``lookalike=None``).
        max_bytes: upload limit, for the whole image and the crops.
        max_side: longest side of an upload (``None``: the image's own size).

    Returns:
        An [`Analysis`][ncp_cfr.Analysis] in the caller's pixels. A failed crop call does not fail
        the analysis: that face gets ``lookalike_error``. A failed face call raises its error.
    """
    _check_analyze_options(margin, min_face, min_confidence)
    if not isinstance(image, PreparedImage):
        image = rereadable(image)  # read twice: for the upload and for the pixels to crop
    prepared = _prepared(image, channel_order, max_bytes, max_side)
    # ``to_pixels`` maps caller pixels onto the grid crops are cut from.
    pixels, to_pixels = pixels_of(image, prepared, channel_order)
    [outcome] = yield [Job(Endpoint.FACE, prepared)]
    if isinstance(outcome, CFRError):
        raise outcome
    if not isinstance(outcome, FaceResult):
        raise TypeError(f"the face job answered with {type(outcome).__name__}")
    found = to_caller(outcome, prepared)

    faces = [
        AnalyzedFace.model_validate(face.model_dump(by_alias=True, mode="python"))
        for face in found.faces
    ]
    jobs: list[Job] = []
    owners: list[int] = []
    for index, face in enumerate(faces):
        roi = face.roi
        if roi.width < min_face or roi.height < min_face:
            continue
        x0, y0 = to_pixels.to_upload(roi.x, roi.y)
        x1, y1 = to_pixels.to_upload(roi.right, roi.bottom)
        on_grid = Roi(x=round(x0), y=round(y0), width=round(x1 - x0), height=round(y1 - y0))
        box = on_grid.crop_box(pixels.size, margin)
        # Mostly outside the picture: what is left is too little to name.
        if (box[2] - box[0]) / to_pixels.scale_x < min_face or (
            box[3] - box[1]
        ) / to_pixels.scale_y < min_face:
            continue
        try:
            crop = prepare_image(pixels.crop(box), max_bytes=max_bytes, max_side=max_side)
        except ImageError as error:
            face.lookalike_error = str(error)
            continue
        jobs.append(Job(Endpoint.CELEBRITY, crop))
        owners.append(index)

    answers = yield jobs
    _unless_not_sent(answers)
    for index, answer in zip(owners, answers, strict=True):
        if isinstance(answer, CFRError):
            faces[index].lookalike_error = str(answer)
        elif isinstance(answer, CelebrityResult):
            faces[index].lookalike = _top(answer.ranked(), min_confidence)

    analysis = Analysis(info=found.info.model_copy(deep=True), faces=faces, upload=found.upload)
    analysis._raw = found.raw
    analysis._request_id = found.request_id
    return analysis


# --- lookalike consensus -------------------------------------------------------------------------


def resolve_scales(scales: Sequence[float], width: int, height: int) -> list[int]:
    """Longest-side pixel sizes for an image of ``width`` x ``height``, ascending, no repeats.

    A value in (0, 1] is a fraction of the image's longest side; a value from 50 to
    [`MAX_SCALE`][ncp_cfr.pipelines.MAX_SCALE] (2048) is a longest side in pixels. Sizes over
    the image's own are capped to it (asking for more would only upscale), and so is a fraction
    of an image larger than `MAX_SCALE` (a fraction asks for a share of the image, whatever its
    size); sizes under 50 px are raised to 50 (the service's minimum).

    Raises:
        InvalidArgumentError: `scales` is empty, or holds something that is not a number, a
            value between 1 and 50, or a pixel size above `MAX_SCALE`.
    """
    if not scales:
        raise InvalidArgumentError(
            "scales is empty: give longest-side sizes (e.g. [480, 800]) or fractions"
        )
    longest = max(width, height)
    sides: set[int] = set()
    for value in scales:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise InvalidArgumentError(f"scales holds pixel sizes or fractions, got {value!r}")
        if value <= 1:
            side = min(round(value * longest), MAX_SCALE)
        elif value > MAX_SCALE:
            raise InvalidArgumentError(
                f"scale {value!r} is above the limit of {MAX_SCALE} px: the service takes at "
                f"most 2 MB, so a larger upload would not be sent at the size asked; give sizes "
                f"from {MIN_SIDE} to {MAX_SCALE} px, or fractions of the image"
            )
        elif value >= MIN_SIDE:
            side = round(value)
        else:
            raise InvalidArgumentError(
                f"scale {value!r} is neither a fraction (0 < s <= 1) nor a size of at least "
                f"{MIN_SIDE} px"
            )
        # Tiny images are upscaled to the minimum by prepare_image: ask for exactly that.
        sides.add(min(max(side, MIN_SIDE), max(longest, MIN_SIDE)))
    return sorted(sides)


def _rank(per_scale: list[LookalikeScale]) -> list[LookalikeCandidate]:
    votes: dict[str, list[tuple[int, float]]] = {}
    for answer in per_scale:
        if answer.top is not None:
            votes.setdefault(answer.top.value, []).append((answer.side, answer.top.confidence))
    candidates = [
        LookalikeCandidate(
            name=name,
            votes=len(seen),
            mean_confidence=sum(c for _, c in seen) / len(seen),
            max_confidence=max(c for _, c in seen),
            min_confidence=min(c for _, c in seen),
            sides=[side for side, _ in seen],
        )
        for name, seen in votes.items()
    ]
    candidates.sort(key=lambda c: (-c.votes, -c.mean_confidence, c.name))
    return candidates


def _match(
    candidates: list[LookalikeCandidate], match_confidence: float
) -> LookalikeCandidate | None:
    """The leading candidate if it is a clear match (the rule is the `Lookalike` docstring's)."""
    if not candidates:
        return None
    leader = candidates[0]
    if leader.mean_confidence < match_confidence:
        return None
    if len(candidates) > 1 and candidates[1].votes == leader.votes:
        return None  # a tie for most sizes: the sizes disagree, nobody leads
    return leader


def lookalike_plan(
    image: ImageSource | PreparedImage,
    *,
    channel_order: ChannelOrder = "rgb",
    scales: Sequence[float] = DEFAULT_SCALES,
    min_confidence: float = 0.0,
    match_confidence: float = DEFAULT_MATCH_CONFIDENCE,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Plan[Lookalike]:
    """Ask the celebrity endpoint at several upload sizes and let the sizes vote.

    The service's name for a face changes with the upload's resolution. Each size votes once,
    with its most confident name (a group photo is best cropped first, or use ``analyze``);
    candidates rank by votes, then mean confidence. A size that fails is recorded, not fatal.

    The leading candidate is a *match* (`best`) when its mean confidence is at least
    `match_confidence` and no other name won as many sizes; the vote is *stable* when that match
    also won more than half of the sizes that answered. Otherwise `best` is `None`: no clear
    match, although `candidates` still ranks every name the sizes voted for.

    Args:
        image: any image the clients take, best with one face; a
            [`PreparedImage`][ncp_cfr.PreparedImage] is resized from its (smaller) upload.
        channel_order: the channel order of an array ``image``.
        scales: see [`resolve_scales`][ncp_cfr.pipelines.resolve_scales]; capped at the image's own
            size, so a small image may get fewer sizes than asked.
        min_confidence: a size whose best name is under this votes for nobody.
        match_confidence: the mean confidence (over the sizes that voted for it) a candidate
            needs to be the match (default
            [`DEFAULT_MATCH_CONFIDENCE`][ncp_cfr.pipelines.DEFAULT_MATCH_CONFIDENCE], 0.3).
        max_bytes: upload limit.

    Returns:
        The ranked [`Lookalike`][ncp_cfr.Lookalike].

    Raises:
        CFRError: the last error, when every size failed.
    """
    if not (isinstance(min_confidence, (int, float)) and 0 <= min_confidence <= 1):
        raise InvalidArgumentError(f"min_confidence is between 0 and 1, got {min_confidence!r}")
    if isinstance(match_confidence, bool) or not (
        isinstance(match_confidence, (int, float)) and 0 <= match_confidence <= 1
    ):
        raise InvalidArgumentError(f"match_confidence is between 0 and 1, got {match_confidence!r}")
    pixels = pixels_of(image, None, channel_order)[0]
    sides = resolve_scales(scales, pixels.width, pixels.height)
    uploads = [prepare_image(pixels, max_bytes=max_bytes, max_side=side) for side in sides]
    answers = yield [Job(Endpoint.CELEBRITY, upload) for upload in uploads]
    _unless_not_sent(answers)

    per_scale: list[LookalikeScale] = []
    last_error: CFRError | None = None
    for side, upload, answer in zip(sides, uploads, answers, strict=True):
        entry = LookalikeScale(side=side, width=upload.width, height=upload.height)
        if isinstance(answer, CFRError):
            entry.error = str(answer)
            entry.request_id = getattr(answer, "request_id", None)
            last_error = answer
        elif isinstance(answer, CelebrityResult):
            entry.names = answer.ranked()
            entry.top = _top(entry.names, min_confidence)
            entry.request_id = answer.request_id
        per_scale.append(entry)
    answered = [s for s in per_scale if s.error is None]
    if not answered:
        assert last_error is not None
        raise last_error

    candidates = _rank(per_scale)
    best = _match(candidates, match_confidence)
    return Lookalike(
        size=Size(width=pixels.width, height=pixels.height),
        best=best,
        candidates=candidates,
        stable=best is not None and 2 * best.votes > len(answered),
        match_confidence=match_confidence,
        per_scale=per_scale,
    )
