"""``ncp_cfr.ray`` on a local Ray cluster against the loopback emulator: the rows of a job, the
job's rate, quota and budget shared by two workers, a rerun that sends only what is missing,
and a secret that stays out of everything Ray writes or pickles.

One Ray for the module (starting it takes seconds); the emulator is reset before each test.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import shutil
import statistics
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ncp_cfr import InvalidArgumentError, export
from ncp_cfr.protocol import ENV_BASE_URL, ENV_CLIENT_ID, ENV_CLIENT_SECRET
from ncp_cfr.ray import Annotator, ClusterLimits, annotate, finished_hashes, pending
from ncp_cfr.testing import Emulator, make_face

from .conftest import write_photos

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

pytestmark = pytest.mark.ray

#: The emulator's key: distinctive, so that finding it anywhere Ray wrote is a leak.
SECRET = "test-secret-ray-9f3c"
WORKERS = 2
CONCURRENCY = 4  # calls in flight per worker
BATCH = 4  # photos per batch: small, so that both workers get batches
CORRUPT = b"\xff\xd8\xff\xe0 not a whole JPEG"


@dataclass
class Cluster:
    emu: Emulator
    temp_dir: Path


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A loopback emulator, then a local Ray whose workers inherit its keys from this process.

    The keys are in the driver's environment before ``ray.init``, as ``credentials_hint`` tells
    users: the workers inherit them and Ray logs none of it (``runtime_env`` values it would).
    """
    names = (ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_BASE_URL)
    saved = {name: os.environ.get(name) for name in names}
    # Short: Ray's unix socket paths under it must stay within 107 characters.
    temp_dir = Path(
        tempfile.mkdtemp(prefix="ncpray", dir="/tmp" if os.path.isdir("/tmp") else None)
    )
    data_logger = logging.getLogger("ray.data")
    data_level = data_logger.level
    with Emulator(client_secret=SECRET, detector="none") as emu:
        os.environ.update(emu.env())
        try:
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                _temp_dir=str(temp_dir),
            )
            ray.data.DataContext.get_current().enable_progress_bars = False
            data_logger.setLevel(logging.WARNING)  # one line per dataset run drowns the output
            yield Cluster(emu, temp_dir)
        finally:
            ray.shutdown()
            data_logger.setLevel(data_level)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def emu(cluster: Cluster) -> Emulator:
    """The module's emulator with no requests, scenarios or quota from earlier tests."""
    cluster.emu.reset()
    cluster.emu.set_quota(None)
    cluster.emu.reset_quota()
    return cluster.emu


def read(folder: Path) -> Any:
    return ray.data.read_binary_files(str(folder), include_paths=True)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def kind(row: dict[str, Any]) -> str:
    """``"answered"``, or the class of the row's error."""
    return "answered" if row["error"] is None else str(row["error"]).split(":", 1)[0]


def check_rows(rows: list[dict[str, Any]], files: list[Path], faces: dict[int, int]) -> None:
    """``rows`` are exactly the rows of ``files``: ``faces[i]`` rows for photo ``i`` (indices
    0, 1, ...), one row with no face for the others; each with its path and content hash.
    """
    expected = []
    for index, path in enumerate(files):
        count = faces.get(index, 0)
        for face in range(count) if count else [None]:
            expected.append((str(path), sha(path.read_bytes()), face))
    got = [(row["file"], row["sha256"], row["face"]) for row in rows]
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    assert [kind(row) for row in rows] == ["answered"] * len(expected)
    assert {row["operation"] for row in rows} == {"face"}
    assert all(str(row["request_id"]).startswith("emu-") for row in rows)


def script_faces(emu: Emulator, files: list[Path]) -> dict[int, int]:
    """Faces for two of the photos, whichever worker sends them: photo index -> face count."""
    two = [make_face(4, 4, 30, 30), make_face(40, 6, 24, 28)]
    emu.reply("face", faces=two, match=files[1].read_bytes(), times=None)
    emu.reply("face", faces=[make_face(10, 10, 40, 40)], match=files[5].read_bytes(), times=None)
    return {1: 2, 5: 1}


def test_annotate_gives_each_photo_its_rows_and_parquet_keeps_the_schema(
    emu: Emulator, tmp_path: Path
) -> None:
    files = write_photos(tmp_path / "photos", 12)
    faces = script_faces(emu, files)
    out = tmp_path / "out"

    annotate(
        read(tmp_path / "photos"), workers=WORKERS, concurrency=CONCURRENCY, batch_size=BATCH
    ).write_parquet(str(out))

    table = pq.read_table(out)
    assert table.schema.equals(export.arrow_schema(), check_metadata=False)
    assert table.schema.names == [name for name, _ in export.COLUMNS]
    check_rows(table.to_pylist(), files, faces)
    assert emu.calls() == len(files)


def test_two_workers_of_map_batches_keep_the_jobs_rate_limit(emu: Emulator, tmp_path: Path) -> None:
    rate, count = 20.0, 56
    files = write_photos(tmp_path / "photos", count)
    faces = script_faces(emu, files)
    # Paths only: each worker reads the files itself.
    ds = ray.data.from_items([{"path": str(path)} for path in files])
    limits = ClusterLimits(rate_limit=rate)

    rows = ds.map_batches(
        Annotator,
        fn_constructor_kwargs={"operation": "face", "limits": limits, "concurrency": CONCURRENCY},
        compute=ray.data.ActorPoolStrategy(size=WORKERS),
        num_cpus=0.25,
        batch_size=BATCH,
    ).take_all()

    check_rows(rows, files, faces)
    times = sorted(request.received_at for request in emu.requests)
    assert len(times) == count
    # Over the requests only: the seconds Ray takes to start the workers are not the rate's.
    overall = (count - 1) / (times[-1] - times[0])
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    paced = 1 / statistics.median(gaps)
    span = 10  # requests: the densest run of them may not beat the limit either
    densest = max(span / (times[i + span] - times[i]) for i in range(count - span))
    print(
        f"\nrate from {WORKERS} workers (limit {rate}/s): {overall:.2f}/s over {count} "
        f"requests, {paced:.2f}/s by the median gap, {densest:.2f}/s at the densest"
    )
    # Never above the limit, and paced at it: the median gap is the limit's interval. (The rate
    # over the whole run may fall below it when a busy machine stalls the pipeline for a moment.)
    assert densest <= 1.1 * rate
    assert 0.9 * rate <= paced <= 1.1 * rate
    summary = limits.summary()
    assert (summary.calls, summary.retries, summary.answered) == (count, 0, count)


def test_the_budget_holds_across_workers(emu: Emulator, tmp_path: Path) -> None:
    count, budget = 24, 7
    write_photos(tmp_path / "photos", count)
    limits = ClusterLimits(max_calls=budget)

    rows = annotate(
        read(tmp_path / "photos"),
        limits=limits,
        workers=WORKERS,
        concurrency=CONCURRENCY,
        batch_size=BATCH,
    ).take_all()

    sent = emu.calls()
    assert sent == budget  # every call the budget admitted was sent, and no more
    assert Counter(kind(row) for row in rows) == {"answered": sent, "NotAttempted": count - sent}
    assert limits.stopped == "max_calls"
    summary = limits.summary()
    assert (summary.calls, summary.photos, summary.not_attempted) == (budget, count, count - sent)


def test_a_quota_answer_stops_every_worker_and_a_rerun_sends_only_the_rest(
    emu: Emulator, tmp_path: Path
) -> None:
    count, quota = 40, 10
    folder = tmp_path / "photos"
    files = write_photos(folder, count)
    # First in the listing, so that it is read before the quota stops the run.
    corrupt = folder / "000-corrupt.jpg"
    corrupt.write_bytes(CORRUPT)
    out = tmp_path / "out"
    emu.set_quota(quota)
    limits = ClusterLimits()
    options = {"workers": WORKERS, "concurrency": CONCURRENCY, "batch_size": BATCH}

    annotate(read(folder), limits=limits, **options).write_parquet(str(out))

    first = pq.read_table(out).to_pylist()
    sent = emu.requests
    # After the quota answer only calls already admitted may go out: one in flight per slot,
    # and one per worker admitted before the stop reached it.
    assert quota < len(sent) <= quota + WORKERS * CONCURRENCY + WORKERS
    assert sum(request.status == 200 for request in sent) == quota
    assert len(first) == count + 1  # no faces: one row per photo
    (corrupt_row,) = [row for row in first if row["file"] == str(corrupt)]
    assert kind(corrupt_row) in ("ImageError", "InvalidImageError")  # a row, not a failed job
    kinds = Counter(kind(row) for row in first if row is not corrupt_row)
    assert set(kinds) <= {"answered", "QuotaExceededError", "NotAttempted"}
    assert kinds["answered"] == quota
    assert kinds["QuotaExceededError"] == len(sent) - quota
    assert kinds["NotAttempted"] == count - len(sent)
    assert limits.stopped == "quota"
    summary = limits.summary()
    assert (summary.photos, summary.answered) == (count + 1, quota)
    assert summary.calls == len(sent)  # every request admitted went out, and no other
    assert summary.failed == kinds["QuotaExceededError"] + 1  # the corrupt file
    assert summary.answered + summary.failed + summary.not_attempted == count + 1

    # The next day: a new quota, and a copy of an answered photo has arrived under another name.
    emu.reset()
    emu.reset_quota()
    emu.set_quota(None)
    answered = {row["sha256"] for row in first if row["error"] is None}
    original = next(Path(row["file"]) for row in first if row["error"] is None)
    copy = folder / "zzz-copy.jpg"
    shutil.copyfile(original, copy)

    todo = pending(read(folder), done=str(out), operation="face")
    annotate(todo, **options).write_parquet(str(out))  # beside the first run's files

    every = {sha(path.read_bytes()) for path in files}
    resent = [sha(request.image_bytes or b"") for request in emu.requests]
    assert len(resent) == count - quota
    assert sorted(resent) == sorted(every - answered)
    both = pq.read_table(out).to_pylist()
    assert Counter(row["sha256"] for row in both if row["error"] is None) == dict.fromkeys(every, 1)
    assert [row["file"] for row in both].count(str(corrupt)) == 1  # not tried again
    assert str(copy) not in {row["file"] for row in both}


def test_pending_without_earlier_output_is_the_whole_dataset(
    cluster: Cluster, tmp_path: Path
) -> None:
    write_photos(tmp_path / "photos", 5)
    ds = read(tmp_path / "photos")
    (tmp_path / "empty").mkdir()
    assert pending(ds, done=str(tmp_path / "no-such-folder")).count() == 5
    assert pending(ds, done=[str(tmp_path / "empty")], operation="face").count() == 5


def test_finished_photos_are_answers_and_permanent_failures_of_one_operation(
    cluster: Cluster,
) -> None:
    def row(digest: str, operation: str, error: str | None = None) -> dict[str, Any]:
        return {"sha256": digest, "operation": operation, "error": error}

    rows = [
        row("a" * 64, "face"),
        row("b" * 64, "face", "InvalidImageError: the service could not read it"),
        row("c" * 64, "face", "ImageError: cannot read 'c.jpg'"),
        row("d" * 64, "face", "NotAttempted: not sent: the service's call quota is spent"),
        row("e" * 64, "face", "APITimeoutError: no answer in 30 s"),
        row("f" * 64, "face", "QuotaExceededError: Quota Exceeded"),
        row("9" * 64, "analyze"),
    ]
    # An in-memory dataset of earlier output: no files to read, so no read tasks to wait for.
    done = ray.data.from_arrow(pa.Table.from_pylist(rows, schema=export.arrow_schema()))

    assert finished_hashes(done, "face") == {"a" * 64, "b" * 64, "c" * 64}
    assert finished_hashes(done, "analyze") == {"9" * 64}
    with pytest.raises(InvalidArgumentError, match="operation="):
        pending(ray.data.from_items([{"bytes": b"x"}]), done=done)


def test_the_secret_is_nowhere_ray_wrote_nor_in_the_limits(
    cluster: Cluster, emu: Emulator, tmp_path: Path
) -> None:
    limits = ClusterLimits(rate_limit=50, max_calls=100)
    if emu.answered == 0:  # run alone: a job first, so that workers used the key
        write_photos(tmp_path / "photos", 4)
        rows = annotate(read(tmp_path / "photos"), limits=limits, workers=WORKERS).take_all()
        assert [kind(row) for row in rows] == ["answered"] * 4
    kwargs = {"operation": "face", "limits": limits, "concurrency": CONCURRENCY}

    secret = SECRET.encode()
    assert secret not in ray.cloudpickle.dumps(limits)
    assert secret not in ray.cloudpickle.dumps((Annotator, kwargs))
    assert SECRET not in repr(limits)
    read_files = 0
    for root, _, names in os.walk(cluster.temp_dir):
        for name in names:
            path = Path(root, name)
            if not path.is_file():  # sockets, dangling links
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            read_files += 1
            assert secret not in data, f"the secret is in {path}"
    assert read_files > 10  # the logs were there to be read
