"""The store's tables and the constants every part of it shares."""

from __future__ import annotations

from typing import Final, Literal

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
