"""Finding a font that can draw Hangul, so celebrity names render as names, not boxes.

Pillow draws nothing but its own tiny Latin font unless it is given a font file, and no font
Pillow can find by itself has Hangul. [`find_font`][ncp_cfr.fonts.find_font] looks, in this order,
for:

1. the ``font=`` argument (a path, or an already loaded font);
2. the file named by the ``NCP_CFR_FONT`` environment variable;
3. a font with Hangul installed on the system (Apple SD Gothic Neo on macOS, Malgun Gothic on
   Windows, Noto Sans CJK or Nanum fonts on Linux, then whatever ``fc-list :lang=ko`` reports);
4. NanumGothic from the optional ``fonts`` extra (the ``koreanize-matplotlib`` package,
   which ships it under the SIL Open Font License).

Explicit choices (1 and 2) are used as given, and a path that cannot be loaded raises
[`FontError`][ncp_cfr.FontError]. Discovered fonts (3 and 4) must prove they have Hangul glyphs
first. The discovery runs once per process; [`clear_font_cache`][ncp_cfr.fonts.clear_font_cache]
forgets it (after installing a font).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Union

from PIL import ImageFont

from ncp_cfr.errors import FontError

__all__ = [
    "ENV_VAR",
    "FontError",
    "FontLike",
    "LoadedFont",
    "clear_font_cache",
    "find_font",
    "has_glyphs",
    "load_font",
]

#: The environment variable naming a font file to draw labels with.
ENV_VAR = "NCP_CFR_FONT"

LoadedFont = Union[ImageFont.FreeTypeFont, ImageFont.ImageFont]
#: What ``font=`` accepts: a path to a TrueType/OpenType file (``.ttf``, ``.otf``, ``.ttc``) or a
#: font Pillow already loaded.
FontLike = Union[str, "os.PathLike[str]", ImageFont.FreeTypeFont, ImageFont.ImageFont]

_INSTALL_HINT = (
    'install a Hangul font with `pip install "clova-face[fonts]"`, or point the '
    f"{ENV_VAR} environment variable (or the font= argument) at a .ttf/.otf/.ttc file"
)

# Probe text: one Hangul syllable. U+10FFFF is a noncharacter no font maps, so it always renders
# as the font's missing-glyph box, the "tofu" a Hangul-less font would draw for '가'.
_HANGUL_PROBE = "가"
_MISSING = "\U0010ffff"
_PROBE_SIZE = 24
_FC_LIST_TIMEOUT = 2.0

# Lower-case file-name fragments of fonts likely to carry Hangul: scanning every font on a system
# and opening each would be slow, so directory scans only open files whose name matches.
_KOREAN_NAME_HINTS = (
    "cjk",
    "nanum",
    "malgun",
    "applesdgothic",
    "applegothic",
    "gulim",
    "batang",
    "dotum",
    "gungsuh",
    "unbatang",
    "undotum",
    "baekmuk",
    "kr",
)
_FONT_SUFFIXES = (".ttf", ".otf", ".ttc")


def find_font(font: FontLike | None = None) -> Path | None:
    """The font file labels are drawn with.

    Args:
        font: a font file path, or a font Pillow already loaded (its file is returned when it
            has one). ``None`` looks at ``NCP_CFR_FONT``, the system and the ``fonts`` extra.

    Returns:
        The path of the font file, or ``None`` when nothing with Hangul was found (labels then
        use Pillow's built-in Latin font) or a loaded font has no file of its own.

    Raises:
        FontError: ``font`` or ``NCP_CFR_FONT`` names a file that is missing or not a font.
    """
    if isinstance(font, (ImageFont.FreeTypeFont, ImageFont.ImageFont)):
        path = getattr(font, "path", None)
        return Path(path) if isinstance(path, (str, os.PathLike)) else None
    if font is not None:
        return _checked_path(font, "font=")
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return _checked_path(env, ENV_VAR)
    return _discover()


def load_font(size: int, font: FontLike | None = None) -> LoadedFont:
    """A font to draw labels with, at ``size`` pixels.

    Args:
        size: the font size in pixels (ignored by Pillow's legacy bitmap fonts).
        font: as for [`find_font`][ncp_cfr.fonts.find_font]. A loaded TrueType font is returned at
            ``size``; a bitmap font is returned as is.

    Returns:
        The resolved font, or Pillow's built-in font when none was found (Latin only).

    Raises:
        FontError: ``font`` or ``NCP_CFR_FONT`` names a file that is missing or not a font.
    """
    size = max(1, int(size))
    if isinstance(font, ImageFont.FreeTypeFont):
        return font if font.size == size else font.font_variant(size=size)
    if isinstance(font, ImageFont.ImageFont):
        return font
    path = find_font(font)
    if path is None:
        return ImageFont.load_default(size)
    return _truetype(str(path), size)


def has_glyphs(font: LoadedFont, text: str) -> bool:
    """Whether ``font`` draws every non-space character of ``text`` as a real glyph.

    A character counts as missing when it renders exactly like a codepoint no font has
    (the font's missing-glyph box) or renders nothing at all.
    """
    return all(ch.isspace() or _has_glyph(font, ch) for ch in text)


def clear_font_cache() -> None:
    """Forget the discovered font and the loaded fonts, e.g. after installing a font."""
    _discover.cache_clear()
    _truetype.cache_clear()
    _has_glyph.cache_clear()


# -- resolution ---------------------------------------------------------------------------------


def _checked_path(value: str | os.PathLike[str], source: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise FontError(f"{source}: font file {str(path)!r} does not exist; {_INSTALL_HINT}")
    try:
        _truetype(str(path), _PROBE_SIZE)
    except OSError as exc:
        raise FontError(
            f"{source}: {str(path)!r} is not a font Pillow can read ({exc}); {_INSTALL_HINT}"
        ) from None
    return path


@functools.lru_cache(maxsize=1)
def _discover() -> Path | None:
    for candidate in _system_candidates():
        if _is_hangul_font(candidate):
            return candidate
    extra = _extra_font()
    if extra is not None and _is_hangul_font(extra):
        return extra
    return None


def _system_candidates() -> Iterator[Path]:
    """Font files that may have Hangul, best first, without opening them yet."""
    seen: set[Path] = set()
    for path in _well_known_paths():
        if path.is_file() and path not in seen:
            seen.add(path)
            yield path
    for directory in _font_directories():
        for path in _scan(directory):
            if path not in seen:
                seen.add(path)
                yield path
    for path in _fc_list_korean():
        if path not in seen:
            seen.add(path)
            yield path


def _well_known_paths() -> list[Path]:
    if sys.platform == "darwin":
        return [
            Path("/System/Library/Fonts/AppleSDGothicNeo.ttc"),
            Path("/System/Library/Fonts/Supplemental/AppleGothic.ttf"),
            Path("/Library/Fonts/AppleGothic.ttf"),
        ]
    if sys.platform == "win32":
        windir = Path(os.environ.get("WINDIR", "C:/Windows")) / "Fonts"
        return [windir / "malgun.ttf", windir / "gulim.ttc", windir / "batang.ttc"]
    return [
        Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
        Path("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc"),
        Path("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc"),
        Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf"),
        Path("/usr/share/fonts/nanum/NanumGothic.ttf"),
    ]


def _font_directories() -> list[Path]:
    home = Path.home()
    if sys.platform == "darwin":
        return [Path("/Library/Fonts"), home / "Library" / "Fonts"]
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        return [Path(local) / "Microsoft" / "Windows" / "Fonts"] if local else []
    return [Path("/usr/share/fonts"), home / ".fonts", home / ".local" / "share" / "fonts"]


def _scan(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    try:
        found = [
            path
            for path in directory.rglob("*")
            if path.suffix.lower() in _FONT_SUFFIXES
            and any(hint in path.name.lower() for hint in _KOREAN_NAME_HINTS)
        ]
    except OSError:
        return []
    # Regular weights first: bold or light label text looks off at small sizes.
    return sorted(found, key=lambda p: (_weight_rank(p.name), p.name))


def _weight_rank(name: str) -> int:
    lowered = name.lower()
    if "regular" in lowered or not any(w in lowered for w in ("bold", "light", "thin", "black")):
        return 0
    return 1


def _fc_list_korean() -> list[Path]:
    executable = shutil.which("fc-list")
    if executable is None:
        return []
    try:
        completed = subprocess.run(
            [executable, ":lang=ko", "file"],
            capture_output=True,
            text=True,
            timeout=_FC_LIST_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    paths = [
        Path(line.strip().removesuffix(":").strip())
        for line in completed.stdout.splitlines()
        if line.strip()
    ]
    usable = [p for p in paths if p.suffix.lower() in _FONT_SUFFIXES]
    return sorted(usable, key=lambda p: (_weight_rank(p.name), p.name))


def _extra_font() -> Path | None:
    # find_spec locates the package without importing it: importing koreanize_matplotlib would
    # import matplotlib and reconfigure its fonts, which a drawing call has no business doing.
    try:
        spec = importlib.util.find_spec("koreanize_matplotlib")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "fonts" / "NanumGothic.ttf"
        if path.is_file():
            return path
    return None


def _is_hangul_font(path: Path) -> bool:
    try:
        font = _truetype(str(path), _PROBE_SIZE)
    except OSError:
        return False
    return _has_glyph(font, _HANGUL_PROBE)


# -- loading and glyph checks ---------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _truetype(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@functools.lru_cache(maxsize=4096)
def _has_glyph(font: LoadedFont, ch: str) -> bool:
    if not isinstance(font, ImageFont.FreeTypeFont):
        # Pillow's legacy bitmap fonts cover Latin-1 at best.
        return ord(ch) < 0x100
    glyph = font.getmask(ch)
    if glyph.getbbox() is None:
        return False
    missing = font.getmask(_MISSING)
    return bool(glyph.size != missing.size or bytes(glyph) != bytes(missing))
