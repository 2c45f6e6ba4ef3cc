"""The emulator in-process: an httpx transport (sync and async) around
[`Rules`][ncp_cfr.testing.rules.Rules].
"""

from __future__ import annotations

import time

import anyio
import httpx

from ncp_cfr.testing.rules import Answer, Rules

__all__ = ["EmulatorTransport"]


class EmulatorTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Answers requests with the emulator's rules, without a socket.

    Works for both ``httpx.Client(transport=...)`` and ``httpx.AsyncClient(transport=...)``.
    Injected delays sleep (``time.sleep`` or ``anyio.sleep``), so client timeouts do not apply
    here: use the loopback server to test timeouts.
    """

    def __init__(self, rules: Rules) -> None:
        self.rules = rules

    def _answer(self, request: httpx.Request, body: bytes) -> Answer:
        return self.rules.handle(request.method, request.url.path, dict(request.headers), body)

    @staticmethod
    def _response(answer: Answer, request: httpx.Request) -> httpx.Response:
        if answer.drop:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return httpx.Response(
            answer.status, headers=dict(answer.headers), content=answer.body, request=request
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.rules.enter()
        try:
            answer = self._answer(request, request.read())
            if answer.delay:
                time.sleep(answer.delay)
            return self._response(answer, request)
        finally:
            self.rules.leave()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.rules.enter()
        try:
            answer = self._answer(request, await request.aread())
            if answer.delay:
                await anyio.sleep(answer.delay)
            return self._response(answer, request)
        finally:
            self.rules.leave()
