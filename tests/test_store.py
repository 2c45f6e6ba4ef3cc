"""The result store: answers survive reruns, crashes and a second process; bad files are refused
untouched."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from ncp_cfr.errors import InvalidArgumentError, StoreError
from ncp_cfr.store import (
    SCHEMA_VERSION,
    ResultStore,
    StoredResult,
    content_hash,
    request_key,
)

ROOT = Path(__file__).resolve().parent.parent
BASE_URL = "https://naveropenapi.apigw.ntruss.com/vision/v1"
# request_key(content_hash(b"abc"), "face", {"max_side": 1920, "margin": 0.0}, BASE_URL)
PINNED_KEY = "570e131a31cc436fe048db7b18a166c097c78b8a10c3a1d0f6f934f6ce0ac13f"
# Permission bits do not stop root, and Windows has no chmod-read-only folders.
needs_permissions = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user"
)


def entry(
    key: str = "k1", *, operation: str = "face", ok: bool = True, **fields: object
) -> StoredResult:
    values: dict[str, object] = {
        "key": key,
        "sha256": hashlib.sha256(key.encode()).hexdigest(),
        "operation": operation,
        "source": f"{key}.jpg",
        "ok": ok,
        "result_json": '{"info":{"size":{"width":4,"height":3},"faceCount":0},"faces":[]}'
        if ok
        else None,
        "raw_json": '{"info":{"size":{"width":4,"height":3},"faceCount":0},"faces":[]}'
        if ok
        else None,
        "request_id": "emu-00000001" if ok else None,
        "error_type": None if ok else "InvalidImageError",
        "error_message": None if ok else "HTTP 400, CFR code ER11: Unrecognized image format",
        "calls": 1,
    }
    values.update(fields)
    return StoredResult(**values)  # type: ignore[arg-type]


def ticking(start: float = 1000.0) -> Callable[[], float]:
    times = iter(range(10**9))
    return lambda: start + next(times)


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry of ``folder``: file bytes, or None for a sub-folder."""
    return {p.name: None if p.is_dir() else p.read_bytes() for p in sorted(folder.iterdir())}


# --- round trip, upsert, order -----------------------------------------------------------------


def test_put_then_get_returns_the_same_result_stamped_with_the_clock(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    stored = entry("a", raw_json='{"name":"이다희"}')
    with ResultStore(path, clock=lambda: 1234.5) as store:
        assert store.get("a") is None
        store.put(stored)
        assert store.get("a") == replace(stored, stored_at=1234.5)
    # Reopened: it was committed to the file, Hangul included.
    with ResultStore(str(path)) as store:
        assert store.get("a") == replace(stored, stored_at=1234.5)
        assert store.path == path
        assert len(store) == 1


def test_failures_round_trip_with_their_error(tmp_path: Path) -> None:
    failed = entry("bad", ok=False, calls=0)
    with ResultStore(tmp_path / "s.db", clock=lambda: 1.0) as store:
        store.put(failed)
        got = store.get("bad")
    assert got == replace(failed, stored_at=1.0)
    assert got is not None and got.ok is False and got.result_json is None


def test_put_replaces_by_key_and_keeps_the_first_place(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.db", clock=ticking()) as store:
        store.put(entry("a", ok=False))
        store.put(entry("b"))
        store.put(entry("a", calls=2))  # --retry-failed: the failure is replaced by the answer
        assert len(store) == 2
        a = store.get("a")
        assert a is not None and a.ok and a.calls == 2 and a.stored_at == 1002.0
        assert [r.key for r in store.results()] == ["a", "b"]


def test_results_in_stored_order_filtered_and_paged(tmp_path: Path) -> None:
    operations = ["face", "celebrity", "analyze", "lookalike"]
    keys = [f"k{i:04d}" for i in range(1203)]  # more than one page of 500
    with ResultStore(tmp_path / "s.db") as store:
        for i, key in enumerate(reversed(keys)):  # stored order, not key order
            store.put(entry(key, operation=operations[i % 4]))
        assert len(store) == 1203
        assert [r.key for r in store.results()] == list(reversed(keys))
        faces = list(store.results("face"))
        assert [r.key for r in faces] == list(reversed(keys))[::4]
        assert {r.operation for r in faces} == {"face"}
        assert list(store.results("nothing")) == []


def test_a_closed_store_raises_store_error_and_close_twice_is_fine(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "s.db")
    store.close()
    store.close()
    for use in (lambda: store.get("a"), lambda: store.put(entry()), lambda: len(store)):
        with pytest.raises(StoreError, match="closed"):
            use()
    assert "closed" in repr(store)


def test_an_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "touched.db"
    path.touch()
    with ResultStore(path) as store:
        store.put(entry())
    with ResultStore(path) as store:
        assert len(store) == 1


def test_the_file_is_in_wal_mode_with_a_version_and_a_sha256_index(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    ResultStore(path).close()
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        meta = dict(connection.execute("SELECT key, value FROM meta"))
        assert meta["schema_version"] == str(SCHEMA_VERSION)
        plan = connection.execute(
            "EXPLAIN QUERY PLAN SELECT key FROM results WHERE sha256 = 'x'"
        ).fetchall()
        assert "results_by_sha256" in str(plan)
    finally:
        connection.close()


# --- keys --------------------------------------------------------------------------------------


def test_content_hash_is_sha256_hex() -> None:
    assert content_hash(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_request_key_is_pinned() -> None:
    # Changing the definition makes every stored answer unreachable: users would pay again.
    key = request_key(content_hash(b"abc"), "face", {"max_side": 1920, "margin": 0.0}, BASE_URL)
    assert key == PINNED_KEY


def test_request_key_changes_with_each_input_and_ignores_option_order() -> None:
    sha = content_hash(b"photo")
    base = request_key(sha, "face", {"max_side": 1920, "margin": 0.1}, BASE_URL)
    variants = [
        request_key(content_hash(b"photo2"), "face", {"max_side": 1920, "margin": 0.1}, BASE_URL),
        request_key(sha, "analyze", {"max_side": 1920, "margin": 0.1}, BASE_URL),
        request_key(sha, "face", {"max_side": 1280, "margin": 0.1}, BASE_URL),
        request_key(sha, "face", {"max_side": 1920}, BASE_URL),
        request_key(sha, "face", {"max_side": 1920, "margin": 0.1}, "http://127.0.0.1:8080"),
    ]
    assert len({base, *variants}) == 6
    assert request_key(sha, "face", {"margin": 0.1, "max_side": 1920}, BASE_URL) == base
    assert len(base) == 64 and int(base, 16) >= 0
    scales = request_key(sha, "lookalike", {"scales": (480, 960)}, BASE_URL)
    assert scales == request_key(sha, "lookalike", {"scales": [480, 960]}, BASE_URL)


def test_request_key_is_the_same_in_another_process() -> None:
    code = (
        "import sys; from ncp_cfr.store import request_key, content_hash; "
        "print(request_key(content_hash(b'abc'), 'face', {'max_side': 1920, 'margin': 0.0}, "
        "sys.argv[1]))"
    )
    child = run_python(code, BASE_URL)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.strip() == PINNED_KEY


@pytest.mark.parametrize("options", [{"path": Path("a")}, {"margin": float("nan")}])
def test_request_key_refuses_options_that_are_not_json(options: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError, match="JSON"):
        request_key("0" * 64, "face", options, BASE_URL)


# --- files that cannot be a store ----------------------------------------------------------------


def make_newer(path: Path) -> None:
    ResultStore(path).close()
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    connection.close()


def make_foreign(path: Path) -> None:
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("CREATE TABLE photos (name TEXT)")
        connection.execute("INSERT INTO photos VALUES ('holiday.jpg')")
    connection.close()


BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "text": (lambda p: p.write_text("file,faces\nphoto.jpg,1\n" * 20), "not an SQLite database"),
    "short": (lambda p: p.write_bytes(b"SQLite"), "not an SQLite database"),
    "newer": (make_newer, "newer clova-face"),
    "foreign sqlite": (make_foreign, "not a clova-face result store"),
    "directory": (lambda p: p.mkdir(), "is a directory"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_file_that_is_not_a_usable_store_is_refused_untouched(tmp_path: Path, case: str) -> None:
    path = tmp_path / "library.db"
    make, why = BAD_FILES[case]
    make(path)
    before = snapshot(tmp_path)
    with pytest.raises(StoreError) as raised:
        ResultStore(path)
    message = str(raised.value)
    assert str(path) in message and why in message
    assert "choose" in message or "upgrade" in message  # the fix
    assert snapshot(tmp_path) == before


def test_a_missing_folder_is_refused_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "library.db"
    with pytest.raises(StoreError, match="does not exist") as raised:
        ResultStore(path)
    assert str(path) in str(raised.value) and "create it" in str(raised.value)
    assert not path.parent.exists()


@needs_permissions
def test_a_read_only_store_is_refused_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    with ResultStore(path) as store:
        store.put(entry())
    path.chmod(0o444)
    before = snapshot(tmp_path)
    with pytest.raises(StoreError, match="is read-only: ") as raised:
        ResultStore(path)
    assert str(path) in str(raised.value)
    assert snapshot(tmp_path) == before


@needs_permissions
@pytest.mark.parametrize("exists", [True, False])
def test_a_store_in_a_read_only_folder_is_refused_when_opened(tmp_path: Path, exists: bool) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    path = folder / "library.db"
    if exists:
        with ResultStore(path) as store:
            store.put(entry())
    before = snapshot(folder)
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="is read-only: ") as raised:
            ResultStore(path)
        assert str(path) in str(raised.value)
        assert snapshot(folder) == before
    finally:
        folder.chmod(0o755)


# --- concurrency and crashes ---------------------------------------------------------------------

WRITER = """
import sys
from ncp_cfr.store import ResultStore, StoredResult
path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()
with ResultStore(path) as store:
    for i in range(count):
        key = f"{name}-{i}"
        store.put(StoredResult(key, "0" * 64, "face", f"{key}.jpg", True, "{}" * 200, None,
                               None, None, None, 1))
        assert store.get(key) is not None
print("done", flush=True)
"""


@pytest.mark.parametrize(("processes", "count"), [(2, 400), (6, 50)])
def test_processes_write_one_store_at_once(tmp_path: Path, processes: int, count: int) -> None:
    path = tmp_path / "shared.db"  # all create it: the first open races too
    names = [f"p{n}" for n in range(processes)]
    children = [run_python(WRITER, str(path), name, str(count)) for name in names]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    for child in children:  # released together: their opens and puts interleave
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err  # no "database is locked"
        assert out == "done\n" and err == ""
    with ResultStore(path) as store:
        assert len(store) == processes * count
        assert {r.key for r in store.results()} == {
            f"{name}-{i}" for name in names for i in range(count)
        }


def test_opening_a_new_store_waits_while_another_process_switches_it_to_wal(
    tmp_path: Path,
) -> None:
    # Switching a new file to WAL is a write in the old journal mode; SQLite fails a second
    # switch meanwhile at once, without its busy handler. Two processes creating one store at the
    # same moment meet this by chance; here a held write lock makes it certain.
    path = tmp_path / "new.db"
    path.touch()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: other.execute("ROLLBACK"))
    release.start()
    try:
        with ResultStore(path) as store:
            store.put(entry())
            assert len(store) == 1
    finally:
        release.join()
        other.close()


KILLED = """
import sys
from ncp_cfr.store import ResultStore, StoredResult
with ResultStore(sys.argv[1]) as store:
    i = 0
    while True:
        key = f"k{i}"
        store.put(StoredResult(key, "0" * 64, "face", "x.jpg", True, "x" * 20000, None, None,
                               None, None, 1))
        print(i, flush=True)  # after put returned: this row must survive
        i += 1
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
def test_sigkill_mid_loop_keeps_every_row_whose_put_returned(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    child = run_python(KILLED, str(path))
    assert child.stdout is not None
    confirmed = []
    while len(confirmed) < 300:
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else "child died"
        confirmed.append(int(line))
    os.kill(child.pid, signal.SIGKILL)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    confirmed += [int(line) for line in out.split()]

    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        connection.close()
    with ResultStore(path) as store:
        missing = [i for i in confirmed if store.get(f"k{i}") is None]
        assert missing == []
        assert len(store) >= len(confirmed)


def test_threads_share_one_store(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        barrier.wait()
        for i in range(100):
            key = f"w{worker}-{i}"
            store.put(entry(key))
            got = store.get(key)
            if got is None or got.key != key:
                errors.append(AssertionError(key))

    with ResultStore(tmp_path / "s.db") as store, ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
        assert errors == []
        assert len(store) == 800
        assert len(list(store.results())) == 800


def test_a_files_hash_is_remembered_while_its_size_and_time_stay(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "files.db") as store:
        assert store.file_hash("/photos/a.jpg", 10, 123) is None
        store.remember_file_hash("/photos/a.jpg", 10, 123, "ab" * 32)
        assert store.file_hash("/photos/a.jpg", 10, 123) == "ab" * 32
        assert store.file_hash("/photos/a.jpg", 11, 123) is None  # rewritten: read it again
        assert store.file_hash("/photos/a.jpg", 10, 124) is None
        store.remember_file_hash("/photos/a.jpg", 11, 124, "cd" * 32)
        assert store.file_hash("/photos/a.jpg", 11, 124) == "cd" * 32
