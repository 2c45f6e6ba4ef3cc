"""``ncp-cfr``: outputs, exit codes and errors, against the loopback emulator."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from ncp_cfr import __version__
from ncp_cfr.cli import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from ncp_cfr.testing import Emulator, make_celebrity, make_face

from .conftest import HOPPER as PHOTO
from .conftest import start_standalone

#: The summary every batch prints last on stderr (tested on its own below).
SUMMARY = re.compile(r"^ncp-cfr: \d+ photos: ")


def notices(err: str) -> list[str]:
    """The lines of stderr other than the batch summary."""
    return [line for line in err.strip().splitlines() if not SUMMARY.match(line)]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, emu: Emulator) -> Emulator:
    for name, value in emu.env().items():
        monkeypatch.setenv(name, value)
    return emu


@pytest.fixture
def photos(tmp_path: Path, hopper_path: Path) -> list[Path]:
    folder = tmp_path / "photos"
    folder.mkdir()
    first = folder / "a.jpg"
    first.write_bytes(hopper_path.read_bytes())
    second = folder / "b.png"
    Image.open(hopper_path).resize((256, 300)).save(second)
    return [first, second]


def test_face_table_for_a_folder(
    env: Emulator, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    env.reply(
        "face", faces=[make_face(100, 100, 200, 200, gender="female", age="40~44")], times=None
    )
    code = main(["face", str(photos[0].parent), "--no-progress"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "a.jpg" in out and "b.png" in out and "female" in out and "40~44" in out
    assert env.calls("face") == 2


def test_jsonl_gives_one_parseable_line_per_file_in_callers_pixels(
    env: Emulator, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    env.reply("face", faces=[make_face(100, 100, 200, 200)], times=None)
    assert main(["face", *map(str, photos), "--jsonl"]) == EXIT_OK
    lines = capsys.readouterr().out.strip().splitlines()
    # One line per file as each finishes: in the order they finished, each naming its file.
    records = sorted(
        (json.loads(line) for line in lines), key=lambda r: photos.index(Path(r["file"]))
    )
    assert [r["file"] for r in records] == [str(p) for p in photos]
    assert records[1]["result"]["info"]["size"] == {"width": 256, "height": 300}
    assert all(r["error"] is None for r in records)
    assert env.client_secret not in "\n".join(lines)


def test_partial_failure_exit_code_and_one_line_per_error(
    env: Emulator, photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.jpg"
    code = main(["face", str(photos[0]), str(missing), "--json"])
    captured = capsys.readouterr()
    assert code == EXIT_PARTIAL
    document = json.loads(captured.out)
    assert document[0]["error"] is None
    assert document[1]["error"]["type"] == "ImageError"
    [line] = notices(captured.err)
    assert "missing.jpg" in line and "ImageError" in line


def test_everything_failing_exits_1(
    env: Emulator, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    env.inject("200", times=None)  # the gateway refuses the keys
    assert main(["face", *map(str, photos), "--max-retries", "0"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.count("AuthenticationError") == 2
    assert env.client_secret not in err


def test_no_credentials_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NCP_CFR_CLIENT_ID", raising=False)
    monkeypatch.delenv("NCP_CFR_CLIENT_SECRET", raising=False)
    assert main(["face", str(photos[0])]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "NCP_CFR_CLIENT_ID" in err and "--emulator" in err


def test_bad_options_and_empty_globs_are_usage_errors(env: Emulator, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["face", "x.jpg", "--concurrency", "0"])
    assert info.value.code == EXIT_USAGE
    assert main(["face", str(tmp_path / "*.jpg")]) == EXIT_USAGE


def test_celebrity_table_shows_hangul_names(
    env: Emulator, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    env.reply("celebrity", faces=[make_celebrity("이다희", 0.61)])
    assert main(["celebrity", str(photos[0])]) == EXIT_OK
    assert "이다희" in capsys.readouterr().out


def test_draw_writes_overlays(env: Emulator, photos: list[Path], tmp_path: Path) -> None:
    env.reply("face", faces=[make_face(100, 100, 200, 200)], times=None)
    out = tmp_path / "overlays"
    assert main(["face", *map(str, photos), "--draw", str(out)]) == EXIT_OK
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a.cfr.jpg", "b.cfr.jpg"]
    with Image.open(out / "b.cfr.jpg") as overlay:
        assert overlay.size == (256, 300)


def test_analyze_command(
    env: Emulator, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    env.reply("face", faces=[make_face(100, 100, 200, 200, gender="female")])
    env.reply("celebrity", faces=[make_celebrity("이다희", 0.7)])
    assert main(["analyze", str(photos[0]), "--json"]) == EXIT_OK
    [record] = json.loads(capsys.readouterr().out)
    assert record["result"]["faces"][0]["lookalike"]["value"] == "이다희"


def test_lookalike_command(
    env: Emulator, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    env.reply("celebrity", faces=[make_celebrity("이다희", 0.7)], times=None)
    assert main(["lookalike", str(photos[0]), "--scales", "200,400", "--json"]) == EXIT_OK
    [record] = json.loads(capsys.readouterr().out)
    assert "이다희" in json.dumps(record["result"], ensure_ascii=False)
    assert env.calls("celebrity") == 2


def test_module_entry_point_and_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ncp_cfr", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NCP_CFR_CLIENT_SECRET": ""},
    )
    assert done.returncode == 0 and __version__ in done.stdout


def test_emulator_command_serves_any_http_client_and_hides_the_secret(tmp_path: Path) -> None:
    secret = "fake-secret-from-the-command-line"
    process, banner = start_standalone(
        [
            "-m",
            "ncp_cfr",
            "emulator",
            "--port",
            "0",
            "--detector",
            "none",
            "--client-id",
            "fake-id",
            "--client-secret",
            secret,
        ]
    )
    try:
        assert secret not in banner
        url = banner.split("NCP_CFR_BASE_URL=")[1].split()[0]
        keys = {"X-NCP-APIGW-API-KEY-ID": "fake-id", "X-NCP-APIGW-API-KEY": secret}
        files = {"image": ("a.jpg", PHOTO.read_bytes(), "image/jpeg")}
        response = httpx.post(f"{url}/vision/v1/face", headers=keys, files=files, timeout=10)
        assert response.status_code == 200 and response.json()["faces"] == []
        refused = httpx.post(
            f"{url}/vision/v1/face",
            headers={**keys, "X-NCP-APIGW-API-KEY": "no"},
            files=files,
            timeout=10,
        )
        assert refused.status_code == 401
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0 and "Traceback" not in err
    assert secret not in out


@pytest.mark.detector
def test_demo_runs_offline_and_writes_an_overlay(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NCP_CFR_CLIENT_ID", raising=False)
    monkeypatch.delenv("NCP_CFR_CLIENT_SECRET", raising=False)
    out = tmp_path / "demo.jpg"
    assert main(["demo", "--out", str(out)]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "built-in emulator" in printed and "1 face" in printed
    assert "그레이스 호퍼" in printed and "frontal_face" in printed
    with Image.open(out) as overlay, Image.open(PHOTO) as original:
        assert overlay.size == original.size
        assert overlay.convert("RGB").tobytes() != original.convert("RGB").tobytes()


def test_lookalike_default_scales(
    env: Emulator, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    env.reply("celebrity", faces=[make_celebrity("이다희", 0.7)], times=None)
    assert main(["lookalike", str(photos[0])]) == EXIT_OK
    out = capsys.readouterr().out
    assert "best: 이다희" in out and "stable" in out
    assert env.calls("celebrity") >= 3  # several sizes, capped at the photo's own 600 px


# -- issue 10: overlays, lookalike verdicts, scale limits, one-line failures ----------------------


def test_draw_says_where_each_overlay_went(
    env: Emulator, photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.reply("face", faces=[make_face(100, 100, 200, 200)], times=None)
    out = tmp_path / "overlays"
    assert main(["face", *map(str, photos), "--draw", str(out)]) == EXIT_OK
    captured = capsys.readouterr()
    assert f"overlay: {out / 'a.cfr.jpg'}" in captured.out.splitlines()
    assert f"overlay: {out / 'b.cfr.jpg'}" in captured.out.splitlines()
    assert notices(captured.err) == []


def test_draw_with_jsonl_keeps_stdout_json_and_reports_overlays_on_stderr(
    env: Emulator, photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.reply("face", faces=[make_face(100, 100, 200, 200)], times=None)
    out = tmp_path / "overlays"
    assert main(["face", *map(str, photos), "--draw", str(out), "--jsonl"]) == EXIT_OK
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert sorted(r["file"] for r in records) == sorted(str(p) for p in photos)
    assert sorted(notices(captured.err)) == [
        f"ncp-cfr: {photos[0]}: overlay: {out / 'a.cfr.jpg'}",
        f"ncp-cfr: {photos[1]}: overlay: {out / 'b.cfr.jpg'}",
    ]


def test_draw_never_overwrites_an_overlay_of_the_same_run(
    env: Emulator, hopper_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.reply("face", faces=[make_face(100, 100, 200, 200)], times=None)
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.jpg").write_bytes(hopper_path.read_bytes())
    out = tmp_path / "overlays"
    inputs = [str(tmp_path / "x" / "same.jpg"), str(tmp_path / "y" / "same.jpg")]
    assert main(["face", *inputs, "--draw", str(out)]) == EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == ["same-2.cfr.jpg", "same.cfr.jpg"]
    assert f"overlay: {out / 'same-2.cfr.jpg'}" in capsys.readouterr().out


def test_an_overlay_that_cannot_be_written_is_one_line_per_file(
    env: Emulator, photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.reply("face", faces=[make_face(100, 100, 200, 200)], times=None)
    not_a_folder = tmp_path / "taken"
    not_a_folder.write_text("a file where the folder should go")
    code = main(["face", *map(str, photos), "--draw", str(not_a_folder), "--jsonl"])
    captured = capsys.readouterr()
    assert code == EXIT_FAILED
    lines = notices(captured.err)
    assert len(lines) == 2 and all("cannot write the overlay" in line for line in lines)
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert len(records) == 2  # one record per file, with its result and the overlay's error
    assert all(r["result"] is not None and r["error"] is not None for r in records)


def test_a_weak_lookalike_is_no_clear_match(
    env: Emulator, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # The service always names somebody: a 1 % name at every size is a guess, not a match.
    env.reply("celebrity", faces=[make_celebrity("그레이스 호퍼", 0.01)], times=None)
    assert main(["lookalike", str(photos[0]), "--scales", "200,400"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "no clear match" in out and "a match needs 30%" in out
    assert "best:" not in out and "stable" not in out
    assert "그레이스 호퍼" in out  # the ranking is still shown

    assert main(["lookalike", str(photos[0]), "--scales", "200,400", "--json"]) == EXIT_OK
    [record] = json.loads(capsys.readouterr().out)
    assert record["result"]["best"] is None and record["result"]["stable"] is False
    assert record["result"]["candidates"][0]["name"] == "그레이스 호퍼"


def test_lookalike_match_confidence_option(
    env: Emulator, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    env.reply("celebrity", faces=[make_celebrity("이다희", 0.2)], times=None)
    args = ["lookalike", str(photos[0]), "--scales", "200,400"]
    assert main([*args, "--match-confidence", "0.1"]) == EXIT_OK
    assert "best: 이다희 (2 of 2 sizes, mean 20%, stable)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main([*args, "--match-confidence", "2"])
    assert info.value.code == EXIT_USAGE


def test_scales_above_the_limit_are_refused_not_capped(
    env: Emulator, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["lookalike", str(photos[0]), "--scales", "320,4096"])
    assert info.value.code == EXIT_USAGE
    [line] = notices(capsys.readouterr().err)
    assert "4096 px is above the limit of 2048 px" in line
    assert env.calls("celebrity") == 0


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["face", "x.jpg", "--concurrency", "0"], ["frobnicate"], []):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == EXIT_USAGE
        [line] = notices(capsys.readouterr().err)
        assert line.startswith("ncp-cfr") and "error:" in line and "--help" in line


def test_a_file_that_cannot_be_written_is_one_line_and_exit_1(
    env: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.reply("face", faces=[make_face(100, 100, 200, 200)], times=None)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["demo", "--out", str(blocker / "demo.jpg")]) == EXIT_FAILED
    [line] = notices(capsys.readouterr().err)
    assert line.startswith("ncp-cfr: error: ") and "Error" in line


def test_retry_notices_are_one_line_each_on_stderr(
    env: Emulator, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # The SDK logs each retry as a WARNING on the ``ncp_cfr`` logger; the CLI shows them.
    env.inject("ER21")  # a transient server-side timeout, retried once
    assert main(["face", str(photos[0])]) == EXIT_OK
    err = notices(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("ncp-cfr: ") and "retry" in err[0]
    assert env.client_secret not in err[0]


def test_a_retry_notice_is_printed_once_when_the_caller_configured_logging(
    env: Emulator, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # A program that ran logging.basicConfig() before calling main(): the notice propagated to
    # its root handler and was printed twice.
    root = logging.getLogger()
    theirs = logging.StreamHandler(sys.stderr)  # capsys's stderr, as basicConfig() would use
    theirs.setFormatter(logging.Formatter("theirs: %(message)s"))
    root.addHandler(theirs)
    try:
        env.inject("ER21")  # a transient server-side timeout, retried once
        assert main(["face", str(photos[0])]) == EXIT_OK
        during = notices(capsys.readouterr().err)
        # After main, the SDK's notices reach the caller's handlers again, and only those.
        logging.getLogger("ncp_cfr").warning("after main")
        after = notices(capsys.readouterr().err)
    finally:
        root.removeHandler(theirs)
    assert len(during) == 1 and during[0].startswith("ncp-cfr: ") and "retry" in during[0]
    assert after == ["theirs: after main"]


def test_a_batch_ends_with_its_summary_on_stderr(
    env: Emulator, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["face", *map(str, photos), "--jsonl"]) == EXIT_OK
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert SUMMARY.match(last)
    assert f"{len(photos)} photos: {len(photos)} answered, 0 from the store" in last


def test_lookalike_remembers_its_votes_in_the_store(
    env: Emulator, photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.reply("celebrity", faces=[make_celebrity("이다희", 0.7)], times=None)
    store = tmp_path / "library.db"
    argv = ["lookalike", *map(str, photos), "--scales", "200,400", "--store", str(store)]
    assert main([*argv, "--jsonl"]) == EXIT_OK
    paid = env.calls("celebrity")
    assert paid == 2 * len(photos)
    capsys.readouterr()
    assert main([*argv, "--jsonl"]) == EXIT_OK  # the rerun: every vote from the store
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(
        r["from_store"] and "이다희" in json.dumps(r["result"], ensure_ascii=False) for r in records
    )
    assert env.calls("celebrity") == paid


def test_a_reader_that_stops_early_ends_the_run_quietly(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        Image.new("RGB", (120, 100), (i * 6, 80, 80)).save(folder / f"p{i:02d}.jpg")
    command = [sys.executable, "-m", "ncp_cfr", "face", str(folder), "--emulator"]
    child = subprocess.Popen(
        [*command, "--detector", "none", "--jsonl", "--concurrency", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    json.loads(child.stdout.readline())  # like `| head -1`: one line, then the pipe is closed
    child.stdout.close()
    err = child.stderr.read()
    assert child.wait(timeout=60) == 141  # the shell's code for a closed pipe
    assert "Traceback" not in err and "BrokenPipeError" not in err
