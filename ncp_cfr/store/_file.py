"""Opening a store file: refusing what is not ours, newer or read-only before anything is written,
and creating the tables of a new one.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from ncp_cfr.errors import StoreError
from ncp_cfr.store._schema import (
    _BUSY_TIMEOUT_S,
    _FORMAT,
    _SCHEMA,
    _SQLITE_MAGIC,
    SCHEMA_VERSION,
)


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
