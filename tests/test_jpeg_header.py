"""The JPEG header reader behind the fast path agrees with Pillow, and defers when unsure."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from ncp_cfr.errors import ImageError
from ncp_cfr.images import prepare_image
from ncp_cfr.images._jpeg import read_jpeg_header

from .conftest import HOPPER


def jpeg(
    size: tuple[int, int] = (320, 240),
    mode: str = "RGB",
    *,
    orientation: int | None = None,
    progressive: bool = False,
) -> bytes:
    image = Image.new(mode, size, "white" if mode != "CMYK" else (0, 0, 0, 0))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, exif=exif.tobytes(), progressive=progressive)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (jpeg((320, 240)), (320, 240, 3, 1, False)),
        (jpeg((240, 320), "L"), (240, 320, 1, 1, False)),
        (jpeg((320, 240), progressive=True), (320, 240, 3, 1, False)),
        (jpeg((320, 240), orientation=6), (320, 240, 3, 6, False)),
        (jpeg((320, 240), orientation=1), (320, 240, 3, 1, False)),
        (jpeg((320, 240), "CMYK"), (320, 240, 4, 1, False)),
    ],
    ids=["rgb", "grey", "progressive", "rotated", "upright-tag", "cmyk"],
)
def test_the_header_says_what_pillow_says(data: bytes, expected: tuple[object, ...]) -> None:
    header = read_jpeg_header(data)
    assert header is not None
    with Image.open(io.BytesIO(data)) as im:
        bands = {"L": 1, "RGB": 3, "CMYK": 4}[im.mode]
        assert (header.width, header.height, header.components) == (*im.size, bands)
        assert header.orientation == im.getexif().get(0x0112, 1)
    assert (
        header.width,
        header.height,
        header.components,
        header.orientation,
        header.multi_frame,
    ) == expected


def test_the_demo_photo_is_read() -> None:
    header = read_jpeg_header(HOPPER.read_bytes())
    assert header is not None and (header.width, header.height) == Image.open(HOPPER).size


def test_an_mpo_is_seen_as_more_frames() -> None:
    data = jpeg()
    mpf = b"MPF\x00" + b"\x00" * 8
    segment = b"\xff\xe2" + struct.pack(">H", len(mpf) + 2) + mpf
    header = read_jpeg_header(data[:2] + segment + data[2:])
    assert header is not None and header.multi_frame


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff\xe0\x00",  # a segment cut short
        b"\xff\xd8\xff\xc3\x00\x0b\x08\x00\x10\x00\x10\x01\x01\x11\x00",  # lossless coding
        b"\xff\xd8\xff\xc0\x00\x0b\x0c\x00\x10\x00\x10\x01\x01\x11\x00",  # 12-bit samples
        b"\xff\xd8\x00\x00\x00\x00",  # no marker where one must be
        b"\xff\xd8\xff\xe1\x00\x0cExif\x00\x00XXXX",  # EXIF that is not TIFF
    ],
    ids=["empty", "png", "cut", "lossless", "12-bit", "no-marker", "bad-exif"],
)
def test_anything_unusual_is_left_to_pillow(data: bytes) -> None:
    assert read_jpeg_header(data) is None


@pytest.mark.parametrize(
    "data",
    [jpeg(), jpeg(mode="L"), jpeg(progressive=True)],
    ids=["rgb", "grey", "progressive"],
)
def test_a_complying_jpeg_is_sent_as_it_is(data: bytes) -> None:
    prepared = prepare_image(data)
    assert prepared.data is data or prepared.data == data
    assert not prepared.reencoded


@pytest.mark.parametrize(
    "data",
    [jpeg(orientation=6), jpeg(mode="CMYK"), jpeg((4000, 300))],
    ids=["rotated", "cmyk", "too-wide"],
)
def test_what_does_not_comply_is_prepared_as_before(data: bytes) -> None:
    prepared = prepare_image(data)
    assert prepared.reencoded
    with Image.open(io.BytesIO(prepared.data)) as im:
        assert im.mode in ("L", "RGB")
    if data == jpeg(orientation=6):
        assert (prepared.source_width, prepared.source_height) == (240, 320)  # upright


def test_a_truncated_jpeg_is_refused_as_before() -> None:
    with pytest.raises(ImageError, match=r"truncated|corrupt"):
        prepare_image(jpeg()[:-200])
