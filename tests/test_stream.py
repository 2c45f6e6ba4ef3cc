"""``Client.stream`` / ``AsyncClient.stream`` over photo libraries, and the emulator's quota.

Against a scripted emulator over loopback HTTP: inputs read lazily, items as they finish, the
result store (a rerun pays nothing, copies cost one call, permanent failures remembered), the
stop at the quota and at ``max_calls``, an early ``break``, and the summary.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from PIL import Image

from ncp_cfr import (
    BatchItem,
    BatchSummary,
    ImageError,
    InvalidArgumentError,
    InvalidImageError,
    NotAttempted,
    QuotaExceededError,
)
from ncp_cfr.testing import Emulator, cfr_error, make_face
from ncp_cfr.testing.standalone import serve

from .conftest import noise_jpeg, write_photos

FACE = make_face(10, 10, 40, 40, gender="female")
KINDS = ["sync", "async"]


@pytest.fixture
def face_emu(emu: Emulator) -> Emulator:
    """The scripted emulator answering one face to every face call."""
    emu.reply("face", faces=[FACE], times=None)
    return emu


def collect(
    emu: Emulator,
    kind: str,
    images: Iterable[Any],
    operation: str = "face",
    client_options: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[list[BatchItem[Any]], BatchSummary]:
    """Every item of one stream, in the order they came, and its summary."""
    if kind == "sync":
        with (
            emu.client(**(client_options or {})) as client,
            client.stream(operation, images, **options) as stream,  # type: ignore[arg-type]
        ):
            items = list(stream)
        return items, stream.summary

    async def main() -> tuple[list[BatchItem[Any]], BatchSummary]:
        async with (
            emu.async_client(**(client_options or {})) as client,
            client.stream(operation, images, **options) as stream,  # type: ignore[arg-type]
        ):
            items = [item async for item in stream]
        return items, stream.summary

    return anyio.run(main)


def errors_by_type(items: Iterable[BatchItem[Any]]) -> Counter[str]:
    return Counter(type(item.error).__name__ for item in items if item.error is not None)


def answers_per_upload(emu: Emulator) -> Counter[bytes | None]:
    """How many 200 answers the emulator gave for each distinct upload."""
    return Counter(r.image_bytes for r in emu.requests if r.status == 200)


# -- the emulator's quota --------------------------------------------------------------------------


def test_quota_answers_the_gateways_429_after_n_answers() -> None:
    data = noise_jpeg(1)
    with Emulator(detector="none", quota=2) as emu, emu.client() as client:
        emu.reply("face", faces=[FACE], times=None)
        assert len(client.detect_faces(data).faces) == 1
        assert len(client.detect_faces(data).faces) == 1
        with pytest.raises(QuotaExceededError) as caught:
            client.detect_faces(data)
        assert caught.value.status_code == 429
        assert caught.value.code == "400"
        assert emu.answered == 2
        assert emu.calls() == 3  # a quota answer is not retried: waiting does not help

        emu.reset_quota()  # a new day
        assert len(client.detect_faces(data).faces) == 1
        assert emu.answered == 3
        assert emu.quota == 2


def test_quota_counts_only_paid_answers_and_checks_the_keys_first() -> None:
    with Emulator(detector="none", quota=1) as emu:
        status, body = cfr_error("ER15")
        emu.reply("face", body, status=status)
        with emu.client() as client:
            with pytest.raises(InvalidImageError):  # refused: not paid, not counted
                client.detect_faces(noise_jpeg(1))
            client.detect_faces(noise_jpeg(1))
            with pytest.raises(QuotaExceededError):
                client.detect_faces(noise_jpeg(2))
        with emu.client(client_secret="wrong") as client:
            # Over quota, but the gateway refuses the keys before it looks at the quota.
            with pytest.raises(Exception) as caught:
                client.detect_faces(noise_jpeg(3))
            assert not isinstance(caught.value, QuotaExceededError)
            assert getattr(caught.value, "status_code", None) == 401


def test_set_quota_counts_the_days_calls_so_far_and_none_lifts_it() -> None:
    with Emulator(detector="none") as emu, emu.client() as client:
        for seed in range(3):
            client.detect_faces(noise_jpeg(seed))
        emu.set_quota(3)  # three answered already today: the cap is reached
        with pytest.raises(QuotaExceededError):
            client.detect_faces(noise_jpeg(9))
        emu.set_quota(None)
        client.detect_faces(noise_jpeg(9))
        emu.reset()  # scenarios and records, not the day's count
        emu.set_quota(4)
        with pytest.raises(QuotaExceededError):
            client.detect_faces(noise_jpeg(9))
        assert emu.answered == 4


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_set_quota_refuses_what_is_not_a_count(bad: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        Emulator(detector="none", quota=bad)
    emu = Emulator(detector="none")
    with pytest.raises(InvalidArgumentError):
        emu.set_quota(bad)


def test_quota_holds_when_calls_arrive_together() -> None:
    """Calls checked at the same moment cannot all slip under the cap."""

    def slow_detector(image: Image.Image) -> list[dict[str, Any]]:
        time.sleep(0.1)  # every concurrent call is past the quota check before any is counted
        return []

    data = noise_jpeg(1)
    with Emulator(detector=slow_detector, quota=3, max_workers=16) as emu:
        statuses: list[int] = []
        lock = threading.Lock()

        def call() -> None:
            with emu.client(max_retries=0) as client:
                try:
                    client.detect_faces(data)
                    status = 200
                except QuotaExceededError as error:
                    status = error.status_code or 0
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=call) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert Counter(statuses) == {200: 3, 429: 7}
        assert emu.answered == 3


def test_standalone_server_takes_a_quota() -> None:
    stop = threading.Event()
    ready: list[str] = []
    lines: list[str] = []
    started = threading.Event()

    def on_ready(url: str) -> None:
        ready.append(url)
        started.set()

    server = threading.Thread(
        target=serve,
        kwargs={
            "port": 0,
            "detector": "none",
            "quota": 1,
            "log": lines.append,
            "ready": on_ready,
            "stop": stop,
        },
    )
    server.start()
    try:
        assert started.wait(10)
        headers = {
            "X-NCP-APIGW-API-KEY-ID": "fake-client-id",
            "X-NCP-APIGW-API-KEY": "fake-client-secret",
        }
        files = {"image": ("a.jpg", noise_jpeg(1), "image/jpeg")}
        url = f"{ready[0]}/vision/v1/face"
        assert httpx.post(url, headers=headers, files=files).status_code == 200
        refused = httpx.post(url, headers=headers, files=files)
        assert refused.status_code == 429
        assert refused.json()["error"]["errorCode"] == "400"
        assert any("quota of 1" in line for line in lines)
    finally:
        stop.set()
        server.join(10)


# -- streaming -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_stream_reads_a_generator_lazily(face_emu: Emulator, kind: str) -> None:
    """A generator is read as the window frees up, never turned into a list, even when the
    consumer is slower than the service.
    """
    concurrency = 2
    data = [noise_jpeg(seed) for seed in range(4)]
    read = 0

    def photos(count: int) -> Iterator[bytes]:
        nonlocal read
        for i in range(count):
            read += 1
            yield data[i % len(data)]

    ahead: list[int] = []  # inputs read beyond the items received, at each item

    def consume(item: BatchItem[Any], received: int) -> None:
        assert item.ok
        ahead.append(read - received)

    # In progress at most 2 x concurrency; the async shell may also hold as many finished items
    # in its buffer, plus one input read while it waits for room.
    bound = 2 * concurrency if kind == "sync" else 4 * concurrency + 1
    if kind == "sync":
        with (
            face_emu.client() as client,
            client.stream("face", photos(60), concurrency=concurrency) as stream,
        ):
            for received, item in enumerate(stream, 1):
                time.sleep(0.01)  # a consumer slower than the service
                consume(item, received)
    else:

        async def main() -> None:
            async with (
                face_emu.async_client() as client,
                client.stream("face", photos(60), concurrency=concurrency) as stream,
            ):
                received = 0
                async for item in stream:
                    received += 1
                    await anyio.sleep(0.01)
                    consume(item, received)

        anyio.run(main)
    assert len(ahead) == 60 and read == 60
    assert max(ahead) <= bound, f"read {max(ahead)} inputs ahead of the items received"


@pytest.mark.parametrize("kind", KINDS)
def test_stream_yields_items_as_they_finish(face_emu: Emulator, kind: str) -> None:
    images = [noise_jpeg(0, size=(120, 100))] + [noise_jpeg(seed) for seed in range(1, 6)]
    # The first photo's answer is slow: the others come out before it.
    face_emu.inject(delay=0.5, match=lambda request: request.image.size == (120, 100))
    items, summary = collect(face_emu, kind, iter(images), concurrency=3)
    order = [item.index for item in items]
    assert sorted(order) == list(range(6))
    assert order[-1] == 0
    assert all(item.ok for item in items)
    assert summary.answered == 6 and summary.calls == 6 and summary.stopped is None


@pytest.mark.parametrize("kind", KINDS)
def test_break_out_of_a_stream_stops_sending(face_emu: Emulator, kind: str) -> None:
    face_emu.latency = 0.05
    concurrency = 2
    received = 0
    images = (noise_jpeg(seed % 5) for seed in range(200))
    if kind == "sync":
        with (
            face_emu.client() as client,
            client.stream("face", images, concurrency=concurrency) as stream,
        ):
            for _ in stream:
                received += 1
                if received == 3:
                    break
    else:

        async def main() -> Any:
            nonlocal received
            async with (
                face_emu.async_client() as client,
                client.stream("face", images, concurrency=concurrency) as stream,
            ):
                async for _ in stream:
                    received += 1
                    if received == 3:
                        break
            return stream

        stream = anyio.run(main)
    # Long enough for a dozen more calls, had anything kept sending; requests already on their
    # way at the break may still arrive meanwhile.
    time.sleep(0.3)
    # At most the window of inputs in progress was sent besides the items received.
    assert face_emu.calls() <= received + 2 * concurrency
    assert stream.summary.stopped == "interrupted"


@pytest.mark.parametrize("kind", KINDS)
def test_options_of_another_operation_are_refused_before_anything_is_read(
    emu: Emulator, kind: str
) -> None:
    read = 0

    def photos() -> Iterator[bytes]:
        nonlocal read
        read += 1
        yield noise_jpeg(1)

    client = emu.client() if kind == "sync" else emu.async_client()
    with pytest.raises(InvalidArgumentError, match="scales"):
        client.stream("face", photos(), scales=[320])
    with pytest.raises(InvalidArgumentError, match="margin"):
        client.stream("celebrity", photos(), margin=0.5)
    with pytest.raises(InvalidArgumentError, match="operation"):
        client.stream("faces", photos())  # type: ignore[arg-type]
    assert read == 0
    assert emu.calls() == 0


def test_detect_faces_many_returns_its_summary(face_emu: Emulator, tmp_path: Path) -> None:
    good = write_photos(tmp_path, 3)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not an image")
    with face_emu.client() as client:
        batch = client.detect_faces_many([good[0], bad, good[1], good[2]], concurrency=2)
    assert [item.index for item in batch] == [0, 1, 2, 3]
    assert isinstance(batch[1].error, ImageError)
    summary = batch.summary
    assert summary is not None
    assert (summary.photos, summary.answered, summary.failed) == (4, 3, 1)
    assert (summary.from_store, summary.not_attempted, summary.calls) == (0, 0, 3)
    assert summary.stopped is None and summary.elapsed > 0


# -- the store -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_rerun_is_answered_from_the_store(face_emu: Emulator, kind: str, tmp_path: Path) -> None:
    paths = write_photos(tmp_path / "photos", 6)
    store = tmp_path / "library.db"
    first, summary = collect(face_emu, kind, iter(paths), store=store, concurrency=3)
    assert summary.answered == 6 and summary.calls == 6
    assert face_emu.calls() == 6

    again, summary = collect(face_emu, kind, iter(paths), store=store, concurrency=3)
    assert face_emu.calls() == 6  # nothing paid
    assert all(item.from_store and item.ok for item in again)
    assert (summary.from_store, summary.answered, summary.calls) == (6, 0, 0)
    before = {item.index: item.unwrap().faces[0].roi for item in first}
    after = {item.index: item.unwrap().faces[0].roi for item in again}
    assert before == after


@pytest.mark.parametrize("kind", KINDS)
def test_a_copy_under_another_name_costs_nothing_more(
    face_emu: Emulator, kind: str, tmp_path: Path
) -> None:
    (original,) = write_photos(tmp_path / "photos", 1)
    store = tmp_path / "library.db"
    collect(face_emu, kind, [original], store=store)
    copy = tmp_path / "elsewhere" / "renamed.jpg"
    copy.parent.mkdir()
    copy.write_bytes(original.read_bytes())
    items, summary = collect(face_emu, kind, [copy], store=store)
    assert items[0].from_store and items[0].ok
    assert face_emu.calls() == 1 and summary.calls == 0


def test_copies_in_one_run_cost_one_call(face_emu: Emulator, tmp_path: Path) -> None:
    """The same photo under several names in one batch, at the default concurrency."""
    data = noise_jpeg(7)
    copies = []
    for name in ("a.jpg", "b.jpg", "sub/c.jpg", "sub/deeper/a.jpg"):
        path = tmp_path / "photos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        copies.append(path)
    (other,) = write_photos(tmp_path / "other", 1, first_seed=50)
    items, summary = collect(face_emu, "sync", [*copies, other], store=tmp_path / "library.db")
    assert all(item.ok for item in items)
    assert face_emu.calls() == 2, f"{face_emu.calls()} calls for 2 distinct photos"
    assert summary.calls == 2


@pytest.mark.parametrize("kind", KINDS)
def test_an_unreadable_photo_is_remembered_and_retried_on_demand(
    face_emu: Emulator, kind: str, tmp_path: Path
) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 a JPEG start, then nothing an image decoder can use")
    store = tmp_path / "library.db"
    (first,), _ = collect(face_emu, kind, [bad], store=store)
    assert isinstance(first.error, ImageError) and not first.from_store

    (again,), summary = collect(face_emu, kind, [bad], store=store)
    assert isinstance(again.error, ImageError)
    assert again.from_store
    assert summary.failed == 1 and summary.calls == 0

    (retried,), _ = collect(face_emu, kind, [bad], store=store, retry_failed=True)
    assert isinstance(retried.error, ImageError)
    assert not retried.from_store  # read and prepared again
    assert face_emu.calls() == 0


@pytest.mark.parametrize("kind", KINDS)
def test_an_image_the_service_refused_is_not_paid_twice(
    emu: Emulator, kind: str, tmp_path: Path
) -> None:
    refused = tmp_path / "refused.jpg"
    refused.write_bytes(noise_jpeg(3, size=(120, 100)))
    status, body = cfr_error("ER15")
    emu.reply(
        "face",
        body,
        status=status,
        times=None,
        match=lambda request: request.image.size == (120, 100),
    )
    face_emu = emu
    store = tmp_path / "library.db"
    (first,), _ = collect(face_emu, kind, [refused], store=store)
    assert isinstance(first.error, InvalidImageError)
    assert face_emu.calls() == 1

    (again,), _ = collect(face_emu, kind, [refused], store=store)
    assert isinstance(again.error, InvalidImageError) and again.from_store
    assert face_emu.calls() == 1

    (retried,), _ = collect(face_emu, kind, [refused], store=store, retry_failed=True)
    assert isinstance(retried.error, InvalidImageError) and not retried.from_store
    assert face_emu.calls() == 2


def test_a_transient_failure_is_tried_again_on_the_next_run(
    face_emu: Emulator, tmp_path: Path
) -> None:
    (photo,) = write_photos(tmp_path, 1)
    store = tmp_path / "library.db"
    face_emu.inject("ER22", times=1)  # "server is too busy"
    (first,), _ = collect(face_emu, "sync", [photo], store=store, client_options={"max_retries": 0})
    assert first.error is not None and not isinstance(first.error, ImageError)
    (again,), _ = collect(face_emu, "sync", [photo], store=store)
    assert again.ok and not again.from_store
    assert face_emu.calls() == 2


# -- stopping: the quota, max_calls ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_quota_stops_the_run_and_a_rerun_resumes(
    face_emu: Emulator, kind: str, tmp_path: Path
) -> None:
    paths = write_photos(tmp_path / "photos", 16)
    store = tmp_path / "library.db"
    concurrency = 3
    face_emu.latency = 0.05  # calls overlap: some are in flight when the quota is spent
    face_emu.set_quota(5)
    items, summary = collect(face_emu, kind, iter(paths), store=store, concurrency=concurrency)

    assert len(items) == 16
    answered = [item for item in items if item.ok]
    refused = [item for item in items if isinstance(item.error, QuotaExceededError)]
    skipped = [item for item in items if isinstance(item.error, NotAttempted)]
    assert len(answered) == 5
    # Only the calls already in flight meet the quota answer; nothing new is sent after it.
    assert 1 <= len(refused) <= concurrency
    assert len(skipped) == 16 - 5 - len(refused)
    assert summary.stopped == "quota"
    assert summary.calls == face_emu.calls() == 5 + len(refused)
    assert (summary.answered, summary.not_attempted) == (5, len(skipped))

    face_emu.reset_quota()
    face_emu.set_quota(None)
    items, summary = collect(face_emu, kind, iter(paths), store=store, concurrency=concurrency)
    assert all(item.ok for item in items)
    assert (summary.from_store, summary.answered, summary.stopped) == (5, 11, None)
    paid = answers_per_upload(face_emu)
    assert len(paid) == 16 and set(paid.values()) == {1}  # no photo paid twice


@pytest.mark.parametrize("kind", KINDS)
def test_max_calls_spends_that_many_then_stops(face_emu: Emulator, kind: str) -> None:
    images = (noise_jpeg(seed) for seed in range(10))
    items, summary = collect(face_emu, kind, images, concurrency=2, max_calls=3)
    assert face_emu.calls() == 3
    assert sum(item.ok for item in items) == 3
    assert errors_by_type(items) == {"NotAttempted": 7}
    assert summary.stopped == "max_calls"
    assert (summary.calls, summary.answered, summary.not_attempted) == (3, 3, 7)


def test_a_rerun_does_not_read_unchanged_files_and_reads_a_changed_one(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ncp_cfr.clients import _batches

    emu.reply("face", faces=[make_face(10, 10, 60, 60)], times=None)
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = []
    for i in range(4):
        path = folder / f"p{i}.jpg"
        Image.new("RGB", (120, 100), (i * 40, 90, 60)).save(path, "JPEG")
        paths.append(path)
    store = tmp_path / "library.db"
    with emu.client() as client:
        with client.stream("face", paths, store=store) as results:
            assert all(item.ok for item in results)
        read: list[object] = []
        real = _batches.content_of

        def counting(source: object) -> object:
            read.append(source)
            return real(source)  # type: ignore[arg-type]

        monkeypatch.setattr(_batches, "content_of", counting)
        with client.stream("face", paths, store=store) as results:
            assert all(item.from_store for item in results)
        assert read == []  # answered from the store without reading a file
        Image.new("RGB", (120, 100), "white").save(paths[2], "JPEG")  # the photo changed
        with client.stream("face", paths, store=store) as results:
            items = sorted(results, key=lambda item: item.index)
        assert [item.from_store for item in items] == [True, True, False, True]
        assert len(read) == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_error_of_the_callers_own_iterable_reaches_the_caller_unwrapped(
    emu: Emulator, tmp_path: Path, kind: str
) -> None:
    emu.reply("face", faces=[make_face(10, 10, 60, 60)], times=None)
    path = tmp_path / "p.jpg"
    Image.new("RGB", (120, 100), "gray").save(path)

    def photos() -> Iterator[Path]:
        yield path
        raise ValueError("the caller's generator broke")

    with pytest.raises(ValueError, match="generator broke"):
        if kind == "sync":
            with emu.client() as client, client.stream("face", photos()) as results:
                list(results)
        else:

            async def main() -> None:
                async with emu.async_client() as client, client.stream("face", photos()) as s:
                    async for _ in s:
                        pass

            anyio.run(main)
