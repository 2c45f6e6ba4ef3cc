"""Small types shared across the package."""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["NOT_GIVEN", "NotGiven"]


class NotGiven:
    """The default of an option left as it is (``with_options``): unlike ``None``, which may be a
    value (``max_side=None`` means "no limit").

    Falsy, and shown as ``NOT_GIVEN`` in signatures and reprs.
    """

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        # One instance, so that ``is NOT_GIVEN`` holds even after copy or pickling.
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()
