"""``Emulator``: the CFR service on your machine, for tests, demos and offline work."""

from __future__ import annotations

import contextlib
import json
import threading
import warnings
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from ncp_cfr.clients import AsyncClient, Client
from ncp_cfr.errors import CFRError, InvalidArgumentError
from ncp_cfr.models import CelebrityResult, FaceResult
from ncp_cfr.protocol import ENV_BASE_URL, ENV_CLIENT_ID, ENV_CLIENT_SECRET, Endpoint
from ncp_cfr.testing.rules import (
    Detector,
    JSONBody,
    Match,
    Recognizer,
    RecordedRequest,
    Rules,
    error_envelope,
    make_reply,
    reply_body,
)
from ncp_cfr.testing.server import DEFAULT_MAX_WORKERS, DEFAULT_READ_TIMEOUT, LoopbackServer
from ncp_cfr.testing.transport import EmulatorTransport

if TYPE_CHECKING:
    from PIL import Image

    from ncp_cfr.testing.gallery import Gallery

__all__ = ["FAKE_CLIENT_ID", "FAKE_CLIENT_SECRET", "Emulator", "EmulatorNotRunningError"]

#: Obvious fake credentials: the emulator's defaults.
FAKE_CLIENT_ID = "fake-client-id"
FAKE_CLIENT_SECRET = "fake-client-secret"
_IN_PROCESS_URL = "http://emulator.invalid"
_warned_no_detector = False


def _resolve_detector(detector: Detector | str | None) -> Detector | None:
    """What ``Emulator(detector=...)`` means (see its docstring)."""
    if detector is None or detector == "none":
        return None
    if detector == "auto":
        return _AutoDetector()
    if isinstance(detector, str):
        from ncp_cfr.testing.detector import load_detector

        return load_detector(detector)
    return detector


class _AutoDetector:
    """The installed detector, loaded on first use; no faces (and one warning) without one.

    Loading costs a few tenths of a second: an emulator answered by scenarios never pays it.
    """

    def __init__(self, *, attributes: bool = True) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self._detector: Detector | None = None
        self._attributes = attributes

    def without_attributes(self) -> _AutoDetector:
        """The same, without measuring gender and age (for the gallery, which needs faces only)."""
        return _AutoDetector(attributes=False)

    def __repr__(self) -> str:
        return f"auto({self._detector!r})" if self._loaded else "auto(not loaded yet)"

    def __call__(self, image: Image.Image) -> list[dict[str, Any]]:
        detector = self.load()
        return detector(image) if detector is not None else []

    def load(self) -> Detector | None:
        """The real detector, or ``None`` when none is installed."""
        with self._lock:  # concurrent first requests load it once
            if not self._loaded:
                from ncp_cfr.testing.detector import DetectorUnavailableError, load_detector

                try:
                    self._detector = load_detector(
                        "auto", attributes="auto" if self._attributes else None
                    )
                except DetectorUnavailableError as exc:
                    _warn_no_detector(exc)
                self._loaded = True
        return self._detector


def _warn_no_detector(exc: Exception) -> None:
    global _warned_no_detector
    if _warned_no_detector:
        return
    _warned_no_detector = True
    # A filter may turn it into an error, on a server thread: the request is still answered.
    with contextlib.suppress(Exception):
        warnings.warn(
            f'the emulator answers no faces by default: {exc}. Pass detector="none" to '
            "answer only scenarios and faults without this warning.",
            UserWarning,
            stacklevel=4,
        )


class EmulatorNotRunningError(CFRError, RuntimeError):
    """The emulator was used before ``with Emulator() as emu:`` started it (or after it stopped)."""


class Emulator:
    """An emulated CFR service: a real loopback server, or an in-process httpx transport.

    ```python
    with Emulator() as emu, emu.client() as client:
        emu.reply("face", faces=[make_face(40, 40, 100, 100, gender="female")])
        result = client.detect_faces("photo.jpg")
    ```

    It checks what the service checks (the two key headers, the multipart field ``image``,
    2,000,000 bytes, JPEG/PNG, 50 px minimum, width < 4 x height) and answers with the same
    error bodies. Beyond that it answers, in this order:

    0. once a ``quota`` is spent, the API gateway's quota answer (HTTP 429, gateway code
       ``400`` ``Quota Exceeded``) to every call with valid keys;
    1. an injected fault ([`inject`][ncp_cfr.testing.Emulator.inject]), checked right after the
       keys, as the gateway would;
    2. a scenario ([`reply`][ncp_cfr.testing.Emulator.reply]) for the endpoint, the next call or a
       matching image;
    3. the default: the ``detector`` (real detection by default, see below) and the
       ``recognizer`` or ``gallery``; without them, **no faces**. The emulator never invents
       gender, age, emotion or celebrity values that no scenario declared: a real detector sends
       them as ``"unknown"``, and a gallery only answers the names registered in it.

    **Detection by default.** ``detector="auto"`` (the default) finds real faces with the
    detector of the ``emulator`` extra, loaded on the first face request that reaches the default
    (so a test answered by scenarios and faults never pays for it). When no detector is installed
    it answers no faces, and says so once per process with a ``UserWarning``.
    ``detector="none"`` (``None`` means the same) is the scripted-only mode: scenarios and
    faults, and no faces otherwise. A backend name (``"yuface"``,
    ``"mtcnn"``) is loaded at once and raises
    [`DetectorUnavailableError`][ncp_cfr.testing.detector.DetectorUnavailableError] if it is
    missing.

    **A quota**, as an NCP customer sets one per day or month: ``Emulator(quota=1000)`` or
    [`set_quota`][ncp_cfr.testing.Emulator.set_quota] answers 1,000 calls with 200 and every
    later call with the gateway's quota answer, until
    [`reset_quota`][ncp_cfr.testing.Emulator.reset_quota] starts a new day. Only 200 answers
    count against it, as only they are paid for; [`answered`][ncp_cfr.testing.Emulator.answered]
    says how many there were.

    **Malformed requests** on the loopback server get the gateway's JSON envelope, never an HTML
    page or silence: a bad ``Content-Length`` (``abc``, ``-5``), an unsupported
    ``Transfer-Encoding``, a malformed chunk or request line: 400 with gateway code ``100``
    ``Bad Request Exception`` (connection closed); any method but POST (HEAD, PATCH, OPTIONS ...)
    or unknown path: 404 with gateway code ``300`` ``Not Found Exception``, the gateway's answer
    to a method no resource defines (HEAD without the body); a body over 10 MiB: 413, code
    ``430``. Chunked uploads are read like any other (same size cap). A request not received
    whole within ``read_timeout`` seconds of its first byte, or a connection silent that long,
    is closed without an answer. At most ``max_workers`` requests are answered at once, each on
    a pooled thread; further connections wait without a thread of their own.

    Args:
        client_id: the key ID it accepts (default ``ncp_cfr.testing.FAKE_CLIENT_ID``).
        client_secret: the key it accepts (default ``ncp_cfr.testing.FAKE_CLIENT_SECRET``).
        latency: seconds added to every answer (to test concurrency and timeouts).
        detector: ``"auto"`` (real detection if installed, else no faces), ``"none"`` or
            ``None`` (scripted only), a backend name ``"yuface"`` / ``"mtcnn"`` (see
            [`load_detector`][ncp_cfr.testing.load_detector]; needs the ``emulator`` extra), or a
            function ``f(PIL.Image) -> [face dict]`` answering the face endpoint by default.
        recognizer: ``f(PIL.Image) -> [celebrity dict]`` answering the celebrity endpoint.
        gallery: a [`Gallery`][ncp_cfr.testing.Gallery] answering the celebrity endpoint
            with its names, finding faces with ``detector`` (without a detector both endpoints
            answer no faces); not with ``recognizer``.
        host: the loopback server's address (default 127.0.0.1).
        port: the loopback server's port (0: any free port).
        record_images: keep the uploaded bytes on each recorded request.
        max_recorded: keep only the newest this many recorded requests (``None``: all).
        read_timeout: seconds a request may take to arrive whole on the loopback server, and a
            connection may stay idle, before it is closed (default 10).
        max_workers: requests the loopback server answers at the same time (default 32); more
            wait. Raise it to test more concurrent calls with ``latency``.
        quota: answer at most this many calls with 200 until
            [`reset_quota`][ncp_cfr.testing.Emulator.reset_quota], then the gateway's quota
            answer (``None``: no cap).
    """

    def __init__(
        self,
        client_id: str = FAKE_CLIENT_ID,
        client_secret: str = FAKE_CLIENT_SECRET,
        *,
        latency: float = 0.0,
        detector: Detector | str | None = "auto",
        recognizer: Recognizer | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        record_images: bool = True,
        gallery: Gallery | None = None,
        max_recorded: int | None = None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_workers: int = DEFAULT_MAX_WORKERS,
        quota: int | None = None,
    ) -> None:
        detector = _resolve_detector(detector)
        if gallery is not None:
            if recognizer is not None:
                raise InvalidArgumentError("pass either recognizer= or gallery=, not both")
            if detector is not None:  # no detector, no faces: on both endpoints alike
                recognizer = gallery.recognizer(detector)
        self.rules = Rules(
            client_id,
            client_secret,
            latency=latency,
            detector=detector,
            recognizer=recognizer,
            record_images=record_images,
            max_recorded=max_recorded,
            quota=quota,
        )
        self._host = host
        self._port = port
        self._read_timeout = read_timeout
        self._max_workers = max_workers
        self._server: LoopbackServer | None = None

    def __repr__(self) -> str:
        where = self._server.base_url if self._server else "not started"
        return f"Emulator({where}, {len(self.requests)} requests)"

    # -- running -----------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Start the loopback server (``with Emulator() as emu`` does this)."""
        if self._server is None:
            self._server = LoopbackServer(
                self.rules,
                self._host,
                self._port,
                read_timeout=self._read_timeout,
                max_workers=self._max_workers,
            )
            self._server.start()
        return self

    def stop(self) -> None:
        """Stop the loopback server."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running server."""
        if self._server is None:
            raise EmulatorNotRunningError(
                "the emulator is not running: use `with Emulator() as emu:`"
            )
        return self._server.base_url

    @property
    def client_id(self) -> str:
        return self.rules.client_id

    @property
    def client_secret(self) -> str:
        return self.rules.client_secret

    def env(self) -> dict[str, str]:
        """The ``NCP_CFR_*`` variables that point a client (or the CLI) at this emulator."""
        return {
            ENV_CLIENT_ID: self.client_id,
            ENV_CLIENT_SECRET: self.client_secret,
            ENV_BASE_URL: self.base_url,
        }

    def transport(self) -> EmulatorTransport:
        """An httpx transport answering in-process: ``httpx.Client(transport=emu.transport())``."""
        return EmulatorTransport(self.rules)

    def client(self, *, in_process: bool = False, **options: Any) -> Client:
        """A [`Client`][ncp_cfr.Client] for this emulator (loopback HTTP unless ``in_process``).

        ``options`` go to the client (``max_retries=0``, ``timeout=1``, even another
        ``client_secret`` to test refused keys).
        """
        args = self._client_args(options)
        if not in_process:
            return Client(**args, base_url=self.base_url)
        # The in-process transport holds no socket or thread: the pool needs no closing, so it
        # can be the caller's in the client's eyes.
        http = httpx.Client(transport=self.transport())
        return Client(**args, base_url=_IN_PROCESS_URL, http_client=http)

    def async_client(self, *, in_process: bool = False, **options: Any) -> AsyncClient:
        """An [`AsyncClient`][ncp_cfr.AsyncClient] for this emulator; see
        [`client`][ncp_cfr.testing.Emulator.client].
        """
        args = self._client_args(options)
        if not in_process:
            return AsyncClient(**args, base_url=self.base_url)
        http = httpx.AsyncClient(transport=self.transport())
        return AsyncClient(**args, base_url=_IN_PROCESS_URL, http_client=http)

    def _client_args(self, options: dict[str, Any]) -> dict[str, Any]:
        return {"client_id": self.client_id, "client_secret": self.client_secret, **options}

    # -- scenarios ---------------------------------------------------------------------------------

    def reply(
        self,
        endpoint: Endpoint | str,
        body: JSONBody | FaceResult | CelebrityResult | None = None,
        *,
        faces: Sequence[Mapping[str, Any]] | None = None,
        match: Match = None,
        times: int | None = 1,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Declare the answer to the next call (or ``times`` calls; ``None``: every call).

        Args:
            endpoint: ``"face"`` or ``"celebrity"``.
            body: the whole JSON answer (coordinates in the *upload's* pixels, as the service's).
            faces: just the faces (see [`make_face`][ncp_cfr.testing.make_face],
                [`make_celebrity`][ncp_cfr.testing.make_celebrity]); ``info`` is then computed from
                the uploaded image.
            match: answer only uploads equal to these bytes, or for which
                ``match(recorded_request)`` is true (it can look at ``request.image``).
        """
        data, fill = reply_body(body, faces)
        self.rules.add_reply(
            make_reply(
                endpoint,
                status=status,
                body=data,
                headers=headers,
                match=match,
                times=times,
                fill_info=fill,
            ),
            fault=False,
        )

    def inject(
        self,
        error: str | None = None,
        *,
        status: int | None = None,
        body: JSONBody | bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | str | None = None,
        delay: float = 0.0,
        drop: bool = False,
        endpoint: Endpoint | str | None = None,
        times: int | None = 1,
        match: Match = None,
    ) -> None:
        """Inject a fault into the next call(s), before the image is even looked at.

        Args:
            error: a known code: ``"ER21"`` (CFR), ``"410"`` (gateway), ``"legacy:024"``; the
                status and body are the service's own.
            status: any status instead (with ``body``, or alone).
            body: any body instead (HTML, ``b""``, invalid JSON ...).
            retry_after: sent as the ``Retry-After`` header (seconds, or an HTTP date string).
            delay: wait this long first; without ``error``/``status`` the call then proceeds
                normally (a slow answer).
            drop: close the connection without answering (after ``delay``).
            endpoint: only for this endpoint (default: either).
            times: how many calls it hits (``None``: every call until
                [`reset`][ncp_cfr.testing.Emulator.reset]).
        """
        if error is not None:
            status_from_code, envelope = error_envelope(error)
            status = status if status is not None else status_from_code
            data = json.dumps(envelope, ensure_ascii=False).encode("utf-8") if body is None else b""
        else:
            data = b""
        if body is not None:
            data = reply_body(body, None)[0]
        all_headers = dict(headers or {})
        if retry_after is not None:
            all_headers["Retry-After"] = str(retry_after)
        if status is None and not drop:
            # A pure delay: hold the call, then let it through to the normal rules.
            self.rules.add_reply(
                make_reply(
                    endpoint,
                    status=0,
                    body=b"",
                    headers=None,
                    match=match,
                    times=times,
                    delay=delay,
                ),
                fault=True,
            )
            return
        self.rules.add_reply(
            make_reply(
                endpoint,
                status=status or 0,
                body=data,
                headers=all_headers,
                match=match,
                times=times,
                delay=delay,
                drop=drop,
            ),
            fault=True,
        )

    def reset(self) -> None:
        """Forget recorded requests, scenarios and faults (not the quota: see
        [`reset_quota`][ncp_cfr.testing.Emulator.reset_quota]).
        """
        self.rules.reset()

    # -- the quota ---------------------------------------------------------------------------------

    def set_quota(self, calls: int | None) -> None:
        """Answer at most ``calls`` calls with 200, then the gateway's quota answer to every call.

        ```python
        emu.set_quota(3)      # the 4th call on gets HTTP 429, gateway code 400 "Quota Exceeded":
        ...                   # the SDK raises QuotaExceededError, and a batch stops
        emu.reset_quota()     # the next day: 3 more
        ```

        The calls count from the emulator's start or the last
        [`reset_quota`][ncp_cfr.testing.Emulator.reset_quota], as NCP counts a day's calls
        however the cap was set: calls already answered count. ``None`` removes the cap.

        Raises:
            InvalidArgumentError: ``calls`` is not a whole number >= 0 or ``None``.
        """
        self.rules.set_quota(calls)

    def reset_quota(self) -> None:
        """Start a new quota period (NCP's caps reset at 00:00 KST): the count starts from 0, the
        cap stays.
        """
        self.rules.reset_quota()

    @property
    def quota(self) -> int | None:
        """The cap on 200 answers per period, or ``None``."""
        return self.rules.quota

    @property
    def answered(self) -> int:
        """Calls answered with 200 since the emulator was made: the calls a customer pays for
        (not reset by [`reset`][ncp_cfr.testing.Emulator.reset] or
        [`reset_quota`][ncp_cfr.testing.Emulator.reset_quota]).
        """
        return self.rules.answered

    # -- what was sent -----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, oldest first, key headers redacted."""
        return list(self.rules.requests)

    def calls(self, endpoint: Endpoint | str | None = None) -> int:
        """How many requests reached ``endpoint`` (default: any)."""
        if endpoint is None:
            return len(self.rules.requests)
        wanted = Endpoint(endpoint)
        return sum(1 for r in self.rules.requests if r.endpoint == wanted)

    @property
    def max_in_flight(self) -> int:
        """The most requests that were being answered at the same time."""
        return self.rules.max_in_flight

    @property
    def latency(self) -> float:
        """Seconds added to every answer."""
        return self.rules.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.rules.latency = seconds
