"""A phone photo end to end: oversized, EXIF-rotated, through the client and the emulator.

The emulator's detector here finds a red marker in whatever was uploaded, so the box it answers
is in the upload's pixels; the client must hand it back on the caller's upright photo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from ncp_cfr import draw_faces
from ncp_cfr.testing import Emulator, make_face

MARKER = (4300, 900, 500, 500)  # x, y, w, h in the upright 5974x3988 photo


def _red_marker_detector(img: Image.Image) -> list[dict[str, Any]]:
    pixels = np.asarray(img.convert("RGB")).astype(int)
    mask = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return []
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    return [make_face(int(x0), int(y0), int(x1 - x0), int(y1 - y0))]


@pytest.fixture(scope="module")
def phone_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 MP, noisy enough to be far over 2 MB, stored sideways with EXIF orientation 6."""
    rng = np.random.default_rng(7)
    width, height = 5974, 3988
    base = rng.integers(60, 200, size=(height // 4, width // 4, 3), dtype=np.uint8)
    upright = Image.fromarray(base).resize((width, height), Image.Resampling.BILINEAR)
    noise = rng.integers(-25, 25, size=(height, width, 3))
    upright = Image.fromarray(
        np.clip(np.asarray(upright, dtype=int) + noise, 0, 255).astype(np.uint8)
    )
    x, y, w, h = MARKER
    upright.paste((230, 20, 20), (x, y, x + w, y + h))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path_factory.mktemp("phone") / "IMG_0042.jpg"
    stored.save(path, "JPEG", quality=92, exif=exif)
    assert path.stat().st_size > 2_000_000
    with Image.open(path) as check:
        assert ImageOps.exif_transpose(check).size == (width, height)
    return path


@pytest.mark.parametrize("in_process", [False, True])
def test_box_lands_on_the_marker_in_the_callers_upright_pixels(
    phone_photo: Path, in_process: bool
) -> None:
    emu = Emulator(detector=_red_marker_detector)
    with emu, emu.client(in_process=in_process) as client:
        result = client.detect_faces(phone_photo)
        [upload] = emu.requests
    assert upload.image_bytes is not None and len(upload.image_bytes) <= 2_000_000
    assert upload.width is not None and upload.height is not None
    assert upload.width > upload.height  # the upload is upright too
    assert (result.info.size.width, result.info.size.height) == (5974, 3988)
    roi = result.faces[0].roi
    x, y, w, h = MARKER
    tolerance = 5974 / upload.width + 2  # one upload pixel, in caller pixels, plus rounding
    assert abs(roi.x - x) <= tolerance and abs(roi.y - y) <= tolerance
    assert abs(roi.width - w) <= 2 * tolerance and abs(roi.height - h) <= 2 * tolerance
    landmark = result.faces[0].landmark
    assert landmark is not None and x <= landmark.nose.x <= x + w and y <= landmark.nose.y <= y + h


def test_drawing_on_the_original_file_outlines_the_marker(phone_photo: Path) -> None:
    emu = Emulator(detector=_red_marker_detector)
    with emu, emu.client(in_process=True) as client:
        result = client.detect_faces(phone_photo)
    overlay = draw_faces(phone_photo, result, labels=False, landmarks=False)
    with Image.open(phone_photo) as original:
        upright = ImageOps.exif_transpose(original).convert("RGB")
    assert overlay.size == upright.size == (5974, 3988)
    changed = np.any(np.asarray(overlay) != np.asarray(upright), axis=2)
    ys, xs = np.nonzero(changed)
    x, y, w, h = MARKER
    # Everything drawn hugs the marker: the box outline and nothing anywhere else.
    slack = 40
    assert x - slack <= xs.min() <= x + 5 and x + w - 5 <= xs.max() <= x + w + slack
    assert y - slack <= ys.min() <= y + 5 and y + h - 5 <= ys.max() <= y + h + slack
