"""The ``*_many`` methods against the loopback emulator, on both shells."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest
from PIL import Image

from ncp_cfr import CFRError, ImageError, InvalidImageError
from ncp_cfr.batches import BatchItem
from ncp_cfr.models import Analysis, CelebrityResult, FaceResult
from ncp_cfr.testing import Emulator, RecordedRequest, make_celebrity, make_face

from .conftest import Runner, jpeg_bytes


def shade(i: int) -> bytes:
    """A small JPEG whose grey level says which input it was."""
    return jpeg_bytes((120, 100), (10 * i, 10 * i, 10 * i))


def index_of(request: RecordedRequest) -> int:
    level = request.image.convert("L").resize((1, 1)).getpixel((0, 0))
    assert isinstance(level, int)
    return round(level / 10)


def test_results_come_back_in_input_order_with_errors_in_their_slot(
    shell: Runner, emu: Emulator, tmp_path: Path
) -> None:
    # Later inputs answer sooner: completion order is not input order.
    emu.inject(delay=0.15, match=lambda r: index_of(r) == 0)
    emu.inject("ER15", match=lambda r: index_of(r) == 2)
    emu.reply("face", faces=[make_face(10, 10, 60, 60)], times=None)
    path = tmp_path / "one.jpg"
    path.write_bytes(shade(1))
    missing = tmp_path / "missing.jpg"
    inputs = [shade(0), path, shade(2), missing, shade(4)]
    items = shell("detect_faces_many", inputs, call_kwargs={"concurrency": 4})
    assert [item.index for item in items] == [0, 1, 2, 3, 4]
    assert [item.ok for item in items] == [True, True, False, False, True]
    assert all(isinstance(item, BatchItem) for item in items)
    assert isinstance(items[0].result, FaceResult) and len(items[0].result.faces) == 1
    assert items[1].source == str(path)  # paths come back as their string
    assert items[0].source is inputs[0]  # anything else as given
    assert isinstance(items[2].error, InvalidImageError) and items[2].result is None
    assert isinstance(items[3].error, ImageError)
    assert emu.calls() == 4  # the missing file cost nothing


def test_celebrities_and_analyses_in_batches(shell: Runner, emu: Emulator) -> None:
    emu.reply("celebrity", faces=[make_celebrity("이다희", 0.6)], times=None)
    items = shell("recognize_celebrities_many", [shade(1), shade(2)])
    assert all(isinstance(i.result, CelebrityResult) for i in items)
    assert items[1].unwrap().names() == ["이다희"]

    emu.reset()
    emu.reply("face", faces=[make_face(20, 20, 60, 60)], times=None)
    emu.reply("celebrity", faces=[make_celebrity("송중기", 0.7)], times=None)
    photo = jpeg_bytes((200, 160))
    analyses = shell("analyze_many", [photo, b"not an image", photo])
    assert [a.ok for a in analyses] == [True, False, True]
    first = analyses[0].result
    assert isinstance(first, Analysis) and first.faces[0].lookalike is not None
    assert emu.calls("face") == 2 and emu.calls("celebrity") == 2


def test_concurrency_is_bounded_and_reached(shell: Runner, emu: Emulator) -> None:
    emu.latency = 0.1
    start = time.perf_counter()
    items = shell(
        "detect_faces_many", [shade(i) for i in range(12)], call_kwargs={"concurrency": 4}
    )
    elapsed = time.perf_counter() - start
    assert all(item.ok for item in items)
    assert emu.max_in_flight == 4
    assert elapsed < 0.3 * 3 + 0.5  # three waves of 0.1 s, not twelve


def test_analyze_many_counts_crop_calls_in_the_bound(shell: Runner, emu: Emulator) -> None:
    emu.latency = 0.05
    emu.reply("face", faces=[make_face(10 + 60 * i, 60, 50, 50) for i in range(3)], times=None)
    image = Image.new("RGB", (200, 160), (128, 128, 128))
    items = shell("analyze_many", [image] * 4, call_kwargs={"concurrency": 3, "margin": 0.1})
    assert all(item.ok for item in items)
    assert emu.calls("celebrity") == 4 * 3
    assert emu.max_in_flight == 3


def test_rate_limit_holds_across_workers(shell: Runner, emu: Emulator) -> None:
    rate = 20.0
    started = time.time()  # the emulator stamps requests with time.time()
    start = time.perf_counter()
    items = shell(
        "detect_faces_many",
        [shade(i) for i in range(10)],
        call_kwargs={"concurrency": 8, "rate_limit": rate},
    )
    elapsed = time.perf_counter() - start
    assert all(item.ok for item in items)
    assert elapsed >= 0.45 - 0.01
    times = sorted(r.received_at for r in emu.requests)
    assert len(times) == 10
    # What the limiter guarantees, whatever the scheduler does: request k's slot is k intervals
    # after the batch began and nothing is sent before its slot, so the k-th earliest arrival is
    # no earlier than that. (Gaps between neighbours are not guaranteed: on a loaded 2-core CI
    # machine a starved thread sent late and three requests arrived within 20 ms.)
    for k, arrived in enumerate(times):
        assert arrived - started >= k / rate - 0.005, k


def test_rate_limit_counts_retries_and_crops(shell: Runner, emu: Emulator) -> None:
    emu.inject("ER22")  # one retry: an extra request the bucket must count
    emu.reply("face", faces=[make_face(20, 20, 60, 60)], times=None)
    image = Image.new("RGB", (200, 160), (128, 128, 128))
    start = time.perf_counter()
    shell(
        "analyze_many",
        [image] * 3,
        max_retries=1,
        call_kwargs={"concurrency": 4, "rate_limit": 10.0},
    )
    assert emu.calls() == 7  # 3 face + 3 crops + 1 retry
    assert time.perf_counter() - start >= 0.6 - 0.01


def test_progress_callback_is_called_once_per_input(shell: Runner, emu: Emulator) -> None:
    seen: list[tuple[int, int]] = []
    shell(
        "detect_faces_many",
        [shade(1), b"broken", shade(2)],
        call_kwargs={"progress": lambda done, total: seen.append((done, total))},
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_progress_bar_with_tqdm(
    shell: Runner, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    shell("detect_faces_many", [shade(1), shade(2)], call_kwargs={"progress": True})
    assert "2/2" in capsys.readouterr().err


def test_progress_bar_without_tqdm_says_what_to_install(
    shell: Runner, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setitem(sys.modules, "tqdm.std", None)  # the bar without ipywidgets
    with pytest.raises(CFRError, match=r'pip install "clova-face\[progress\]"'):
        shell("detect_faces_many", [shade(1)], call_kwargs={"progress": True})
    assert emu.calls() == 0


@pytest.mark.parametrize("options", [{"concurrency": 0}, {"rate_limit": 0}, {"progress": "yes"}])
def test_bad_batch_options(shell: Runner, emu: Emulator, options: dict[str, object]) -> None:
    with pytest.raises(CFRError):
        shell("detect_faces_many", [shade(1)], call_kwargs=options)


def test_empty_batch(shell: Runner, emu: Emulator) -> None:
    assert shell("detect_faces_many", []) == []


def test_other_exceptions_stop_the_batch(shell: Runner, emu: Emulator) -> None:
    emu.latency = 0.05

    def hook(done: int, total: int) -> None:
        raise RuntimeError("bug in the progress hook")

    with pytest.raises(RuntimeError, match="bug in the progress hook"):
        shell(
            "detect_faces_many",
            [shade(i % 20) for i in range(40)],
            call_kwargs={"concurrency": 2, "progress": hook},
        )
    time.sleep(0.2)  # calls already out may finish; nothing new may start
    assert emu.calls() <= 6


def test_sync_interrupt_stops_submitting_and_does_not_wait(emu: Emulator) -> None:
    emu.latency = 0.1

    def hook(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with emu.client() as client:
        start = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            client.detect_faces_many(
                [shade(i % 20) for i in range(50)], concurrency=4, progress=hook
            )
        assert time.perf_counter() - start < 1.0  # not 50 / 4 waves of 0.1 s (1.3 s)
    deadline = time.monotonic() + 5  # the calls already sent finish on their own
    while emu.rules.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert emu.calls() <= 12
    assert emu.rules.in_flight == 0
    # The process-wide deadline watchdog stays (it holds no call); batch workers must not.
    lingering = [
        t
        for t in threading.enumerate()
        if t.name.startswith("ncp_cfr") and t.name != "ncp_cfr-deadlines"
    ]
    assert all(not t.is_alive() for t in lingering) or _wait_for_threads(lingering)


def _wait_for_threads(threads: list[threading.Thread]) -> bool:
    for thread in threads:
        thread.join(timeout=2)
    return all(not t.is_alive() for t in threads)


def test_async_cancellation_cancels_calls_in_flight_and_leaves_no_task(emu: Emulator) -> None:
    emu.latency = 1.0  # longer than the test waits: every call is still in flight when cancelled

    async def main() -> tuple[int, int]:
        async with emu.async_client() as client, anyio.create_task_group() as group:

            async def batch() -> None:
                await client.detect_faces_many([shade(i % 20) for i in range(30)], concurrency=5)

            group.start_soon(batch)
            # Cancel once the window is full, not after a fixed time: a loaded machine may need
            # longer than any guess to prepare and send the first five.
            with anyio.fail_after(10):
                while emu.rules.in_flight < 5:
                    await anyio.sleep(0.01)
            group.cancel_scope.cancel()
        await anyio.sleep(0.1)
        return len(asyncio.all_tasks()) - 1  # this one

    left = anyio.run(main)
    assert left == 0
    # The five requests in the window may still be read and recorded by the server after the
    # cancellation (or, cut off mid-upload, never be): wait for them, then count. Nothing
    # beyond the window may have been sent.
    deadline = time.monotonic() + 5
    while emu.rules.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emu.rules.in_flight == 0
    assert 1 <= emu.calls() <= 5
