"""The store itself: what a stored outcome holds, its key, and reading and writing them."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ncp_cfr.errors import InvalidArgumentError, StoreError
from ncp_cfr.store._file import _open, _store_error
from ncp_cfr.store._schema import (
    _COLUMNS,
    _PAGE,
    _SELECT,
    _UPSERT,
)


@dataclass(frozen=True)
class StoredResult:
    """One photo's stored outcome for one operation.

    Attributes:
        key: its [`request_key`][ncp_cfr.store.request_key].
        sha256: the SHA-256 (hex) of the photo's bytes as read.
        operation: ``"face"``, ``"celebrity"``, ``"analyze"`` or ``"lookalike"``.
        source: the file name as last given (``""`` for an input that was not a file).
        ok: ``True`` when ``result_json`` is the answer; ``False`` for a permanent failure.
        result_json: the SDK's result as JSON, ``result.model_dump_json(by_alias=True)``
            (coordinates in the caller's pixels), or ``None`` for a failure.
        raw_json: the service's own answer as received (``result.raw``), for the record.
        request_id: the service's request id of the answer, when it sent one.
        error_type: the failure's exception class name (``"InvalidImageError"``), or ``None``.
        error_message: the failure's message, or ``None``.
        calls: how many calls were paid for this photo.
        stored_at: when it was stored (``time.time()``). Set by
            [`ResultStore.put`][ncp_cfr.store.ResultStore.put] from the store's clock: the value
            passed in is replaced.
    """

    key: str
    sha256: str
    operation: str
    source: str
    ok: bool
    result_json: str | None
    raw_json: str | None
    request_id: str | None
    error_type: str | None
    error_message: str | None
    calls: int
    stored_at: float = 0.0


def content_hash(data: bytes) -> str:
    """The SHA-256 of a photo's bytes, in hex: the part of the key that names the photo.

    The same bytes under another name, or in another folder, hash the same: one call for both.
    """
    return hashlib.sha256(data).hexdigest()


def request_key(sha256: str, operation: str, options: Mapping[str, object], base_url: str) -> str:
    """A stable hex key for one photo, one operation, the options that change the answer and the
    service's base URL.

    The key is the SHA-256 of the canonical JSON (sorted keys, no spaces, ASCII) of the four, so it
    is the same in every process and every version that keeps this definition. Values are
    compared as JSON: a tuple and a list of the same items give the same key, ``1`` and ``1.0``
    do not, so pass each option in one canonical form (and the base URL as ``Settings`` normalises
    it).

    Args:
        sha256: [`content_hash`][ncp_cfr.store.content_hash] of the photo's bytes.
        operation: ``"face"``, ``"celebrity"``, ``"analyze"`` or ``"lookalike"``.
        options: the options that change the answer (upload size, margin, scales ...), as JSON
            values: strings, numbers, booleans, ``None``, lists and string-keyed mappings.
        base_url: the service's base URL.

    Returns:
        64 hex digits.

    Raises:
        InvalidArgumentError: an option is not a JSON value (or is NaN or infinite).
    """
    try:
        canonical = json.dumps(
            {
                "base_url": base_url,
                "operation": operation,
                "options": dict(options),
                "sha256": sha256,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"request_key: the options must be JSON values (str, int, float, bool, None, lists, "
            f"str-keyed dicts), finite numbers only: {exc}"
        ) from None
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


class ResultStore:
    """Answers paid for, in one SQLite file, shared safely by threads and processes.

    Opening checks the file before anything is paid for: a missing file is created (its folder
    must exist); a file that is not a result store, one written by a newer version, or a file
    or folder that is read-only raises [`StoreError`][ncp_cfr.StoreError] naming the file and
    the fix, and leaves the file as it was.

    Args:
        path: the store's file, e.g. ``"library.db"``. SQLite keeps two files next to it while it
            is open (``library.db-wal``, ``library.db-shm``); the folder must be writable.
        clock: where ``stored_at`` comes from (tests pass a fake one).

    Raises:
        StoreError: the file cannot be used as a store; the message says why and what to do.
    """

    path: Path

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        # One connection behind a lock rather than one per thread. Measured with 8 threads, a put
        # and two gets cost about 240 us this way and 130 us with per-thread connections: either
        # is under 1% of a 50 ms call, and one connection is closed by close(), whichever thread
        # used it last, where per-thread ones would outlive the worker threads of a batch.
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = _open(self.path)

    def get(self, key: str) -> StoredResult | None:
        """The stored outcome under ``key``, or ``None`` if there is none.

        Raises:
            StoreError: the store is closed or the file cannot be read.
        """
        with self._connected() as connection:
            row = connection.execute(f"{_SELECT} WHERE key = ?", (key,)).fetchone()
        return None if row is None else _from_row(row)

    def put(self, result: StoredResult) -> None:
        """Store ``result`` under its key, replacing what was there; committed when this returns.

        ``stored_at`` is set from the store's clock. A replaced entry keeps its place in
        [`results`][ncp_cfr.store.ResultStore.results].

        Raises:
            StoreError: the store is closed, or the write failed (disk full, the file locked by
                another program for longer than 30 s ...).
        """
        stamped = dataclasses.replace(result, stored_at=self._clock())
        values = tuple(getattr(stamped, name) for name in _COLUMNS)
        with self._connected() as connection:
            # IMMEDIATE takes the write lock up front, so a writer in another process makes this
            # one wait (busy_timeout) instead of failing on a stale read snapshot.
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute(_UPSERT, values)
                connection.execute("COMMIT")
            finally:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")

    def file_hash(self, path: str, size: int, mtime_ns: int) -> str | None:
        """The SHA-256 remembered for the file at ``path`` if its size and modification time are
        still those it had when hashed, else ``None`` (read it again).
        """
        with self._connected() as connection:
            row = connection.execute(
                "SELECT sha256 FROM files WHERE path = ? AND size = ? AND mtime_ns = ?",
                (path, size, mtime_ns),
            ).fetchone()
        return None if row is None else str(row[0])

    def remember_file_hash(self, path: str, size: int, mtime_ns: int, sha256: str) -> None:
        """Remember the SHA-256 of the file at ``path`` as it is now (its size and mtime)."""
        with self._connected() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute(
                    "INSERT OR REPLACE INTO files (path, size, mtime_ns, sha256) "
                    "VALUES (?, ?, ?, ?)",
                    (path, size, mtime_ns, sha256),
                )
                connection.execute("COMMIT")
            finally:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")

    def results(self, operation: str | None = None) -> Iterator[StoredResult]:
        """Every stored outcome (of ``operation``, if given), in the order first stored.

        Rows are read a page at a time, so memory stays small for any store; rows stored while
        iterating may or may not be included.

        Raises:
            StoreError: the store is closed or the file cannot be read.
        """
        after = 0
        where, params = ("", ()) if operation is None else (" AND operation = ?", (operation,))
        query = f"SELECT id, {', '.join(_COLUMNS)} FROM results WHERE id > ?{where} ORDER BY id"
        while True:
            with self._connected() as connection:
                page = connection.execute(f"{query} LIMIT {_PAGE}", (after, *params)).fetchall()
            for row in page:
                yield _from_row(row[1:])
            if len(page) < _PAGE:
                return
            after = page[-1][0]

    def __len__(self) -> int:
        """How many outcomes are stored."""
        with self._connected() as connection:
            row = connection.execute("SELECT COUNT(*) FROM results").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the file. Calling it again does nothing; using the store afterwards raises."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "" if self._connection is not None else ", closed"
        return f"ResultStore({str(self.path)!r}{state})"

    @contextlib.contextmanager
    def _connected(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, with SQLite's errors raised as StoreError."""
        with self._lock:
            if self._connection is None:
                raise StoreError(f"the result store {self.path} is closed")
            try:
                yield self._connection
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from exc


def _from_row(row: tuple[object, ...]) -> StoredResult:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["ok"] = bool(values["ok"])
    return StoredResult(**values)  # type: ignore[arg-type]
