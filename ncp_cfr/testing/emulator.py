"""``Emulator``: the CFR service on your machine, for tests, demos and offline work."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from ncp_cfr.client import AsyncClient, Client
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
from ncp_cfr.testing.server import LoopbackServer
from ncp_cfr.testing.transport import EmulatorTransport

if TYPE_CHECKING:
    from ncp_cfr.testing.gallery import Gallery

__all__ = ["FAKE_CLIENT_ID", "FAKE_CLIENT_SECRET", "Emulator"]

#: Obvious fake credentials: the emulator's defaults.
FAKE_CLIENT_ID = "fake-client-id"
FAKE_CLIENT_SECRET = "fake-client-secret"
_IN_PROCESS_URL = "http://emulator.invalid"


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

    1. an injected fault (:meth:`inject`), checked right after the keys, as the gateway would;
    2. a scenario (:meth:`reply`) for the endpoint, the next call or a matching image;
    3. the default: ``detector`` / ``recognizer`` (or ``gallery``) if given, else **no faces**.
       The emulator never invents gender, age, emotion or celebrity values that no scenario
       declared: a real detector (``detector="auto"``) sends them as ``"unknown"``, and a gallery
       only answers the names registered in it.

    Args:
        client_id: the key ID it accepts (default :data:`FAKE_CLIENT_ID`).
        client_secret: the key it accepts (default :data:`FAKE_CLIENT_SECRET`).
        latency: seconds added to every answer (to test concurrency and timeouts).
        detector: ``f(PIL.Image) -> [face dict]`` answering the face endpoint by default, or the
            name of a real detector: ``"auto"``, ``"yuface"``, ``"mtcnn"`` (see
            :func:`~ncp_cfr.testing.detector.load_detector`; needs ``ncp_cfr[emulator]``).
        recognizer: ``f(PIL.Image) -> [celebrity dict]`` answering the celebrity endpoint.
        gallery: a :class:`~ncp_cfr.testing.gallery.Gallery` answering the celebrity endpoint
            with its names, finding faces with ``detector`` (without a detector both endpoints
            answer no faces); not with ``recognizer``.
        host: the loopback server's address (default 127.0.0.1).
        port: the loopback server's port (0: any free port).
        record_images: keep the uploaded bytes on each recorded request.
        max_recorded: keep only the newest this many recorded requests (``None``: all).
    """

    def __init__(
        self,
        client_id: str = FAKE_CLIENT_ID,
        client_secret: str = FAKE_CLIENT_SECRET,
        *,
        latency: float = 0.0,
        detector: Detector | str | None = None,
        recognizer: Recognizer | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        record_images: bool = True,
        gallery: Gallery | None = None,
        max_recorded: int | None = None,
    ) -> None:
        if isinstance(detector, str):
            from ncp_cfr.testing.detector import load_detector

            detector = load_detector(detector)
        if gallery is not None:
            if recognizer is not None:
                raise ValueError("pass either recognizer= or gallery=, not both")
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
        )
        self._host = host
        self._port = port
        self._server: LoopbackServer | None = None

    def __repr__(self) -> str:
        where = self._server.base_url if self._server else "not started"
        return f"Emulator({where}, {len(self.requests)} requests)"

    # -- running -----------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Start the loopback server (``with Emulator() as emu`` does this)."""
        if self._server is None:
            self._server = LoopbackServer(self.rules, self._host, self._port)
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
            raise RuntimeError("the emulator is not running: use `with Emulator() as emu:`")
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
        """A :class:`~ncp_cfr.Client` for this emulator (loopback HTTP unless ``in_process``).

        ``options`` go to the client (``max_retries=0``, ``timeout=1``, even another
        ``client_secret`` to test refused keys).
        """
        args = self._client_args(options)
        if not in_process:
            return Client(**args, base_url=self.base_url)
        client = Client(
            **args, base_url=_IN_PROCESS_URL, http_client=httpx.Client(transport=self.transport())
        )
        client._owns_http = True  # made here for this client: close it with the client
        return client

    def async_client(self, *, in_process: bool = False, **options: Any) -> AsyncClient:
        """An :class:`~ncp_cfr.AsyncClient` for this emulator; see :meth:`client`."""
        args = self._client_args(options)
        if not in_process:
            return AsyncClient(**args, base_url=self.base_url)
        http = httpx.AsyncClient(transport=self.transport())
        client = AsyncClient(**args, base_url=_IN_PROCESS_URL, http_client=http)
        client._owns_http = True
        return client

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
            faces: just the faces (see :func:`make_face`, :func:`make_celebrity`); ``info`` is
                then computed from the uploaded image.
            match: answer only uploads equal to these bytes, or for which
                ``match(recorded_request)`` is true (it can look at ``request.image``).
        """
        data, fill = reply_body(body, faces)
        self.rules.add_reply(
            make_reply(endpoint, status=status, body=data, headers=headers, match=match,
                       times=times, fill_info=fill),
            fault=False,
        )  # fmt: skip

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
            times: how many calls it hits (``None``: every call until :meth:`reset`).
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
                make_reply(endpoint, status=0, body=b"", headers=None, match=match, times=times,
                           delay=delay),
                fault=True,
            )  # fmt: skip
            return
        self.rules.add_reply(
            make_reply(endpoint, status=status or 0, body=data, headers=all_headers, match=match,
                       times=times, delay=delay, drop=drop),
            fault=True,
        )  # fmt: skip

    def reset(self) -> None:
        """Forget recorded requests, scenarios and faults."""
        self.rules.reset()

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
