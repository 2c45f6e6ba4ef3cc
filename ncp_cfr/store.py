"""The result store: every answer paid for, kept in one SQLite file so that a rerun pays only for
what is new.

A [`ResultStore`][ncp_cfr.store.ResultStore] maps a [`request_key`][ncp_cfr.store.request_key]
(the photo's content hash, the operation, the options that change the answer and the service's
base URL) to a [`StoredResult`][ncp_cfr.store.StoredResult]: the answer as JSON, the service's own
answer, the request id and the time; or a permanent failure (an unreadable or invalid image).

```python
from ncp_cfr.store import ResultStore, content_hash, request_key

with ResultStore("library.db") as store:
    data = open("photo.jpg", "rb").read()
    key = request_key(content_hash(data), "face", {"max_side": 1920}, base_url)
    hit = store.get(key)  # None: not stored yet, a call is needed
```

The file uses SQLite's write-ahead log (WAL): every [`put`][ncp_cfr.store.ResultStore.put] is one
short transaction, committed before it returns, so a process killed at any moment (SIGKILL
included) leaves a file that opens and holds every answer whose ``put`` returned. Several threads
may share one store, and several processes one file, on a local disk (WAL does not work on
network file systems: SMB, NFS).
"""

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
from typing import Final, Literal

from ncp_cfr.errors import InvalidArgumentError, StoreError

__all__ = [
    "SCHEMA_VERSION",
    "Operation",
    "ResultStore",
    "StoredResult",
    "content_hash",
    "request_key",
]

#: The version of the store's tables. A file written with a higher one is refused, unchanged.
SCHEMA_VERSION: Final = 1

#: The operations whose answers are stored.
Operation = Literal["face", "celebrity", "analyze", "lookalike"]

# What marks an SQLite file as ours, so that tables are never added to somebody else's database.
_FORMAT: Final = "clova-face result store"
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
# Each put holds the write lock for well under a millisecond, so a writer waiting this long means
# another program keeps a transaction open: then an error says so rather than hanging forever.
_BUSY_TIMEOUT_S: Final = 30.0
# Rows fetched per query by `results`: memory stays bounded however large the store is.
_PAGE: Final = 500

_COLUMNS: Final = (
    "key",
    "sha256",
    "operation",
    "source",
    "ok",
    "result_json",
    "raw_json",
    "request_id",
    "error_type",
    "error_message",
    "calls",
    "stored_at",
)
_SELECT: Final = f"SELECT {', '.join(_COLUMNS)} FROM results"
_UPSERT: Final = (
    f"INSERT INTO results ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    # An update keeps the row's id, hence its place in `results()`: a photo retried later stays
    # where it was first stored.
    "ON CONFLICT(key) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS[1:])
)
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS results (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        sha256 TEXT NOT NULL,
        operation TEXT NOT NULL,
        source TEXT NOT NULL,
        ok INTEGER NOT NULL CHECK (ok IN (0, 1)),
        result_json TEXT,
        raw_json TEXT,
        request_id TEXT,
        error_type TEXT,
        error_message TEXT,
        calls INTEGER NOT NULL,
        stored_at REAL NOT NULL
    )""",
    # Export and "the same photo under another name" look photos up by content.
    "CREATE INDEX IF NOT EXISTS results_by_sha256 ON results (sha256)",
    # A file's hash, by path, size and modification time: a rerun over 30,000 unchanged phone
    # photos answers from the store without reading (and hashing) 100 GB again.
    """CREATE TABLE IF NOT EXISTS files (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL
    )""",
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


def _open(path: Path) -> sqlite3.Connection:
    """A connection to a checked, ready store at ``path``: created if missing, else verified."""
    _check_path(path)
    try:
        connection = sqlite3.connect(
            path,
            timeout=_BUSY_TIMEOUT_S,
            # Transactions are explicit (BEGIN IMMEDIATE ... COMMIT), never opened implicitly.
            isolation_level=None,
            # Worker threads share it; ResultStore's lock serialises every use.
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise _store_error(path, exc) from exc
    try:
        _prepare(connection, path)
    except sqlite3.Error as exc:
        connection.close()
        raise _store_error(path, exc) from exc
    except BaseException:
        connection.close()
        raise
    return connection


def _check_path(path: Path) -> None:
    """Refuse, without touching anything, a path that cannot be a store."""
    if path.is_dir():
        raise StoreError(
            f"the result store {path} is a directory: choose a file, e.g. {path / 'results.db'}"
        )
    folder = path.absolute().parent
    if not path.exists():
        if not folder.is_dir():
            raise StoreError(
                f"cannot create the result store {path}: the folder {folder} does not exist; "
                f"create it first or choose another file"
            )
        if not os.access(folder, os.W_OK):
            raise StoreError(
                f"cannot create the result store {path}: its folder {folder} is read-only: "
                f"make it writable or choose another file"
            )
        return
    if not path.is_file():
        raise StoreError(f"the result store {path} is not a regular file: choose another file")
    # Checked here, before SQLite opens it: a connection to a read-only file would leave -wal and
    # -shm files behind. SQLite's own write probe (in _prepare) stays the judge for cases these
    # permission bits do not show (read-only mounts seen differently, root).
    if not os.access(path, os.W_OK):
        raise StoreError(
            f"the result store {path} is read-only: make it writable (chmod u+w) or choose "
            f"another file"
        )
    if not os.access(folder, os.W_OK):
        raise _read_only_folder(path)
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"cannot read the result store {path}: {exc.strerror or exc}") from exc
    # An empty file (from `touch`, or a temporary file) is a new store, as SQLite sees it too.
    if head and head != _SQLITE_MAGIC:
        raise _not_a_store(path, "it is not an SQLite database")


def _prepare(connection: sqlite3.Connection, path: Path) -> None:
    """Check the file's contents, switch to WAL, create the tables if new, and prove writable.

    Everything that might refuse the file runs before anything writes to it.
    """
    _version(connection, path)
    mode = _switch_to_wal(connection)
    if mode.lower() != "wal":
        raise StoreError(
            f"the result store {path} cannot use SQLite's write-ahead log (journal mode stays "
            f"{mode!r}): keep the store on a local disk, not a network share"
        )
    # In WAL mode a commit with synchronous=NORMAL is written to the -wal file without waiting
    # for fsync: it survives the process being killed (the OS holds the data), and only a power
    # loss or OS crash may lose the last commits, never corrupt the file. FULL would add an
    # fsync to every answer stored.
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Again under the write lock: another process may have created the store meanwhile.
        if _version(connection, path) is None:
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                [("format", _FORMAT), ("schema_version", str(SCHEMA_VERSION))],
            )
            connection.execute("COMMIT")
            return
        # A write that is rolled back: a read-only file is refused now, before a call is paid,
        # not at the first put after it. BEGIN IMMEDIATE alone succeeds on a read-only file in
        # WAL mode.
        connection.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")


def _switch_to_wal(connection: sqlite3.Connection) -> str:
    """``PRAGMA journal_mode = WAL``, waiting while another process holds the file."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    delay = 0.002
    while True:
        try:
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            return str(mode)
        except sqlite3.OperationalError as exc:
            # SQLite fails this switch at once, without its busy handler, while another
            # connection holds a lock: two processes creating one new store at the same moment.
            busy = getattr(exc, "sqlite_errorname", "") == "SQLITE_BUSY" or "locked" in str(exc)
            if not busy or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _version(connection: sqlite3.Connection, path: Path) -> int | None:
    """The store's schema version, ``None`` for an empty database; refuses anything else."""
    tables = {
        name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    if not tables:
        return None
    meta: dict[str, str] = {}
    if "meta" in tables:
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("format") != _FORMAT:
        raise _not_a_store(path, "it is an SQLite database, but not a clova-face result store")
    try:
        version = int(meta["schema_version"])
    except (KeyError, ValueError):
        raise _not_a_store(path, "its schema version is missing or unreadable") from None
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the result store {path} was written by a newer clova-face (store schema "
            f"{version}; this version reads {SCHEMA_VERSION}): upgrade clova-face "
            f'(pip install -U "clova-face") or choose another file. The file was not changed.'
        )
    return version


def _not_a_store(path: Path, why: str) -> StoreError:
    return StoreError(
        f"{path} is not a result store: {why}. The file was not changed; choose a new file name "
        f"(it is created) or move this file away."
    )


def _read_only_folder(path: Path) -> StoreError:
    folder = path.absolute().parent
    return StoreError(
        f"the folder of the result store {path} is read-only: SQLite must create "
        f"{path.name}-wal and {path.name}-shm next to it. Make {folder} writable or choose "
        f"another file."
    )


def _store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """SQLite's error as a StoreError naming the file and what to do."""
    text = str(exc)
    name = getattr(exc, "sqlite_errorname", "")  # Python 3.11+
    folder = path.absolute().parent
    if name == "SQLITE_READONLY_DIRECTORY" or (
        ("readonly" in text or "unable to open" in text) and not os.access(folder, os.W_OK)
    ):
        return _read_only_folder(path)
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return StoreError(
            f"the result store {path} is read-only: {text}. Make it writable or choose another "
            f"file."
        )
    if (
        name in ("SQLITE_NOTADB", "SQLITE_CORRUPT")
        or "not a database" in text
        or "malformed" in text
    ):
        return _not_a_store(path, f"it is not a readable SQLite database ({text})")
    if name == "SQLITE_BUSY" or "locked" in text:
        return StoreError(
            f"the result store {path} stayed locked by another program for "
            f"{_BUSY_TIMEOUT_S:.0f} s ({text}): close whatever holds it open, then run again"
        )
    return StoreError(f"result store {path}: {text}")
