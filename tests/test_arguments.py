"""Every mistake a caller can make raises an InvalidArgumentError (a CFRError), before any call.

It is also a ValueError and a TypeError, so code written against the built-ins keeps working;
the message names the argument and what it takes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from ncp_cfr import (
    CelebrityResult,
    CFRError,
    Client,
    FaceResult,
    InvalidArgumentError,
    Transform,
    blur_faces,
    crop_faces,
    draw_faces,
)
from ncp_cfr.clients import RateLimiter
from ncp_cfr.display import result_rows
from ncp_cfr.testing import Emulator, Gallery
from ncp_cfr.testing.emulator import EmulatorNotRunningError

FACES = FaceResult.model_validate(
    {
        "info": {"size": {"width": 100, "height": 100}, "faceCount": 1},
        "faces": [{"roi": {"x": 10, "y": 10, "width": 50, "height": 50}}],
    }
)
CELEBRITIES = CelebrityResult.model_validate(
    {"info": {"size": {"width": 100, "height": 100}, "faceCount": 0}, "faces": []}
)
PICTURE = Image.new("RGB", (100, 100), (90, 90, 90))
KEYS = {"client_id": "fake-client-id", "client_secret": "fake-client-secret"}


def _client(**options: Any) -> Client:
    return Client(**KEYS, **{"base_url": "http://127.0.0.1:9", **options})


MISTAKES: dict[str, tuple[Callable[[], object], str]] = {
    "crop margin": (lambda: crop_faces(PICTURE, FACES, margin=-1), "margin"),
    "blur margin": (lambda: blur_faces(PICTURE, FACES, margin=-1), "margin"),
    "blur method": (lambda: blur_faces(PICTURE, FACES, method="swirl"), "method"),  # type: ignore[arg-type]
    "blur shape": (lambda: blur_faces(PICTURE, FACES, shape="star"), "shape"),  # type: ignore[arg-type]
    "blur strength": (lambda: blur_faces(PICTURE, FACES, strength=0), "strength"),
    "crop a celebrity result": (lambda: crop_faces(PICTURE, CELEBRITIES), "CelebrityResult"),
    "draw not a result": (lambda: draw_faces(PICTURE, {"faces": []}), "expects"),  # type: ignore[arg-type]
    "draw empty colours": (lambda: draw_faces(PICTURE, FACES, color=[]), "color"),
    "table of not a result": (lambda: result_rows("faces"), "expected"),  # type: ignore[arg-type]
    "transform scale": (lambda: Transform(0.0, 1.0), "scales"),
    "timeout": (lambda: _client(timeout=-1), "timeout"),
    "timeout None": (lambda: _client(timeout=None), "timeout"),
    "max_retries": (lambda: _client(max_retries=-1), "max_retries"),
    "base_url": (lambda: _client(base_url="ftp://host"), "base_url"),
    "rate_limit": (lambda: RateLimiter(0), "rate_limit"),
    "emulator fault code": (lambda: Emulator(detector="none").inject("ER77"), "error code"),
    "emulator match": (
        lambda: Emulator(detector="none").reply("face", match=PICTURE),  # type: ignore[arg-type]
        "match=",
    ),
    "emulator recognizer and gallery": (
        lambda: Emulator(recognizer=lambda image: [], gallery=Gallery()),
        "not both",
    ),
    "gallery floor": (lambda: Gallery().recognizer(lambda image: [], floor=2), "floor"),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistakes_raise_invalid_argument_error(name: str) -> None:
    call, word = MISTAKES[name]
    with pytest.raises(InvalidArgumentError, match=word) as info:
        call()
    assert isinstance(info.value, CFRError)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


def test_analyze_and_crop_refuse_a_negative_margin_alike() -> None:
    # Both take a margin around face boxes; the same mistake must be the same error.
    with Emulator(**KEYS, detector="none") as emu, emu.client() as client:
        with pytest.raises(InvalidArgumentError, match="margin"):
            client.analyze(PICTURE, margin=-1)
        with pytest.raises(InvalidArgumentError, match="concurrency"):
            client.detect_faces_many([PICTURE], concurrency=0)
        with pytest.raises(InvalidArgumentError, match="progress"):
            client.detect_faces_many([PICTURE], progress="yes")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="scales"):
            client.find_lookalike(PICTURE, scales=[])
        assert emu.requests == []  # nothing was sent for any of them


def test_an_emulator_used_before_it_runs_says_how_to_start_it() -> None:
    with pytest.raises(EmulatorNotRunningError, match="with Emulator") as info:
        _ = Emulator(detector="none").base_url
    assert isinstance(info.value, CFRError) and isinstance(info.value, RuntimeError)
