"""Font discovery and loading, tested on ``ncp_cfr.fonts`` directly.

Most tests replace the discovery steps with ``monkeypatch`` and use Pillow's own Latin-only
TrueType font written to a file, so they mean the same on every machine. The few that need real
Hangul glyphs use NanumGothic from the ``[fonts]`` extra. tests/test_draw.py checks fonts through
drawing; this file does not repeat its cases.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import ImageFont

import ncp_cfr
from ncp_cfr import fonts
from ncp_cfr.errors import FontError

HINT = 'pip install "clova-face[fonts]"'


@pytest.fixture(autouse=True)
def fresh_fonts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(fonts.ENV_VAR, raising=False)
    fonts.clear_font_cache()
    yield
    fonts.clear_font_cache()


@pytest.fixture
def latin(tmp_path: Path) -> Path:
    """A real TrueType font without Hangul (Pillow's built-in Aileron), as a file."""
    source = getattr(ImageFont.load_default(24), "path", None)
    if not isinstance(source, io.BytesIO):
        pytest.skip("this Pillow has no FreeType: its built-in font is a bitmap")
    path = tmp_path / "Aileron-Regular.ttf"
    path.write_bytes(source.getvalue())
    return path


@pytest.fixture
def nanum() -> Path:
    path = fonts._extra_font()
    if path is None:
        if os.environ.get("CI"):  # CI installs [dev], which includes [fonts]: never a silent skip
            pytest.fail("CI needs the [fonts] extra's NanumGothic (koreanize-matplotlib)")
        pytest.skip('no Hangul font to test with: pip install "clova-face[fonts]"')
    return path


@pytest.fixture
def no_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing installed on this machine is found."""
    monkeypatch.setattr(fonts, "_system_candidates", lambda: iter(()))
    monkeypatch.setattr(fonts, "_extra_font", lambda: None)


def accept(*names: str) -> tuple[list[Path], Callable[[Path], bool]]:
    """A stand-in for the Hangul probe: records what it is asked and accepts files by name."""
    tried: list[Path] = []

    def is_hangul_font(path: Path) -> bool:
        tried.append(path)
        return path.name in names

    return tried, is_hangul_font


# -- explicit choices: errors that say what is wrong and what to do --------------------------------


def test_a_missing_font_names_the_path_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ttf"
    for value in (str(missing), missing, tmp_path):  # a directory is no font file either
        with pytest.raises(FontError) as info:
            fonts.find_font(value)
        message = str(info.value)
        assert message.startswith("font=:") and repr(str(value)) in message
        assert "does not exist" in message
        assert HINT in message and fonts.ENV_VAR in message
        with pytest.raises(FontError, match="does not exist"):
            fonts.load_font(20, value)
    # One class, reachable from the package, and a ValueError for code that catches those.
    assert ncp_cfr.FontError is FontError and issubclass(FontError, ValueError)


def test_a_file_that_is_not_a_font_is_refused_until_it_is_replaced(
    tmp_path: Path, latin: Path
) -> None:
    bogus = tmp_path / "bogus.ttf"
    bogus.write_bytes(b"this is a text file")
    with pytest.raises(FontError) as info:
        fonts.find_font(bogus)
    message = str(info.value)
    assert "is not a font Pillow can read" in message and repr(str(bogus)) in message
    assert HINT in message
    # The failure is not cached: once a real font is there, it loads (no clear_font_cache).
    shutil.copyfile(latin, bogus)
    assert fonts.find_font(bogus) == bogus


def test_an_explicit_font_is_used_as_given_even_without_hangul(
    monkeypatch: pytest.MonkeyPatch, latin: Path
) -> None:
    """Explicit choices are the user's: only discovered fonts must prove they have Hangul."""
    tried, probe = accept("Anything.ttf")
    monkeypatch.setattr(fonts, "_is_hangul_font", probe)
    monkeypatch.setattr(fonts, "_system_candidates", lambda: iter([Path("/x/Anything.ttf")]))
    assert fonts.find_font(str(latin)) == latin
    assert fonts.find_font(latin) == latin
    monkeypatch.setenv(fonts.ENV_VAR, str(latin))
    assert fonts.find_font() == latin
    loaded = fonts.load_font(20)
    assert isinstance(loaded, ImageFont.FreeTypeFont) and loaded.path == str(latin)
    assert not fonts.has_glyphs(loaded, "이다희")  # drawing turns those into "?" (test_draw)
    assert tried == []  # discovery was never consulted


def test_the_font_argument_wins_over_a_broken_environment_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, latin: Path
) -> None:
    monkeypatch.setenv(fonts.ENV_VAR, str(tmp_path / "gone.ttf"))
    assert fonts.find_font(latin) == latin
    with pytest.raises(FontError) as info:
        fonts.find_font()
    assert str(info.value).startswith(f"{fonts.ENV_VAR}:") and "does not exist" in str(info.value)

    not_a_font = tmp_path / "notes.ttf"
    not_a_font.write_text("hello")
    monkeypatch.setenv(fonts.ENV_VAR, str(not_a_font))
    with pytest.raises(FontError, match=f"^{fonts.ENV_VAR}: .*is not a font Pillow can read"):
        fonts.load_font(20)


@pytest.mark.usefixtures("no_discovery")
def test_the_environment_variable_is_trimmed_expanded_and_read_on_every_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, latin: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # expanduser's home on POSIX
    monkeypatch.setenv("USERPROFILE", str(tmp_path))  # and on Windows
    monkeypatch.setenv(fonts.ENV_VAR, f"  ~/{latin.name}\n")
    assert fonts.find_font() == latin
    # Discovery is cached, the variable is not: a new value counts at once.
    other = tmp_path / "Other.ttf"
    shutil.copyfile(latin, other)
    monkeypatch.setenv(fonts.ENV_VAR, str(other))
    assert fonts.find_font() == other
    monkeypatch.setenv(fonts.ENV_VAR, "   ")  # blank: as if unset, discovery decides
    assert fonts.find_font() is None


def test_a_loaded_font_reports_its_file_or_none(latin: Path) -> None:
    assert fonts.find_font(ImageFont.truetype(str(latin), 12)) == latin
    assert fonts.find_font(ImageFont.load_default(12)) is None  # loaded from memory
    assert fonts.find_font(ImageFont.load_default_imagefont()) is None  # a bitmap font


# -- discovery -------------------------------------------------------------------------------------


def test_discovery_order_filters_and_duplicates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Well-known files, then font directories (by name, regular weights first), then fc-list,
    then the extra; each file probed once, and nothing probed that cannot be a Hangul font."""
    directory = tmp_path / "fonts"
    (directory / "sub").mkdir(parents=True)
    for name in (
        "NanumGothicBold.ttf",
        "NanumGothic.ttf",
        "MALGUN.TTF",
        "NotoSansCJK-Light.ttc",
        "sub/NotoSansCJKkr-Regular.otf",
        "DejaVuSans.ttf",  # no Korean name: not opened by the directory scan
        "nanum-license.txt",  # not a font file
    ):
        (directory / name).write_bytes(b"")
    well_known = [tmp_path / "absent" / "AppleSDGothicNeo.ttc", directory / "NanumGothicBold.ttf"]
    other = tmp_path / "other"
    fc_output = (
        f"{directory / 'NanumGothic.ttf'}: \n{other / 'UnDotum.ttf'}:\n"
        f"{other / 'DejaVuSans.ttf'}:\n{other / 'fonts.conf'}:\n\n"
    )
    runs: list[dict[str, Any]] = []

    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        runs.append(kwargs)
        return subprocess.CompletedProcess(args, 0, stdout=fc_output, stderr="")

    extra = tmp_path / "extra" / "NanumGothic.ttf"
    monkeypatch.setattr(fonts, "_well_known_paths", lambda: well_known)
    monkeypatch.setattr(fonts, "_font_directories", lambda: [directory, tmp_path / "nowhere"])
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/fc-list")
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(fonts, "_extra_font", lambda: extra)
    tried, probe = accept()
    monkeypatch.setattr(fonts, "_is_hangul_font", probe)

    assert fonts.find_font() is None
    assert tried == [
        directory / "NanumGothicBold.ttf",  # well-known: before any scan, whatever its weight
        directory / "MALGUN.TTF",
        directory / "NanumGothic.ttf",
        directory / "sub" / "NotoSansCJKkr-Regular.otf",
        directory / "NotoSansCJK-Light.ttc",
        other / "DejaVuSans.ttf",  # fc-list answered for :lang=ko: its fonts need no Korean name
        other / "UnDotum.ttf",
        extra,
    ]
    assert [kw["timeout"] for kw in runs] == [fonts._FC_LIST_TIMEOUT]  # never an unbounded wait

    # The first font with Hangul wins; nothing after it is probed, and fc-list is not run.
    tried.clear()
    runs.clear()
    monkeypatch.setattr(fonts, "_is_hangul_font", accept("NanumGothic.ttf")[1])
    fonts.clear_font_cache()
    assert fonts.find_font() == directory / "NanumGothic.ttf"
    assert runs == []


@pytest.mark.parametrize(
    "failure",
    [
        subprocess.TimeoutExpired(["fc-list"], 2.0),
        PermissionError("fc-list: permission denied"),
        None,  # fc-list not installed
    ],
    ids=["fc-list-hangs", "fc-list-unrunnable", "no-fc-list"],
)
def test_fc_list_failing_falls_through_to_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, failure: Exception | None
) -> None:
    runs: list[float] = []

    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        runs.append(kwargs["timeout"])
        assert failure is not None
        raise failure

    extra = tmp_path / "NanumGothic.ttf"
    monkeypatch.setattr(fonts, "_well_known_paths", lambda: [])
    monkeypatch.setattr(fonts, "_font_directories", lambda: [])
    monkeypatch.setattr(shutil, "which", lambda name: None if failure is None else "/bin/fc-list")
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(fonts, "_extra_font", lambda: extra)
    monkeypatch.setattr(fonts, "_is_hangul_font", accept(extra.name)[1])
    assert fonts.find_font() == extra
    assert runs == ([] if failure is None else [fonts._FC_LIST_TIMEOUT])


@pytest.mark.usefixtures("no_discovery")
def test_unreadable_or_latin_only_discovered_fonts_are_passed_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, latin: Path
) -> None:
    corrupt = tmp_path / "NanumBroken.ttf"
    corrupt.write_bytes(b"\x00\x01\x00\x00 truncated")
    monkeypatch.setattr(fonts, "_system_candidates", lambda: iter([corrupt, latin]))
    assert fonts.find_font() is None  # no error: discovery only ever finds or does not
    # Labels then use Pillow's built-in font, at the size asked for.
    builtin = fonts.load_font(18)
    assert isinstance(builtin, ImageFont.FreeTypeFont) and builtin.size == 18
    assert fonts.find_font(builtin) is None


def test_a_corrupt_system_font_does_not_hide_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, latin: Path, nanum: Path
) -> None:
    corrupt = tmp_path / "NanumBroken.ttf"
    corrupt.write_bytes(b"\x00\x01\x00\x00 truncated")
    monkeypatch.setattr(fonts, "_system_candidates", lambda: iter([corrupt, latin]))
    monkeypatch.setattr(fonts, "_extra_font", lambda: nanum)
    assert fonts.find_font() == nanum


def test_this_machine_finds_a_hangul_font(nanum: Path) -> None:
    """Real discovery, nothing replaced: with the extra installed it cannot come back empty."""
    found = fonts.find_font()
    assert found is not None and found.is_file()
    assert fonts.has_glyphs(fonts.load_font(24), "이다희")


# -- caching ---------------------------------------------------------------------------------------


def test_clear_font_cache_picks_up_a_newly_installed_font(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    installed: list[Path] = []
    scans: list[int] = []

    def candidates() -> Iterator[Path]:
        scans.append(1)
        return iter(list(installed))

    monkeypatch.setattr(fonts, "_system_candidates", candidates)
    monkeypatch.setattr(fonts, "_extra_font", lambda: None)
    monkeypatch.setattr(fonts, "_is_hangul_font", accept("NanumGothic.ttf")[1])
    assert fonts.find_font() is None
    installed.append(tmp_path / "NanumGothic.ttf")
    assert fonts.find_font() is None  # discovery runs once per process...
    fonts.clear_font_cache()
    assert fonts.find_font() == tmp_path / "NanumGothic.ttf"  # ...until told to look again
    assert len(scans) == 2


def test_loaded_fonts_are_shared_until_the_cache_is_cleared(latin: Path) -> None:
    first = fonts.load_font(20, latin)
    assert fonts.load_font(20, str(latin)) is first  # no second parse of the file
    assert fonts.load_font(21, latin) is not first
    fonts.clear_font_cache()
    reloaded = fonts.load_font(20, latin)
    assert reloaded is not first
    assert isinstance(reloaded, ImageFont.FreeTypeFont) and reloaded.size == 20


# -- load_font -------------------------------------------------------------------------------------


def test_load_font_sizes(latin: Path) -> None:
    for size in (0, -7):  # clamped: Pillow refuses a size below 1
        tiny = fonts.load_font(size, latin)
        assert isinstance(tiny, ImageFont.FreeTypeFont) and tiny.size == 1
    given = ImageFont.truetype(str(latin), 16)
    assert fonts.load_font(16, given) is given
    resized = fonts.load_font(30, given)
    assert isinstance(resized, ImageFont.FreeTypeFont)
    assert (resized.size, resized.path, given.size) == (30, str(latin), 16)
    bitmap = ImageFont.load_default_imagefont()
    assert fonts.load_font(40, bitmap) is bitmap  # a bitmap font has one size


# -- has_glyphs ------------------------------------------------------------------------------------


def test_has_glyphs_with_a_hangul_font(nanum: Path) -> None:
    font = fonts.load_font(24, nanum)
    assert fonts.has_glyphs(font, "이다희 송중기")
    assert fonts.has_glyphs(font, "Lee Da-hee 이다희")
    assert fonts.has_glyphs(font, " \t\n")  # whitespace draws nothing and needs no glyph
    assert not fonts.has_glyphs(font, "이다희\U0010ffff")  # one missing character is enough
    assert not fonts.has_glyphs(font, "\uffff")


def test_has_glyphs_with_a_latin_only_font(latin: Path) -> None:
    font = fonts.load_font(24, latin)
    assert fonts.has_glyphs(font, "Grace Hopper")
    assert not fonts.has_glyphs(font, "이다희")
    assert not fonts.has_glyphs(font, "Grace 이")


def test_has_glyphs_with_a_bitmap_font() -> None:
    bitmap = ImageFont.load_default_imagefont()
    assert fonts.has_glyphs(bitmap, "café")  # Latin-1
    assert not fonts.has_glyphs(bitmap, "Ā")  # U+0100: past Latin-1
    assert not fonts.has_glyphs(bitmap, "이")
