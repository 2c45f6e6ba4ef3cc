"""The README and the docs run as written, and the API reference renders clean.

Every ```` ```python ```` block of README.md and docs/*.md is a test, with the Markdown file and
the block's first line as its id (``README.md:42``). Blocks of one page run in order in one
namespace, as a reader would run them in one notebook: a block may use what an earlier block of
the same page defined. Each page runs in a temporary folder holding the files the pages name
(``photo.jpg``, ``IMG_0042.jpg``, ``photos/`` ...: copies of the bundled photos) with
``NCP_CFR_BASE_URL`` and the fake keys pointing at a loopback ``Emulator()`` of its own, so
``Client()`` with no arguments reaches it, as after ``ncp-cfr emulator`` and its ``export`` lines.

A block that cannot run here is marked in the Markdown, on the line right before its fence::

    <!-- docs-test: skip reason="needs a server on port 8080" -->

and is reported as skipped with that reason. ``bash``, ``text`` and other blocks are not run.

``test_mkdocs_site_is_clean`` builds the site with ``mkdocs build --strict`` (unresolved
cross-references are warnings, so they fail it) and scans the HTML for raw reST roles and private
names. It takes a few seconds; deselect it with ``-k "not mkdocs"``.
"""

from __future__ import annotations

import ast
import contextlib
import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ncp_cfr import protocol
from ncp_cfr.testing import Emulator

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
HOPPER = ROOT / "ncp_cfr" / "data" / "grace_hopper.jpg"
ASTRONAUT = ROOT / "tests" / "data" / "astronaut.png"

FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<what>\w+)(?:\s+reason=\"(?P<reason>[^\"]*)\")?\s*-->")
PYTHON = {"python", "py", "python3"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the block's first code line
    code: str
    skip: str | None  # the reason, when the page marks the block as not runnable here

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def python_blocks(page: Path) -> list[Block]:
    """The page's Python blocks, in order, with their skip markers."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group("fence"), (m.group("info").split() or [""])[0].lower()
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        if lang in PYTHON:
            before = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
            mark = MARKER.search(before)
            skip = None
            if mark and mark.group("what") == "skip":
                skip = mark.group("reason") or ""
                assert skip, f'{page.name}:{i + 1}: a skipped block says why: reason="..."'
            code = "\n".join(lines[i + 1 : end])
            blocks.append(Block(page, i + 2, code, skip))
        i = end + 1
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in python_blocks(page)]


# -- the reader's folder -------------------------------------------------------------------------


def _group_photo(path: Path) -> None:
    """Two people side by side: Grace Hopper and Eileen Collins."""
    left = Image.open(HOPPER).convert("RGB")
    right = Image.open(ASTRONAUT).convert("RGB").resize(left.size)
    group = Image.new("RGB", (left.width * 2, left.height), "white")
    group.paste(left, (0, 0))
    group.paste(right, (left.width, 0))
    group.save(path, quality=92)


def make_reader_folder(folder: Path) -> None:
    """The files the pages name, as copies of the bundled photos."""
    for name in (
        "IMG_0042.jpg",
        "photo.jpg",
        "me.jpg",
        "portrait.jpg",
        "hopper.jpg",
        "grace_hopper.jpg",
    ):
        shutil.copy(HOPPER, folder / name)
    shutil.copy(ASTRONAUT, folder / "astronaut.png")
    Image.open(HOPPER).resize((400, 469)).save(folder / "hopper_2.jpg", quality=90)
    _group_photo(folder / "group.jpg")
    for sub in ("photos", "trip"):
        (folder / sub).mkdir()
        shutil.copy(HOPPER, folder / sub / "hopper.jpg")
        Image.open(ASTRONAUT).convert("RGB").save(folder / sub / "astronaut.jpg", quality=90)
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        Image.open(HOPPER).save(folder / "IMG_2041.HEIC")
    except Exception:  # no HEIC encoder here: the HEIC block says so when it runs
        pass


@dataclass
class Page:
    folder: Path
    emulator: Emulator
    namespace: dict[str, Any] = field(default_factory=dict)
    done: int = 0  # blocks run so far, in page order


class Pages:
    """One reader's folder, emulator and namespace per Markdown page, made when first needed."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._pages: dict[Path, Page] = {}

    def get(self, page: Path) -> Page:
        if page not in self._pages:
            folder = self._factory.mktemp(page.stem.lower())
            make_reader_folder(folder)
            self._pages[page] = Page(folder, Emulator().start())
        return self._pages[page]

    def close(self) -> None:
        for page in self._pages.values():
            page.emulator.stop()


@pytest.fixture(scope="session")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pages]:
    opened = Pages(tmp_path_factory)
    yield opened
    opened.close()


def _run(block: Block, page: Page) -> None:
    # Padded so that a traceback names the Markdown file and its line.
    source = "\n" * (block.line - 1) + block.code
    code = compile(source, str(block.page), "exec")
    exec(code, page.namespace)


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.id for b in ALL_BLOCKS])
def test_block_runs(block: Block, pages: Pages, monkeypatch: pytest.MonkeyPatch) -> None:
    if block.skip is not None:
        pytest.skip(f"{block.id}: {block.skip}")
    page = pages.get(block.page)
    for name, value in page.emulator.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NCP_CFR_FONT", raising=False)
    monkeypatch.chdir(page.folder)
    if ".HEIC" in block.code and not (page.folder / "IMG_2041.HEIC").exists():
        pytest.skip(f"{block.id}: pillow-heif cannot write a HEIC sample here")
    if block.page.name == "millions-of-photos.md" and importlib.util.find_spec("ray") is None:
        pytest.skip(f'{block.id}: needs Ray: pip install -e ".[ray]"')
    page_blocks = [b for b in ALL_BLOCKS if b.page == block.page]
    index = page_blocks.index(block)
    # Earlier blocks of the page first (when only this one was selected): it may use their names.
    while page.done < index:
        earlier = page_blocks[page.done]
        page.done += 1
        if earlier.skip is None:
            # A failure is reported by that block's own test; this block may still work.
            with contextlib.suppress(Exception):
                _run(earlier, page)
    page.done = index + 1
    _run(block, page)


def test_blocks_are_found() -> None:
    """The collector sees the blocks (a renamed fence would silently drop them)."""
    assert len(ALL_BLOCKS) >= 25
    assert any(b.page.name == "README.md" for b in ALL_BLOCKS)
    for block in ALL_BLOCKS:
        if block.skip is None:
            ast.parse(block.code, filename=block.id)


def test_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert "ncp-cfr demo" in first_block
    assert "python -m pytest" in first_block
    assert 'pip install "clova-face[emulator,fonts]"' in text
    assert "not made or endorsed by NAVER" in " ".join(text.split())


def test_no_old_distribution_name_in_install_lines() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"pip install \S*ncp[-_]cfr\[", text), page.name


def test_errors_page_lists_every_error_class() -> None:
    import ncp_cfr.errors as errors

    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    classes = [
        name
        for name in errors.__all__
        if isinstance(getattr(errors, name), type) and issubclass(getattr(errors, name), Exception)
    ]
    assert "FontError" in classes
    missing = [name for name in classes if f"`{name}`" not in text]
    assert not missing, f"docs/errors.md does not mention {missing}"


def test_reference_shows_values_and_no_private_bases() -> None:
    """docs/griffe_public_api.py: private (generic) bases folded in with their type arguments,
    constants shown as their values, sentinels by name, methods with what a caller gets."""
    griffe = pytest.importorskip("griffe", reason="pip install -e '.[docs]' for the docs tools")
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from griffe_public_api import PublicAPI
    finally:
        sys.path.remove(str(ROOT / "docs"))
    extensions = griffe.load_extensions(PublicAPI())
    pkg = griffe.load("ncp_cfr", search_paths=[str(ROOT)], extensions=extensions)
    for path, http in (
        ("clients._sync.Client", "httpx.Client"),
        ("clients._async.AsyncClient", "httpx.AsyncClient"),
    ):
        cls = pkg[path]
        assert pkg[cls.name].final_target is cls  # what the reference renders as ncp_cfr.Client
        assert cls.bases == []  # no private base, no Generic[...]
        public = {"with_options", "base_url", "timeout", "max_retries", "detect_faces"}
        assert public <= set(cls.members)
        init = {p.name: p for p in cls.members["__init__"].parameters}
        defaults = {name: str(p.default) for name, p in init.items()}
        assert defaults["timeout"] == repr(protocol.DEFAULT_TIMEOUT)
        assert defaults["connect_timeout"] == repr(protocol.DEFAULT_CONNECT_TIMEOUT)
        assert defaults["max_retries"] == repr(protocol.DEFAULT_MAX_RETRIES)
        # The base's TypeVar, bound by the subscript: the concrete httpx class.
        assert str(init["http_client"].annotation) == f"{http} | None"
        with_options = cls.members["with_options"]
        options = [p for p in with_options.parameters if p.name != "self"]
        assert options and all(str(p.default) == "NOT_GIVEN" for p in options)
        assert str(with_options.returns) == cls.name  # not the base's self-type
        detect = cls.members["detect_faces"]
        assert str(detect.returns) == "FaceResult"
        assert ("async" in detect.labels) == (cls.name == "AsyncClient")
    # Only the copies are specialised: the base keeps its own signature.
    base_init = pkg["clients._base.ClientBase"].members["__init__"]
    assert str(base_init.parameters["http_client"].annotation) == "HttpT | None"
    assert [str(b) for b in pkg["models.FaceResult"].bases] == ["BaseModel"]
    assert "raw" in pkg["models.FaceResult"].members


# -- the site ------------------------------------------------------------------------------------

RAW_ROLE = re.compile(r":(meth|class|func|data|mod|attr|exc|obj):")
PRIVATE = re.compile(r"_ClientBase|\bncp_cfr(?:\.\w+)*\._\w+")


def test_mkdocs_site_is_clean(tmp_path: Path) -> None:
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "material"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: pip install -e '.[docs]' to build the site")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    warnings = [ln for ln in done.stderr.splitlines() if ln.startswith(("WARNING", "ERROR"))]
    assert done.returncode == 0 and not warnings, done.stderr[-4000:]
    problems = []
    for page in sorted(site.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        for pattern in (RAW_ROLE, PRIVATE):
            for m in pattern.finditer(text):
                where = page.relative_to(site)
                problems.append(f"{where}: {text[max(0, m.start() - 60) : m.end() + 20]!r}")
    assert not problems, f"{len(problems)} raw roles or private names:\n" + "\n".join(problems[:20])
    reference = (site / "reference" / "index.html").read_text(encoding="utf-8")
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", reference)).split())
    # Defaults are shown as values (``timeout: float = 30.0``), never as a constant's name.
    assert not re.search(r"= (?:\w+\.)*DEFAULT_\w+", text)
    assert "http_client: httpx.Client | None = None" in text
    assert "timeout: float | NotGiven = NOT_GIVEN" in text
    assert "Single[" not in text  # the methods return what the caller gets
    # The layers diagram is rendered as a diagram, not shown as code.
    architecture = (site / "architecture" / "index.html").read_text(encoding="utf-8")
    assert '<pre class="mermaid">' in architecture
