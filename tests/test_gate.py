"""A batch's gate: limits shared beyond the process (what ``ncp_cfr.ray`` builds on), in both
shells, against a loopback emulator, with a gate made here instead of a Ray actor.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from ncp_cfr import NotAttempted, QuotaExceededError
from ncp_cfr.clients._batches import BatchRun
from ncp_cfr.clients._methods import Many
from ncp_cfr.pipelines import (
    DEFAULT_MARGIN,
    DEFAULT_MATCH_CONFIDENCE,
    DEFAULT_MIN_FACE,
    DEFAULT_SCALES,
)
from ncp_cfr.testing import Emulator, make_face

from .conftest import noise_jpeg

KINDS = ["sync", "async"]
#: ``_operation``'s arguments after the channel order, at their defaults.
FACE_DEFAULTS = (DEFAULT_MARGIN, DEFAULT_MIN_FACE, 0.0, DEFAULT_SCALES, DEFAULT_MATCH_CONFIDENCE)


class CountingGate:
    """Admits ``allowed`` requests, then refuses with ``reason``; records stops and threads."""

    def __init__(self, allowed: int | None = None, reason: str = "max_calls", wait: float = 0.0):
        self.allowed = allowed
        self.reason = reason
        self.wait = wait
        self.admitted = 0
        self.retries = 0
        self.stops: list[str] = []
        self.threads: set[str] = set()
        self.times: list[float] = []  # time.time() of each admission, as the emulator records
        self._lock = threading.Lock()

    def admit(self, retry: bool) -> float | str:
        with self._lock:
            self.threads.add(threading.current_thread().name)
            self.times.append(time.time())
            if self.stops:
                return self.stops[0]
            if self.allowed is not None and self.admitted >= self.allowed:
                return self.reason
            self.admitted += 1
            self.retries += retry
            return self.wait

    def stop(self, reason: str) -> None:
        with self._lock:
            self.stops.append(reason)


def run(emu: Emulator, kind: str, gate: CountingGate, photos: list[bytes]) -> list[Any]:
    """Every item of a face batch whose requests the gate admits, in input order."""

    def work(client: Any) -> Many[Any]:
        plans, _ = client._operation("face", "rgb", *FACE_DEFAULTS)
        return Many(BatchRun(photos, 2, None, False, gate=gate), plans)

    if kind == "sync":
        with emu.client() as client, client._open_stream(work(client)) as stream:
            return sorted(stream, key=lambda item: item.index)

    async def main() -> list[Any]:
        async with emu.async_client() as client, client._open_stream(work(client)) as stream:
            return sorted([item async for item in stream], key=lambda item: item.index)

    return anyio.run(main)


@pytest.fixture
def face_emu(emu: Emulator) -> Emulator:
    emu.reply("face", faces=[make_face(10, 10, 40, 40)], times=None)
    return emu


@pytest.mark.parametrize("kind", KINDS)
def test_the_gate_admits_every_request_and_its_refusal_stops_the_batch(
    face_emu: Emulator, kind: str
) -> None:
    gate = CountingGate(allowed=3)
    items = run(face_emu, kind, gate, [noise_jpeg(i) for i in range(8)])
    answered = [item for item in items if item.ok]
    skipped = [item for item in items if isinstance(item.error, NotAttempted)]
    assert len(answered) == 3 == face_emu.calls() == gate.admitted
    assert len(skipped) == 5
    assert "max_calls" in str(skipped[0].error)  # the reason the gate gave, in the item's words
    assert gate.stops == []  # a refusal from the gate is not echoed back to it


@pytest.mark.parametrize("kind", KINDS)
def test_a_quota_answer_is_told_to_the_gate_so_other_holders_stop(
    face_emu: Emulator, kind: str
) -> None:
    face_emu.set_quota(2)
    gate = CountingGate()
    items = run(face_emu, kind, gate, [noise_jpeg(i) for i in range(6)])
    assert gate.stops and set(gate.stops) == {"quota"}
    assert sum(item.ok for item in items) == 2
    assert any(isinstance(item.error, QuotaExceededError) for item in items)
    # Whatever was not sent is "not attempted", not failed.
    rest = [item for item in items if not item.ok]
    assert all(isinstance(i.error, (QuotaExceededError, NotAttempted)) for i in rest)


def test_the_async_shell_asks_a_gate_from_a_worker_thread(face_emu: Emulator) -> None:
    # A gate may block (a remote call): never in the event loop's thread.
    gate = CountingGate()
    loop_thread: list[str] = []

    async def main() -> None:
        loop_thread.append(threading.current_thread().name)
        async with face_emu.async_client() as client:
            plans, _ = client._operation("face", "rgb", *FACE_DEFAULTS)
            work = Many(BatchRun([noise_jpeg(1), noise_jpeg(2)], 2, None, False, gate=gate), plans)
            async with client._open_stream(work) as stream:
                assert all([item.ok async for item in stream])

    anyio.run(main)
    assert gate.admitted == 2
    assert loop_thread[0] not in gate.threads


@pytest.mark.parametrize("kind", KINDS)
def test_the_gates_wait_is_slept_before_sending(face_emu: Emulator, kind: str) -> None:
    gate = CountingGate(wait=0.15)
    run(face_emu, kind, gate, [noise_jpeg(1)])
    (request,) = face_emu.requests
    # The one request went out after the gate's wait, never before it.
    assert request.received_at - gate.times[0] >= 0.15 - 0.01
