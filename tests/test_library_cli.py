"""The real ``ncp-cfr`` command over a photo library, against a loopback emulator in this process.

Each test runs ``python -m ncp_cfr ...`` in a subprocess pointed at the emulator through the
``NCP_CFR_*`` variables, with photos written to ``tmp_path``: a run killed with SIGKILL or
stopped with Ctrl-C resumes without paying twice, the quota and ``--max-calls`` stop a run with
exit code 4, two processes share one store, copies cost one call, a bad store is refused before
any call, and ``export`` writes one row per face.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ncp_cfr.store import ResultStore
from ncp_cfr.testing import Emulator, make_face

from .conftest import noise_jpeg, write_photos

FACE = make_face(10, 10, 40, 40, gender="female")
TIMEOUT = 120  # seconds any one command may take before the test gives up on it


@pytest.fixture
def emu() -> Any:
    """A scripted emulator answering one face to every face call."""
    with Emulator(detector="none") as emulator:
        emulator.reply("face", faces=[FACE], times=None)
        yield emulator


def command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "ncp_cfr", *map(str, args)]


def cli_env(emu: Emulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NCP_CFR_")}
    env.update(emu.env())
    return env


def run(emu: Emulator, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), env=cli_env(emu), capture_output=True, text=True, timeout=TIMEOUT
    )


def start(emu: Emulator, *args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(*args),
        env=cli_env(emu),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines(stdout: str) -> list[dict[str, Any]]:
    """The JSON Lines of a run's stdout; every line must parse."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def error_types(records: list[dict[str, Any]]) -> Counter[str | None]:
    return Counter(r["error"]["type"] if r["error"] else None for r in records)


def stored(db: Path) -> int:
    """Rows in the store as another process sees them now (0 while it is being created)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM results").fetchone()[0])
    except sqlite3.Error:
        return 0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def paid_per_photo(emu: Emulator) -> Counter[bytes | None]:
    """How many 200 answers (paid calls) the emulator gave for each distinct upload."""
    return Counter(r.image_bytes for r in emu.requests if r.status == 200)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=TIMEOUT)


# -- streaming output ------------------------------------------------------------------------------


def test_jsonl_writes_each_photo_as_it_finishes(emu: Emulator, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_photos(photos, 8)
    emu.latency = 0.2  # one at a time: the run takes 1.6 s at least
    process = start(emu, "face", photos, "--jsonl", "--concurrency", "1", "--no-progress")
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert process.poll() is None, "the first line came only when the run was over"
        assert set(first) >= {"file", "result", "error"}
        assert first["error"] is None and first["result"]["faces"]
        rest = lines(process.stdout.read())
    finally:
        stop(process)
    assert process.returncode == 0
    assert len(rest) == 7


# -- resuming after a kill or an interrupt ---------------------------------------------------------


def test_a_run_killed_with_sigkill_resumes_without_paying_twice(
    emu: Emulator, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_photos(photos, 24)
    db = tmp_path / "library.db"
    concurrency = 4
    emu.latency = 0.2
    args = ("face", photos, "--store", db, "--jsonl", "--concurrency", str(concurrency))
    process = start(emu, *args)
    try:
        wait_for(lambda: stored(db) >= 4, "a few answers in the store")
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=TIMEOUT)
    finally:
        stop(process)
    kept = stored(db)
    assert 4 <= kept < 24

    emu.latency = 0.0
    rerun = run(emu, *args)
    assert rerun.returncode == 0, rerun.stderr
    records = lines(rerun.stdout)
    assert len(records) == 24 and error_types(records) == {None: 24}
    assert sum(r["from_store"] for r in records) == kept  # nothing stored was lost
    assert stored(db) == 24
    paid = paid_per_photo(emu)
    assert len(paid) == 24  # every photo answered
    # Paid twice: at most the calls in flight when the first run was killed.
    assert sum(paid.values()) - 24 <= concurrency


def test_ctrl_c_stops_within_two_seconds_and_the_rerun_continues(
    emu: Emulator, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_photos(photos, 40)
    db = tmp_path / "library.db"
    concurrency = 4
    emu.latency = 0.2
    args = ("face", photos, "--store", db, "--jsonl", "--concurrency", str(concurrency))
    process = start(emu, *args)
    try:
        wait_for(lambda: stored(db) >= 4, "a few answers in the store")
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = process.communicate(timeout=TIMEOUT)
        took = time.monotonic() - sent
    finally:
        stop(process)
    assert process.returncode == 130, err
    assert took < 2.0, f"took {took:.1f} s to stop"
    assert "Traceback" not in err
    assert "interrupted" in err and "again to resume" in err
    assert all(isinstance(record, dict) for record in lines(out))  # no half-written line

    emu.latency = 0.0
    rerun = run(emu, *args)
    assert rerun.returncode == 0, rerun.stderr
    assert error_types(lines(rerun.stdout)) == {None: 40}
    paid = paid_per_photo(emu)
    assert len(paid) == 40
    assert sum(paid.values()) - 40 <= concurrency


# -- stopping at the quota and at --max-calls ------------------------------------------------------


def next_kst_midnights() -> set[str]:
    """The next 00:00 KST, as a date, computed now and a minute on (a run may cross midnight)."""
    kst = timezone(timedelta(hours=9))
    dates = set()
    for ahead in (0, 60):
        now = datetime.now(kst) + timedelta(seconds=ahead)
        dates.add(f"{(now + timedelta(days=1)):%Y-%m-%d}")
    return dates


def test_quota_stops_with_exit_4_and_a_rerun_after_the_reset_pays_only_the_rest(
    emu: Emulator, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_photos(photos, 9)  # the rest fits in the next day's 5
    db = tmp_path / "library.db"
    concurrency = 2
    emu.latency = 0.05
    emu.set_quota(5)
    args = ("face", photos, "--store", db, "--jsonl", "--concurrency", str(concurrency))
    done = run(emu, *args)
    assert done.returncode == 4, done.stderr
    records = lines(done.stdout)
    assert len(records) == 9  # every photo reported, the ones not sent too
    kinds = error_types(records)
    assert kinds[None] == 5
    assert 1 <= kinds["QuotaExceededError"] <= concurrency
    assert kinds["NotAttempted"] == 9 - 5 - kinds["QuotaExceededError"]
    for record in records:
        if record["error"] and record["error"]["type"] == "NotAttempted":
            assert record["result"] is None and record["file"].endswith(".jpg")
    err = done.stderr
    assert "quota is spent" in err
    reset = re.search(r"next at (\d{4}-\d\d-\d\d) 00:00 KST \(([^)]*) here\)", err)
    assert reset is not None, err
    assert reset.group(1) in next_kst_midnights()
    assert "run the same command again to resume" in err
    assert "Traceback" not in err
    paid_first = emu.answered
    assert paid_first == 5

    emu.reset_quota()  # the next day: 5 more
    again = run(emu, *args)
    assert again.returncode == 0, again.stderr
    records = lines(again.stdout)
    assert error_types(records) == {None: 9}
    assert sum(r["from_store"] for r in records) == 5
    assert emu.answered - paid_first == 4  # only the rest
    assert set(paid_per_photo(emu).values()) == {1}


def test_max_calls_spends_that_many_and_exits_4(emu: Emulator, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_photos(photos, 6)
    done = run(emu, "face", photos, "--jsonl", "--max-calls", "2", "--concurrency", "2")
    assert done.returncode == 4, done.stderr
    assert emu.calls() == 2
    assert error_types(lines(done.stdout)) == {None: 2, "NotAttempted": 4}
    assert "--max-calls 2" in done.stderr
    assert "Traceback" not in done.stderr


# -- sharing and copies ----------------------------------------------------------------------------


def test_two_processes_share_one_store(emu: Emulator, tmp_path: Path) -> None:
    paths = write_photos(tmp_path / "photos", 20)
    db = tmp_path / "library.db"
    emu.latency = 0.1
    common = ("--store", db, "--jsonl", "--concurrency", "4")
    # One goes through the folder, the other through the files in reverse, at the same time.
    first = start(emu, "face", tmp_path / "photos", *common)
    second = start(emu, "face", *reversed(paths), *common)
    try:
        out1, err1 = first.communicate(timeout=TIMEOUT)
        out2, err2 = second.communicate(timeout=TIMEOUT)
    finally:
        stop(first)
        stop(second)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert error_types(lines(out1)) == {None: 20}
    assert error_types(lines(out2)) == {None: 20}
    assert stored(db) == 20
    with ResultStore(db) as store:  # the file is whole: every answer reads back
        assert sum(entry.ok for entry in store.results()) == 20

    calls = emu.calls()
    third = run(emu, "face", tmp_path / "photos", *common)
    assert third.returncode == 0
    assert emu.calls() == calls
    assert all(r["from_store"] for r in lines(third.stdout))


def test_copies_of_a_photo_cost_one_call(emu: Emulator, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    data = noise_jpeg(7)
    for name in ("a.jpg", "b.jpg", "trip/a.jpg", "trip/day2/copy of a.jpg"):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        (photos / name).write_bytes(data)
    write_photos(photos, 1, first_seed=50)
    done = run(emu, "face", photos, "--store", tmp_path / "library.db", "--jsonl")
    assert done.returncode == 0, done.stderr
    assert len(lines(done.stdout)) == 5
    assert emu.calls() == 2, f"{emu.calls()} calls for 2 distinct photos"


def test_a_copy_added_later_is_answered_from_the_store(emu: Emulator, tmp_path: Path) -> None:
    (original,) = write_photos(tmp_path / "photos", 1)
    db = tmp_path / "library.db"
    assert run(emu, "face", tmp_path / "photos", "--store", db).returncode == 0
    copy = tmp_path / "backup" / "IMG_0001.jpg"
    copy.parent.mkdir()
    copy.write_bytes(original.read_bytes())
    done = run(emu, "face", copy, "--store", db, "--jsonl")
    assert done.returncode == 0, done.stderr
    (record,) = lines(done.stdout)
    assert record["from_store"] and record["file"] == str(copy)
    assert emu.calls() == 1


# -- a store that cannot be used -------------------------------------------------------------------


def assert_refused(done: subprocess.CompletedProcess[str], db: Path, emu: Emulator) -> None:
    """One clear line naming the file, exit 1, and nothing paid."""
    assert done.returncode == 1, done.stderr
    assert str(db) in done.stderr
    assert "StoreError" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert emu.calls() == 0


def test_a_file_that_is_not_a_store_is_refused_untouched(emu: Emulator, tmp_path: Path) -> None:
    write_photos(tmp_path / "photos", 2)
    db = tmp_path / "notes.db"
    db.write_text("my notes, not a database\n")
    done = run(emu, "face", tmp_path / "photos", "--store", db)
    assert_refused(done, db, emu)
    assert "not a result store" in done.stderr
    assert db.read_text() == "my notes, not a database\n"
    assert not Path(f"{db}-wal").exists()


def test_a_store_from_a_newer_version_is_refused_untouched(emu: Emulator, tmp_path: Path) -> None:
    write_photos(tmp_path / "photos", 2)
    db = tmp_path / "library.db"
    ResultStore(db).close()
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    connection.close()
    before = db.read_bytes()
    done = run(emu, "face", tmp_path / "photos", "--store", db)
    assert_refused(done, db, emu)
    assert "newer" in done.stderr
    assert db.read_bytes() == before


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write a read-only file"
)
def test_a_read_only_store_is_refused_before_any_call(emu: Emulator, tmp_path: Path) -> None:
    write_photos(tmp_path / "photos", 2)
    db = tmp_path / "library.db"
    ResultStore(db).close()
    db.chmod(0o444)
    done = run(emu, "face", tmp_path / "photos", "--store", db)
    assert_refused(done, db, emu)
    assert "read-only" in done.stderr


def test_a_folder_as_the_store_is_refused(emu: Emulator, tmp_path: Path) -> None:
    write_photos(tmp_path / "photos", 2)
    done = run(emu, "face", tmp_path / "photos", "--store", tmp_path)
    assert_refused(done, tmp_path, emu)
    assert "directory" in done.stderr


# -- export ----------------------------------------------------------------------------------------


def test_export_writes_one_row_per_face(tmp_path: Path) -> None:
    photos = write_photos(tmp_path / "photos", 3)
    empty = tmp_path / "photos" / "nobody.jpg"
    empty.write_bytes(noise_jpeg(99, size=(120, 100)))
    db = tmp_path / "library.db"
    with Emulator(detector="none") as emu:
        emu.reply("face", faces=[], times=None, match=lambda r: r.image.size == (120, 100))
        two = [FACE, make_face(50, 12, 24, 30, gender="male")]
        emu.reply("face", faces=two, times=None)
        assert run(emu, "face", tmp_path / "photos", "--store", db).returncode == 0

        out = tmp_path / "faces.csv"
        done = run(emu, "export", db, "--format", "csv", "-o", out)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 3 * 2 + 1
    assert "7 rows" in done.stderr
    per_file = Counter(row["file"] for row in rows)
    assert per_file == {**{str(p): 2 for p in photos}, str(empty): 1}
    (nobody,) = [row for row in rows if row["file"] == str(empty)]
    assert nobody["face"] == "" and nobody["x"] == "" and nobody["error"] == ""
    for photo in photos:
        faces = sorted((row for row in rows if row["file"] == str(photo)), key=lambda r: r["face"])
        assert [row["face"] for row in faces] == ["0", "1"]
        assert [(row["x"], row["y"], row["width"], row["height"]) for row in faces] == [
            ("10", "10", "40", "40"),
            ("50", "12", "24", "30"),
        ]
        assert [row["gender"] for row in faces] == ["female", "male"]
        assert {row["sha256"] for row in faces} == {hashlib.sha256(photo.read_bytes()).hexdigest()}
