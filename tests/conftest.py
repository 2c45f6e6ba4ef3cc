"""Shared fixtures: a loopback emulator, both client shells, and small test images."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image

from ncp_cfr.clients._base import ClientBase, Clock
from ncp_cfr.testing import Emulator

DATA = Path(__file__).parent / "data"
PACKAGE_DATA = Path(__file__).parent.parent / "ncp_cfr" / "data"
HOPPER = PACKAGE_DATA / "grace_hopper.jpg"  # 512x600, one frontal face
ASTRONAUT = DATA / "astronaut.png"  # 512x512, one frontal face


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """A scripted-only emulator: tests declare the faces they expect (no real detector)."""
    with Emulator(detector="none") as emulator:
        yield emulator


@pytest.fixture
def hopper_path() -> Path:
    return HOPPER


@pytest.fixture
def hopper_bytes() -> bytes:
    return HOPPER.read_bytes()


def jpeg_bytes(
    size: tuple[int, int] = (200, 160), color: tuple[int, int, int] = (120, 90, 60)
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


#: The face of the contract's face example (cfr-api.md §2), as the service sends it.
CONTRACT_FACE: dict[str, Any] = {
    "roi": {"x": 235, "y": 227, "width": 326, "height": 326},
    "landmark": {
        "leftEye": {"x": 311, "y": 289},
        "rightEye": {"x": 425, "y": 287},
        "nose": {"x": 308, "y": 346},
        "leftMouth": {"x": 306, "y": 425},
        "rightMouth": {"x": 383, "y": 429},
    },
    "gender": {"value": "male", "confidence": 0.91465},
    "age": {"value": "22~26", "confidence": 0.742265},
    "emotion": {"value": "smile", "confidence": 0.460465},
    "pose": {"value": "frontal_face", "confidence": 0.937789},
}


Runner = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def shell(request: pytest.FixtureRequest, emu: Emulator) -> Runner:
    """Run a client method on the sync or the async client, over loopback HTTP.

    ``shell("detect_faces", image, max_retries=0)`` builds a client with the given options,
    calls the method and returns its result (or raises its error), whichever shell it is.
    """

    def run(method: str, *args: Any, **options: Any) -> Any:
        kwargs = options.pop("call_kwargs", {})
        if request.param == "sync":
            with emu.client(**options) as client:
                return getattr(client, method)(*args, **kwargs)

        async def go() -> Any:
            async with emu.async_client(**options) as client:
                return await getattr(client, method)(*args, **kwargs)

        return anyio.run(go)

    run.kind = request.param  # type: ignore[attr-defined]
    return run


def start_standalone(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start ``python <args>`` (a standalone emulator), read its banner, return it and its URL.

    The ``NCP_CFR_*`` variables of this process are not passed on: the command's own options
    decide the keys.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("NCP_CFR_")}
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    banner = ""
    while "Ctrl-C" not in banner:
        banner = process.stdout.readline()
        if not banner:
            process.kill()
            raise AssertionError(process.stderr.read() if process.stderr else "no banner")
    return process, banner


class FakeClock(Clock):
    """Time that passes only when a client sleeps: backoffs, ``Retry-After`` and rate-limit waits
    cost no real time, and what the client waited is recorded in ``slept``.
    """

    def __init__(self) -> None:
        self.time = 1_000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.time

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=self.time)

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        self.slept.append(seconds)
        self.time += max(0.0, seconds)
        return stop is not None and stop.is_set()

    async def asleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.time += max(0.0, seconds)
        await anyio.sleep(0)  # still a checkpoint: cancellation lands here, as in a real sleep


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Every client of the test sleeps on a fake clock (retry tests never sleep for real)."""
    clock = FakeClock()
    monkeypatch.setattr(ClientBase, "_clock", clock)
    return clock


def noise_jpeg(seed: int, size: tuple[int, int] = (80, 64)) -> bytes:
    """A small JPEG of noise: distinct bytes for every seed."""
    pixels = random.Random(seed).randbytes(size[0] * size[1] * 3)
    buf = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def write_photos(folder: Path, count: int, first_seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"photo{first_seed + i:03d}.jpg"
        path.write_bytes(noise_jpeg(first_seed + i))
        paths.append(path)
    return paths
