"""A loopback emulator for benchmarks, in a child process (or in this one, to compare).

In the same process the emulator's per-request work (multipart parsing, JPEG decoding, JSON)
competes with the client for the GIL, which inflates whatever the client does; a real service
runs elsewhere, so the benchmarks default to a child process.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Event

from ncp_cfr.testing import Emulator, make_face


def serve(latency: float, address: multiprocessing.Queue[object], stop: Event) -> None:
    """The child process: an emulator answering one face to every face call."""
    with Emulator(latency=latency, record_images=False, detector="none") as emu:
        emu.reply("face", faces=[make_face(40, 20, 60, 70)], times=None)
        address.put((emu.base_url, emu.client_id, emu.client_secret))
        stop.wait()
        address.put(emu.max_in_flight)


@contextmanager
def emulator(latency: float, in_process: bool) -> Iterator[tuple[dict[str, str], list[int]]]:
    """Client arguments for a running emulator, and (after exit) the most calls it had at once."""
    peak: list[int] = []
    if in_process:
        with Emulator(latency=latency, record_images=False, detector="none") as emu:
            emu.reply("face", faces=[make_face(40, 20, 60, 70)], times=None)
            yield (
                {
                    "client_id": emu.client_id,
                    "client_secret": emu.client_secret,
                    "base_url": emu.base_url,
                },
                peak,
            )
            peak.append(emu.max_in_flight)
        return
    address: multiprocessing.Queue[object] = multiprocessing.Queue()
    stop = multiprocessing.Event()
    child = multiprocessing.Process(target=serve, args=(latency, address, stop), daemon=True)
    child.start()
    try:
        base_url, client_id, client_secret = address.get(timeout=30)  # type: ignore[misc]
        yield {"client_id": client_id, "client_secret": client_secret, "base_url": base_url}, peak
        stop.set()
        peak.append(address.get(timeout=30))  # type: ignore[arg-type]
    finally:
        stop.set()
        child.join(timeout=10)
