"""The emulator as a foreground HTTP server, for any HTTP client: ``ncp-cfr emulator --port 8080``.

```python
from ncp_cfr.testing.standalone import serve

serve(port=8080)  # blocks until Ctrl-C
```

It serves the CFR protocol on ``http://127.0.0.1:8080`` (``/vision/v1/face``,
``/vision/v1/celebrity``) with the real face detector when one is installed, and prints the
``NCP_CFR_*`` variables that point the SDK, the CLI or your own code at it. Requests are recorded
without their images and only the newest [`MAX_RECORDED`][ncp_cfr.testing.standalone.MAX_RECORDED]
are kept, so it can run for days.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from ncp_cfr.protocol import ENV_BASE_URL, ENV_CLIENT_ID, ENV_CLIENT_SECRET
from ncp_cfr.testing.emulator import FAKE_CLIENT_ID, FAKE_CLIENT_SECRET, Emulator
from ncp_cfr.testing.rules import Detector
from ncp_cfr.testing.server import DEFAULT_MAX_WORKERS, DEFAULT_READ_TIMEOUT

__all__ = ["MAX_RECORDED", "serve"]

#: Recorded requests kept by the standalone server (the newest ones).
MAX_RECORDED = 1000


def _keys(
    client_id: str | None, client_secret: str | None, log: Callable[[str], object]
) -> tuple[str, str, bool]:
    """The key pair to accept, and whether it is the fake default pair (safe to print)."""
    client_id = client_id or os.environ.get(ENV_CLIENT_ID) or None
    client_secret = client_secret or os.environ.get(ENV_CLIENT_SECRET) or None
    if client_id is None and client_secret is None:
        log(
            f"note: no keys given (options or {ENV_CLIENT_ID} / {ENV_CLIENT_SECRET}): "
            "accepting the fake default keys"
        )
        return FAKE_CLIENT_ID, FAKE_CLIENT_SECRET, True
    if client_id is None:
        log(f"note: no key ID given: accepting {ENV_CLIENT_ID}={FAKE_CLIENT_ID}")
    if client_secret is None:
        log(f"note: no secret given: accepting {ENV_CLIENT_SECRET}={FAKE_CLIENT_SECRET}")
    return client_id or FAKE_CLIENT_ID, client_secret or FAKE_CLIENT_SECRET, False


def _detector(
    detector: str | Detector | None, log: Callable[[str], object]
) -> tuple[Detector | None, str]:
    """The detector to serve with and its name for the banner."""
    if detector is None or detector == "none":
        return None, "none"
    if not isinstance(detector, str):
        return detector, "custom"
    from ncp_cfr.testing.detector import DetectorUnavailableError, load_detector

    try:
        loaded = load_detector(detector)
    except DetectorUnavailableError:
        if detector != "auto":
            raise
        # The default should start anywhere: without a detector it still serves the protocol.
        log('note: no face detector installed (pip install "clova-face[emulator]"): no faces found')
        return None, "none"
    return loaded, loaded.backend


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    client_id: str | None = None,
    client_secret: str | None = None,
    detector: str | Detector | None = "auto",
    gallery: Mapping[str, str | os.PathLike[str]] | None = None,
    latency: float = 0.0,
    log: Callable[[str], object] = print,
    ready: Callable[[str], object] | None = None,
    stop: threading.Event | None = None,
    max_recorded: int | None = MAX_RECORDED,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    max_workers: int = DEFAULT_MAX_WORKERS,
    quota: int | None = None,
) -> None:
    """Run the emulator on ``host:port`` in the foreground until Ctrl-C (or ``stop`` is set).

    Args:
        host: the interface to listen on (loopback by default: keep it so).
        port: the port; ``0`` picks a free one (see ``ready`` and the printed line).
        client_id: the key ID to accept; default ``NCP_CFR_CLIENT_ID``, else the fake default.
        client_secret: the key to accept; default ``NCP_CFR_CLIENT_SECRET``, else the fake default.
            Never printed.
        detector: ``"auto"`` (the real detector if installed, else none, with a note),
            a backend name (an error if missing), a detector function, or ``"none"`` / ``None``
            (the face endpoint answers no faces unless a scenario says otherwise).
        gallery: ``{name: photo path}`` answering the celebrity endpoint (see
            [`Gallery`][ncp_cfr.testing.Gallery]); needs a detector.
        latency: seconds added to every answer.
        log: where the banner and notes go (one line each).
        ready: called with the base URL once the server accepts connections.
        stop: set it to shut the server down (from another thread).
        max_recorded: recorded requests kept in memory (the newest; ``None``: all).
        read_timeout: seconds a request may take to arrive whole, and a connection may stay
            idle, before the connection is closed.
        max_workers: requests answered at the same time (threads); more connections wait.
        quota: answer this many calls with 200, then the gateway's quota answer (HTTP 429,
            ``Quota Exceeded``) to every call until the server restarts (``None``: no cap).

    Raises:
        OSError: the port cannot be bound (in use, or not allowed).
        DetectorUnavailableError: a named detector backend is not installed.
    """
    accepted_id, accepted_secret, fake = _keys(client_id, client_secret, log)
    found, backend = _detector(detector, log)
    people = None
    if gallery:
        from ncp_cfr.testing.gallery import Gallery

        people = Gallery(dict(gallery))
        if found is None:
            log("note: the gallery is not used without a face detector")
    emulator = Emulator(
        accepted_id,
        accepted_secret,
        latency=latency,
        detector=found,
        gallery=people,
        host=host,
        port=port,
        record_images=False,  # a long-running server must not keep every upload
        max_recorded=max_recorded,
        read_timeout=read_timeout,
        max_workers=max_workers,
        quota=quota,
    )
    stopping = stop or threading.Event()
    restore = _on_sigterm(stopping)
    emulator.start()
    try:
        url = emulator.base_url
        shown_id = accepted_id if fake else "<as set>"
        shown_secret = accepted_secret if fake else "<as set>"
        if quota is not None:
            log(f"note: a quota of {quota} calls: later calls get HTTP 429 Quota Exceeded")
        log(
            f"CFR emulator (detector: {backend}) on {url}; export {ENV_BASE_URL}={url} "
            f"{ENV_CLIENT_ID}={shown_id} {ENV_CLIENT_SECRET}={shown_secret}; Ctrl-C stops it"
        )
        if ready is not None:
            ready(url)
        # Wake up regularly rather than block forever: Ctrl-C is only delivered between waits.
        while not stopping.wait(0.25):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        restore()
        log(f"CFR emulator stopped after {emulator.rules.handled} requests")


def _on_sigterm(stopping: threading.Event) -> Callable[[], None]:
    """Let SIGTERM (``kill``, ``docker stop``) shut down cleanly too; returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signal handlers can only be set from the main thread

    def handler(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous: Any = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
