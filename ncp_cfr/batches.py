"""What the ``*_many`` methods return: one [`BatchItem`][ncp_cfr.BatchItem] per input, in a
[`Batch`][ncp_cfr.Batch] that Jupyter shows as a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ncp_cfr import _tables
from ncp_cfr.errors import CFRError

__all__ = ["Batch", "BatchItem", "BatchSummary"]

T = TypeVar("T")


@dataclass(frozen=True)
class BatchItem(Generic[T]):
    """One input's outcome in a ``*_many`` batch.

    Attributes:
        index: the input's position in the list given.
        source: the input as given; a path (``os.PathLike``) becomes its ``str``.
        result: the result, or ``None`` if it failed.
        error: the [`CFRError`][ncp_cfr.CFRError] it failed with (an ``ImageError`` for an input
            that could not be read, [`NotAttempted`][ncp_cfr.NotAttempted] for one the run
            stopped before), or ``None``.
        from_store: the outcome came from the result store: no call was paid for it.
    """

    index: int
    source: Any
    result: T | None = None
    error: CFRError | None = None
    from_store: bool = False

    @property
    def ok(self) -> bool:
        """Whether this input succeeded."""
        return self.error is None

    def unwrap(self) -> T:
        """The result, or raise the error."""
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def _row(self) -> list[str]:
        """Position, a label of the input, its face count and its error, as table cells."""
        faces = getattr(self.result, "faces", None)
        return [
            str(self.index),
            _label(self.source),
            _tables.NONE if faces is None else str(len(faces)),
            _tables.NONE if self.error is None else f"{type(self.error).__name__}: {self.error}",
        ]


@dataclass
class BatchSummary:
    """What a batch did, counted as it ran.

    Attributes:
        photos: inputs seen.
        answered: answered by the service in this run.
        from_store: answered from the result store, without a call.
        failed: failed (including permanent failures remembered by the store).
        not_attempted: never sent, because the run stopped first.
        calls: requests sent (each is paid for), retries included.
        retries: of those, the retries.
        elapsed: seconds from the start of the run to its end.
        stopped: why the run stopped early: ``"quota"`` (the service's quota is spent),
            ``"max_calls"`` (the budget given), ``"interrupted"``, or ``None``.
    """

    photos: int = 0
    answered: int = 0
    from_store: int = 0
    failed: int = 0
    not_attempted: int = 0
    calls: int = 0
    retries: int = 0
    elapsed: float = 0.0
    stopped: str | None = None

    def __str__(self) -> str:
        text = (
            f"{self.photos} photos: {self.answered} answered, {self.from_store} from the store, "
            f"{self.failed} failed, {self.not_attempted} not attempted; {self.calls} calls "
            f"({self.retries} retries) in {self.elapsed:.1f} s"
        )
        return text + (f"; stopped: {self.stopped}" if self.stopped else "")


class Batch(list[BatchItem[T]]):
    """What a `*_many` method returns: a plain `list` of [`BatchItem`][ncp_cfr.BatchItem]s, in
    input order, that also shows itself as a table in Jupyter.

    It is a `list` in every way (index it, loop over it, compare it with a list); the only
    addition is `_repr_html_`: one row per input with its position, its file (or the kind of
    object given) and its face count, or the error it failed with.
    """

    HEADER = ("#", "file", "faces", "error")
    #: What the batch did (answered, from the store, failed, calls paid...), once it is over.
    summary: BatchSummary | None = None

    def _repr_html_(self) -> str:
        failed = sum(1 for item in self if item.error is not None)
        caption = f"{len(self)} {'input' if len(self) == 1 else 'inputs'}: "
        caption += f"{len(self) - failed} succeeded, {failed} failed"
        rows = [item._row() for item in self]
        return _tables.html_table("ncp-cfr-batch", caption, self.HEADER, rows, empty="no inputs")


def _label(source: Any) -> str:
    """A batch input as a short label: a path as given, otherwise what kind of object it was."""
    if isinstance(source, str):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"bytes ({len(source)} B)"
    size = getattr(source, "size", None)
    if isinstance(size, tuple) and hasattr(source, "mode"):  # a PIL image
        return f"image {size[0]}x{size[1]}"
    shape = getattr(source, "shape", None)
    if isinstance(shape, tuple):
        return f"array {'x'.join(map(str, shape))}"
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return name
    return type(source).__name__
