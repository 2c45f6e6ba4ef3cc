"""Property test: whatever the size, orientation and format, the upload is compliant and the
transform maps points back."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ncp_cfr.images import DEFAULT_MAX_BYTES, prepare_image

sizes = st.one_of(
    st.tuples(st.integers(1, 80), st.integers(1, 80)),  # tiny
    st.tuples(st.integers(200, 900), st.integers(1, 120)),  # wide
    st.tuples(st.integers(1, 120), st.integers(200, 900)),  # tall
    st.tuples(st.integers(1, 700), st.integers(1, 700)),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=sizes,
    orientation=st.integers(1, 8),
    fmt=st.sampled_from(["JPEG", "PNG"]),
    max_side=st.sampled_from([None, 50, 150, 1920]),
    max_bytes=st.sampled_from([DEFAULT_MAX_BYTES, 40_000]),
    seed=st.integers(0, 2**16),
    point=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_upload_is_compliant_and_maps_back(
    size: tuple[int, int],
    orientation: int,
    fmt: str,
    max_side: int | None,
    max_bytes: int,
    seed: int,
    point: tuple[float, float],
) -> None:
    width, height = size
    rng = np.random.default_rng(seed)
    stored = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, fmt, exif=exif)

    prepared = prepare_image(buffer.getvalue(), max_side=max_side, max_bytes=max_bytes)

    upload = Image.open(io.BytesIO(prepared.data))
    upload.load()
    assert upload.format in ("JPEG", "PNG")
    assert upload.size == (prepared.width, prepared.height)
    assert min(upload.size) >= 50
    assert upload.width < 4 * upload.height
    assert max_side is None or max(upload.size) <= max_side
    assert len(prepared.data) <= max_bytes

    upright = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    assert (prepared.source_width, prepared.source_height) == upright
    x, y = point[0] * upright[0], point[1] * upright[1]
    ux, uy = prepared.transform.to_upload(x, y)
    assert -0.5 <= ux <= prepared.width + 0.5 and -0.5 <= uy <= prepared.height + 0.5
    bx, by = prepared.transform.to_source(ux, uy)
    assert abs(bx - x) <= 1 and abs(by - y) <= 1
