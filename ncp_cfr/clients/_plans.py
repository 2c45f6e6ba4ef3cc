"""The plans behind the public methods, with this client's upload options: what each method
and each ``stream`` operation runs.

Each returns a plan factory (image -> plan): one image for the single methods, every input of a
batch for the others. A plan does nothing until first advanced, so images are read and encoded
where the shell advances it (the async one: in a worker thread).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ncp_cfr.clients._base import ClientBase, HttpT, ImageInput
from ncp_cfr.errors import InvalidArgumentError
from ncp_cfr.images import ChannelOrder
from ncp_cfr.models import Analysis, CelebrityResult, FaceResult, Lookalike
from ncp_cfr.pipelines import (
    DEFAULT_MARGIN,
    DEFAULT_MATCH_CONFIDENCE,
    DEFAULT_MIN_FACE,
    DEFAULT_SCALES,
    Plan,
    analyze_plan,
    call_plan,
    lookalike_plan,
)
from ncp_cfr.protocol import Endpoint

ResultT = TypeVar("ResultT", FaceResult, CelebrityResult)


class Plans(ClientBase[HttpT]):
    """Plan factories of both clients, fed with the client's upload options."""

    #
    # Each returns a plan factory (image -> plan): one image for the single methods, every input
    # of a batch for the ``*_many`` ones. A plan does nothing until first advanced, so images are
    # read and encoded where the shell advances it (the async one: in a worker thread).

    def _face_plans(self, channel_order: ChannelOrder) -> Callable[[ImageInput], Plan[FaceResult]]:
        return self._call_plans(Endpoint.FACE, FaceResult, channel_order)

    def _celebrity_plans(
        self, channel_order: ChannelOrder
    ) -> Callable[[ImageInput], Plan[CelebrityResult]]:
        return self._call_plans(Endpoint.CELEBRITY, CelebrityResult, channel_order)

    def _call_plans(
        self, endpoint: Endpoint, kind: type[ResultT], channel_order: ChannelOrder
    ) -> Callable[[ImageInput], Plan[ResultT]]:
        max_bytes, max_side = self._max_bytes, self._max_side

        def plan(image: ImageInput) -> Plan[ResultT]:
            result = yield from call_plan(
                endpoint,
                image,
                channel_order=channel_order,
                max_bytes=max_bytes,
                max_side=max_side,
            )
            assert isinstance(result, kind)
            return result

        return plan

    def _analyze_plans(
        self, channel_order: ChannelOrder, margin: float, min_face: int, min_confidence: float
    ) -> Callable[[ImageInput], Plan[Analysis]]:
        return functools.partial(
            analyze_plan,
            channel_order=channel_order,
            margin=margin,
            min_face=min_face,
            min_confidence=min_confidence,
            max_bytes=self._max_bytes,
            max_side=self._max_side,
        )

    def _lookalike_plans(
        self,
        channel_order: ChannelOrder,
        scales: Sequence[float],
        min_confidence: float,
        match_confidence: float,
    ) -> Callable[[ImageInput], Plan[Lookalike]]:
        return functools.partial(
            lookalike_plan,
            channel_order=channel_order,
            scales=scales,
            min_confidence=min_confidence,
            match_confidence=match_confidence,
            max_bytes=self._max_bytes,
        )

    def _operation(
        self,
        operation: str,
        channel_order: ChannelOrder,
        margin: float,
        min_face: int,
        min_confidence: float,
        scales: Sequence[float],
        match_confidence: float,
    ) -> tuple[Callable[[ImageInput], Plan[Any]], dict[str, object]]:
        """The plans of ``operation`` and the options that change its answer (the store key)."""
        upload: dict[str, object] = {
            "channel_order": channel_order,
            "max_bytes": self._max_bytes,
            "max_side": self._max_side,
        }
        given = {
            "margin": margin != DEFAULT_MARGIN,
            "min_face": min_face != DEFAULT_MIN_FACE,
            "scales": tuple(scales) != tuple(DEFAULT_SCALES),
            "match_confidence": match_confidence != DEFAULT_MATCH_CONFIDENCE,
            "min_confidence": min_confidence != 0.0,
        }
        own = {
            "face": set(),
            "celebrity": set(),
            "analyze": {"margin", "min_face", "min_confidence"},
            "lookalike": {"scales", "min_confidence", "match_confidence"},
        }
        if operation not in own:
            raise InvalidArgumentError(
                f"operation is 'face', 'celebrity', 'analyze' or 'lookalike', got {operation!r}"
            )
        foreign = sorted(n for n, changed in given.items() if changed and n not in own[operation])
        if foreign:
            raise InvalidArgumentError(
                f"{', '.join(foreign)} do(es) not apply to {operation!r}: leave them out"
            )
        if operation == "face":
            return self._face_plans(channel_order), upload
        if operation == "celebrity":
            return self._celebrity_plans(channel_order), upload
        if operation == "analyze":
            options = {**upload, "margin": margin, "min_face": min_face}
            options["min_confidence"] = min_confidence
            return self._analyze_plans(channel_order, margin, min_face, min_confidence), options
        options = {"channel_order": channel_order, "max_bytes": self._max_bytes}
        options.update(
            scales=list(scales), min_confidence=min_confidence, match_confidence=match_confidence
        )
        return self._lookalike_plans(
            channel_order, scales, min_confidence, match_confidence
        ), options
