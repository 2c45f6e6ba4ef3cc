"""``ncp_cfr.ray`` without a Ray cluster: the limits actor's state on a fake clock, and the
Annotator called in-process on every batch format Ray hands it, against the loopback emulator.

Runs without Ray installed; the Annotator tests need pyarrow (its output is a ``pyarrow.Table``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import pickle
from pathlib import Path
from typing import Any

import pytest

from ncp_cfr import CFRError, InvalidArgumentError
from ncp_cfr.export import COLUMNS
from ncp_cfr.protocol import ENV_BASE_URL, ENV_CLIENT_ID, ENV_CLIENT_SECRET
from ncp_cfr.ray import Annotator, ClusterLimits, LimitsState, credentials_hint
from ncp_cfr.testing import Emulator, make_face

from .conftest import FakeClock, noise_jpeg, write_photos

# -- LimitsState: the limits actor's body, on a fake clock -----------------------------------------


def test_rate_reservations_are_spaced_one_interval_apart_without_a_burst() -> None:
    clock = FakeClock()
    state = LimitsState(rate_limit=10, clock=clock.monotonic)
    # Four requests booked at the same instant: each waits one more interval (1/10 s).
    waits = [state.admit(False) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])
    clock.time += 0.25  # the bookings are kept: the next slot is 0.4 s after the first
    assert state.admit(False) == pytest.approx(0.15)
    # After an idle spell nothing is saved up: two requests still go one interval apart.
    clock.time += 60
    assert state.admit(True) == 0.0
    assert state.admit(True) == pytest.approx(0.1)
    summary = state.summary()
    assert (summary.calls, summary.retries) == (7, 2)
    assert summary.stopped is None


def test_the_budget_admits_max_calls_requests_then_refuses_and_counts_no_more() -> None:
    state = LimitsState(max_calls=3)
    assert [state.admit(False) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert [state.admit(False), state.admit(True)] == ["max_calls", "max_calls"]
    summary = state.summary()
    assert (summary.calls, summary.retries, summary.stopped) == (3, 0, "max_calls")
    assert LimitsState(max_calls=0).admit(False) == "max_calls"


def test_a_quota_stop_refuses_every_later_request_and_the_first_reason_sticks() -> None:
    state = LimitsState(rate_limit=5, max_calls=2)
    assert state.admit(False) == 0.0
    state.stop("quota")
    assert [state.admit(False) for _ in range(3)] == ["quota"] * 3
    state.stop("max_calls")
    assert state.admit(True) == "quota"
    summary = state.summary()
    assert (summary.calls, summary.stopped) == (1, "quota")


def test_record_adds_up_the_workers_counts_and_summary_times_from_the_clock() -> None:
    clock = FakeClock()
    state = LimitsState(clock=clock.monotonic)
    state.admit(False)
    state.record({"photos": 3, "answered": 2, "failed": 1, "not_attempted": 0})
    # A worker's own call count is not added: the calls are the ones admitted here.
    state.record({"photos": 4, "answered": 1, "from_store": 1, "not_attempted": 2, "calls": 9})
    clock.time += 7.5
    summary = state.summary()
    assert (summary.photos, summary.answered, summary.from_store) == (7, 3, 1)
    assert (summary.failed, summary.not_attempted, summary.calls) == (1, 2, 1)
    assert summary.elapsed == pytest.approx(7.5)


@pytest.mark.parametrize("rate", [0, -1, math.nan, "10", True])
def test_a_rate_limit_that_is_not_a_positive_number_is_refused(rate: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="rate_limit"):
        LimitsState(rate_limit=rate)
    # ClusterLimits checks on the driver, before Ray is imported or an actor made.
    with pytest.raises(InvalidArgumentError, match="rate_limit"):
        ClusterLimits(rate_limit=rate)


@pytest.mark.parametrize("max_calls", [-1, 1.5, "10", True])
def test_a_budget_that_is_not_a_whole_number_is_refused(max_calls: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="max_calls"):
        LimitsState(max_calls=max_calls)
    with pytest.raises(InvalidArgumentError, match="max_calls"):
        ClusterLimits(max_calls=max_calls)


# -- Annotator in-process, against the loopback emulator -------------------------------------------


@pytest.fixture
def creds(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The worker's environment as a Ray node would have it: the emulator's fake keys."""
    monkeypatch.setenv(ENV_CLIENT_ID, emu.client_id)
    monkeypatch.setenv(ENV_CLIENT_SECRET, emu.client_secret)
    monkeypatch.delenv(ENV_BASE_URL, raising=False)
    return emu


def expected_schema() -> Any:
    pa = pytest.importorskip("pyarrow")
    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64()}
    return pa.schema([(name, types[kind]) for name, kind in COLUMNS])


def run(annotator: Annotator, *batches: Any) -> list[Any]:
    """The tables of ``batches``, in one event loop as a Ray actor runs them."""

    async def go() -> list[Any]:
        return [await annotator(batch) for batch in batches]

    return asyncio.run(go())


def test_every_batch_format_gives_the_same_table_in_the_export_schema(creds: Emulator) -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    photos = [noise_jpeg(i) for i in range(3)]
    paths = ["a/none.jpg", "a/two.jpg", "b/one.jpg"]
    two = [make_face(5, 5, 30, 30), make_face(40, 8, 20, 24)]
    creds.reply("face", faces=two, match=photos[1], times=None)
    creds.reply("face", faces=[make_face(10, 12, 40, 36)], match=photos[2], times=None)
    columns = {"bytes": np.array(photos, dtype=object), "path": np.array(paths)}
    annotator = Annotator(base_url=creds.base_url, concurrency=2)

    tables = run(
        annotator,
        columns,
        pd.DataFrame({"bytes": photos, "path": paths}),
        pa.table({"bytes": pa.array(photos, pa.binary()), "path": pa.array(paths)}),
    )

    for table in tables:
        assert table.schema == expected_schema()
        assert table.schema.names == [name for name, _ in COLUMNS]
        assert table.num_rows == 4  # no face: one row; two faces: two rows; one face: one row
        assert table.column("file").to_pylist() == [paths[0], paths[1], paths[1], paths[2]]
        shas = [hashlib.sha256(photo).hexdigest() for photo in photos]
        assert table.column("sha256").to_pylist() == [shas[0], shas[1], shas[1], shas[2]]
        assert table.column("face").to_pylist() == [None, 0, 1, 0]
        assert table.column("x").to_pylist() == [None, 5, 40, 10]
        assert set(table.column("operation").to_pylist()) == {"face"}
        assert table.column("error").to_pylist() == [None] * 4
        assert all(rid.startswith("emu-") for rid in table.column("request_id").to_pylist())
    # Every call gets its own request id; all else is the same whatever the format.
    same = [table.drop_columns(["request_id"]) for table in tables]
    assert same[0].equals(same[1]) and same[0].equals(same[2])
    assert creds.calls() == 9


def test_batches_run_side_by_side_within_one_bound_of_calls_per_worker(creds: Emulator) -> None:
    # Ray gives an async actor several batches at once: they share the worker's `concurrency`.
    np = pytest.importorskip("numpy")
    pytest.importorskip("pyarrow")
    creds.latency = 0.05
    annotator = Annotator(base_url=creds.base_url, concurrency=3)
    batches = [
        {"bytes": np.array([noise_jpeg(10 * b + i) for i in range(6)], dtype=object)}
        for b in range(3)
    ]

    async def together() -> list[Any]:
        return list(await asyncio.gather(*(annotator(batch) for batch in batches)))

    tables = asyncio.run(together())
    assert [table.num_rows for table in tables] == [6, 6, 6]
    assert creds.calls() == 18
    # Side by side (more than one batch's worth at once would show), never above the bound.
    assert creds.max_in_flight == 3


def test_a_batch_of_paths_reads_the_files(creds: Emulator, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    pytest.importorskip("pyarrow")
    files = write_photos(tmp_path, 3)
    creds.reply("face", faces=[make_face(8, 8, 30, 30)], match=files[1].read_bytes())
    annotator = Annotator(base_url=creds.base_url)

    (table,) = run(annotator, {"path": np.array([str(f) for f in files])})

    assert table.schema == expected_schema()
    assert table.column("file").to_pylist() == [str(f) for f in files]
    shas = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    assert table.column("sha256").to_pylist() == shas
    assert table.column("face").to_pylist() == [None, 0, None]
    assert table.column("error").to_pylist() == [None] * 3
    assert sorted(hashlib.sha256(r.image_bytes or b"").hexdigest() for r in creds.requests) == (
        sorted(shas)
    )


def test_a_missing_and_a_corrupt_file_are_one_error_row_each(
    creds: Emulator, tmp_path: Path
) -> None:
    np = pytest.importorskip("numpy")
    pytest.importorskip("pyarrow")
    (good,) = write_photos(tmp_path, 1)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not a whole JPEG")
    missing = tmp_path / "missing.jpg"
    paths = [str(missing), str(corrupt), str(good)]
    annotator = Annotator(base_url=creds.base_url)

    (table,) = run(annotator, {"path": np.array(paths)})

    assert table.schema == expected_schema()
    rows = table.to_pylist()
    assert [row["file"] for row in rows] == paths
    assert rows[0]["error"].startswith("ImageError: ") and "missing.jpg" in rows[0]["error"]
    assert rows[0]["sha256"] is None
    assert rows[1]["error"].split(":")[0] in ("ImageError", "InvalidImageError")
    # The corrupt file's hash is kept: a rerun (`pending`) knows it and does not send it again.
    assert rows[1]["sha256"] == hashlib.sha256(corrupt.read_bytes()).hexdigest()
    assert rows[2]["error"] is None and rows[2]["face"] is None
    assert creds.calls() == 1  # neither bad file cost a call


def test_a_batch_without_bytes_or_paths_is_refused(creds: Emulator) -> None:
    np = pytest.importorskip("numpy")
    pytest.importorskip("pyarrow")
    annotator = Annotator(base_url=creds.base_url)
    with pytest.raises(InvalidArgumentError, match=r"'bytes'.*'path'"):
        run(annotator, {"image": np.array([noise_jpeg(0)], dtype=object)})
    # Named columns are what it reads, so the same batch goes through with them.
    renamed = Annotator(base_url=creds.base_url, bytes_column="image")
    (table,) = run(renamed, {"image": np.array([noise_jpeg(0)], dtype=object)})
    assert table.num_rows == 1 and table.column("error").to_pylist() == [None]


@pytest.mark.parametrize("option", ["client_id", "client_secret", "http_client"])
def test_credentials_in_client_options_are_refused(creds: Emulator, option: str) -> None:
    value = "test-secret-in-options-4b1d"
    with pytest.raises(InvalidArgumentError, match=option) as caught:
        Annotator(base_url=creds.base_url, client_options={"timeout": 5, option: value})
    assert value not in str(caught.value) and value not in repr(caught.value)


@pytest.mark.parametrize(
    "missing",
    [(ENV_CLIENT_ID, ENV_CLIENT_SECRET), (ENV_CLIENT_ID,), (ENV_CLIENT_SECRET,)],
    ids=["both", "id", "secret"],
)
def test_missing_credentials_name_both_variables_and_the_fix(
    creds: Emulator, monkeypatch: pytest.MonkeyPatch, missing: tuple[str, ...]
) -> None:
    for name in missing:
        monkeypatch.delenv(name)
    with pytest.raises(CFRError) as caught:
        Annotator(base_url=creds.base_url)
    message = str(caught.value)
    assert ENV_CLIENT_ID in message and ENV_CLIENT_SECRET in message
    assert credentials_hint() in message
    assert "runtime_env" in message  # says where not to put them: Ray logs those values
    assert creds.client_secret not in message and creds.client_secret not in repr(caught.value)


# -- Secrets: never in what Ray pickles or shows ---------------------------------------------------


def test_what_ray_pickles_for_the_workers_holds_no_secret(creds: Emulator) -> None:
    pytest.importorskip("pyarrow")  # the Annotator builds its output schema when made
    secret = creds.client_secret.encode()
    # What annotate() passes to map_batches, without the limits (they need a cluster).
    kwargs = {
        "operation": "face",
        "concurrency": 4,
        "base_url": creds.base_url,
        "client_options": {"timeout": 5, "max_retries": 1},
    }
    annotator = Annotator(**kwargs)  # type: ignore[arg-type]
    assert secret not in pickle.dumps(kwargs)
    assert secret not in pickle.dumps((Annotator, kwargs))
    assert creds.client_secret not in repr(annotator)


def test_a_refused_key_is_an_error_row_without_the_secret(
    creds: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    np = pytest.importorskip("numpy")
    pytest.importorskip("pyarrow")
    wrong = "test-secret-wrong-7e2a"
    monkeypatch.setenv(ENV_CLIENT_SECRET, wrong)
    annotator = Annotator(base_url=creds.base_url, client_options={"max_retries": 0})
    (table,) = run(annotator, {"bytes": np.array([noise_jpeg(1)], dtype=object)})
    (error,) = table.column("error").to_pylist()
    assert error.startswith("AuthenticationError: ")
    assert wrong not in error and creds.client_secret not in error
