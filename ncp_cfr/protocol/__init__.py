"""The CFR protocol as pure code: settings, requests, answers, errors and retries.

Nothing here touches a socket, a clock or an event loop, and nothing here knows about images:
a request carries bytes and a content type, an answer is a status, headers and bytes. The sync
and async clients drive a [`Call`][ncp_cfr.protocol.Call] and differ only in how they send and
sleep, so every decision about what to send, what an answer means and whether to try again is
made once, here. The rules it follows are the docs' Protocol page (``docs/protocol.md``); how its
modules divide the work is in "How it fits together" (``docs/architecture.md``).
"""

from ncp_cfr.protocol._answers import (
    MAX_ANSWER_BYTES,
    AnswerReader,
    Lowered,
    attempt_timeout_error,
    error_from_response,
    header,
    lowered,
    parse_result,
    request_id,
)
from ncp_cfr.protocol._calls import (
    Call,
    Decision,
    Done,
    Fail,
    Retry,
    backoff,
    is_retryable,
)
from ncp_cfr.protocol._requests import (
    ACCEPT_ENCODING,
    HEADER_KEY,
    HEADER_KEY_ID,
    USER_AGENT,
    Request,
    build_request,
    redact_headers,
)
from ncp_cfr.protocol._settings import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    ENV_BASE_URL,
    ENV_CLIENT_ID,
    ENV_CLIENT_SECRET,
    MAX_RETRY_AFTER,
    Endpoint,
    Settings,
    resolve_settings,
)

__all__ = [
    "ACCEPT_ENCODING",
    "DEFAULT_BASE_URL",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "ENV_BASE_URL",
    "ENV_CLIENT_ID",
    "ENV_CLIENT_SECRET",
    "HEADER_KEY",
    "HEADER_KEY_ID",
    "MAX_ANSWER_BYTES",
    "MAX_RETRY_AFTER",
    "USER_AGENT",
    "AnswerReader",
    "Lowered",
    "Call",
    "Decision",
    "Done",
    "Endpoint",
    "Fail",
    "Request",
    "Retry",
    "Settings",
    "attempt_timeout_error",
    "backoff",
    "build_request",
    "error_from_response",
    "header",
    "lowered",
    "is_retryable",
    "parse_result",
    "redact_headers",
    "request_id",
    "resolve_settings",
]
