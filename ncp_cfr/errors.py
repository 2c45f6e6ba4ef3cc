"""The exception tree: everything ``ncp_cfr`` raises is a [`CFRError`][ncp_cfr.CFRError].

```
CFRError
├── InvalidArgumentError (also ValueError, TypeError)
│                                         an argument the caller passed is wrong; nothing was sent
├── ImageError (also ValueError)          the image could not be prepared; nothing was sent
├── FontError (also ValueError)           a font given explicitly could not be loaded
├── APIConnectionError                    no answer: connection refused, reset, DNS, TLS ...
│   └── APITimeoutError                   no answer in time
└── APIError                              the service answered with an error
    ├── AuthenticationError               401, gateway 200, legacy 024
    ├── PermissionDeniedError             403, gateway 210/230
    ├── NotFoundError                     404, gateway 300
    ├── BadRequestError                   ER01-ER03, gateway 100, other 4xx
    │   └── InvalidImageError             ER11-ER15
    │       └── ImageTooLargeError        ER04, gateway 430, HTTP 413
    ├── QuotaExceededError                gateway 400, legacy 010: a quota, waiting does not help
    ├── RateLimitError                    gateway 410/420, other 429 (retried)
    └── ServerError                       ER21/22/92/99, 5xx, unreadable or oversized answers
                                          (retried)
```

Messages never contain credentials: the only text an error carries is what the service sent in its
body (which never echoes the key headers) and what the SDK wrote itself.
"""

from __future__ import annotations

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CFRError",
    "FontError",
    "ImageError",
    "ImageTooLargeError",
    "InvalidArgumentError",
    "InvalidImageError",
    "NotAttempted",
    "NotFoundError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "ServerError",
    "StoreError",
]


class CFRError(Exception):
    """Base class of every exception raised by ``ncp_cfr``."""


class InvalidArgumentError(CFRError, ValueError, TypeError):
    """An argument is out of range, unknown or of the wrong type. Raised before anything is sent.

    It is also a ``ValueError`` and a ``TypeError``, so code written to catch the built-in
    exceptions keeps working; the message names the argument, what it got and what it takes.
    """


class ImageError(CFRError, ValueError):
    """An image could not be read or prepared for upload. Raised before anything is sent."""


class FontError(CFRError, ValueError):
    """A font given explicitly (``font=`` or ``NCP_CFR_FONT``) could not be loaded."""


class StoreError(CFRError):
    """A result store cannot be used: not an SQLite file, from a newer version, or not writable.

    Raised before any call is paid; the message names the file and what to do.
    """


class NotAttempted(CFRError):
    """A photo of a batch that was never sent: the run stopped first (quota spent, ``max_calls``
    reached, or an interrupt). Running the same batch again resumes with it.
    """


class APIConnectionError(CFRError):
    """The request got no HTTP answer (connection refused or dropped, DNS or TLS failure)."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The URL that was being called (never contains credentials: they travel in headers).
        self.url = url


class APITimeoutError(APIConnectionError):
    """The request did not complete within the configured timeout."""


class APIError(CFRError):
    """The service answered with an error.

    Attributes:
        status_code: the HTTP status of the answer.
        code: the service's error code as a string (``"ER04"``, ``"210"``, ``"024"``), or ``None``
            when the body carried none (HTML or empty bodies from a proxy).
        message: the service's message (CFR messages carry Korean text; match on ``code``).
        details: the gateway's ``details`` text, when it sent one.
        request_id: the request id header of the answer, when there was one.
        body: the raw response body, decoded as text (truncated to 2,000 characters).
        code_kind: where ``code`` comes from: ``"cfr"`` (the CFR service's ``ER..`` codes),
            ``"gateway"`` (the NCP API gateway), ``"legacy"`` (the NAVER Developers channel), or
            ``None``. It only labels the code in the message: "HTTP 401, gateway code 200: ...".
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        details: str | None = None,
        request_id: str | None = None,
        body: str | None = None,
        hint: str | None = None,
        code_kind: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id
        self.body = body
        self.hint = hint
        self.code_kind = code_kind
        super().__init__(self._text())

    def _text(self) -> str:
        head = f"HTTP {self.status_code}"
        if self.code is not None:
            kind = self.code_kind or ("cfr" if self.code.startswith("ER") else None)
            head += f", {_CODE_LABELS.get(kind or '', 'code')} {self.code}"
        text = f"{head}: {self.message}"
        if self.details:
            text += f" ({self.details})"
        if self.hint:
            text += f". {self.hint}"
        if self.request_id:
            text += f" [request id {self.request_id}]"
        return text

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keyword-only constructor: teach pickle (multiprocessing, pytest-xdist) to rebuild it.
        return (_rebuild, (type(self), str(self), self.__dict__))


_CODE_LABELS = {"cfr": "CFR code", "gateway": "gateway code", "legacy": "legacy code"}


def _rebuild(cls: type[APIError], text: str, state: dict[str, object]) -> APIError:
    error = cls.__new__(cls)
    Exception.__init__(error, text)
    error.__dict__.update(state)
    return error


class AuthenticationError(APIError):
    """The key pair was refused (HTTP 401, gateway 200, legacy 024)."""


class PermissionDeniedError(APIError):
    """The key is valid but may not use this API (gateway 210/230, HTTP 403)."""


class NotFoundError(APIError):
    """The URL does not exist (gateway 300, HTTP 404): check ``base_url``."""


class BadRequestError(APIError):
    """The service rejected the request (ER01-ER03, gateway 100, other 4xx)."""


class InvalidImageError(BadRequestError):
    """The service rejected the image itself (ER11-ER15)."""


class ImageTooLargeError(InvalidImageError):
    """The upload was over the size limit (ER04, gateway 430, HTTP 413)."""


class QuotaExceededError(APIError):
    """The daily or monthly quota set for the application is used up. Retrying does not help."""


class RateLimitError(APIError):
    """Too many requests in a short time (gateway 410/420, other 429). Retried with backoff."""


class ServerError(APIError):
    """The service failed or was busy (ER21/22/92/99, any 5xx). Retried with backoff."""
