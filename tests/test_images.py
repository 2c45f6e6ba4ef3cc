"""Tests of ncp_cfr.images: any input in, a compliant upload out, coordinates mapped back."""

from __future__ import annotations

import hashlib
import io
import struct
import subprocess
import sys
import threading
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ncp_cfr import images
from ncp_cfr.errors import CFRError, ImageError, InvalidArgumentError
from ncp_cfr.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SIDE,
    PreparedImage,
    Transform,
    open_image,
    prepare_image,
)

# The repository's own copies of the public-domain photos: a clean clone needs nothing else.
HOPPER = Path(images.__file__).parent.parent / "data" / "grace_hopper.jpg"
ASTRONAUT = Path(__file__).parent / "data" / "astronaut.png"
RED = (255, 0, 0)


# --------------------------------------------------------------------------------------------
# helpers


def encode(img: Image.Image, fmt: str = "JPEG", **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def decode(prepared: PreparedImage) -> Image.Image:
    img = Image.open(io.BytesIO(prepared.data))
    img.load()
    return img


def assert_compliant(
    prepared: PreparedImage,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> Image.Image:
    """What the service requires of an upload, checked on the bytes themselves."""
    img = decode(prepared)
    assert img.format in ("JPEG", "PNG")
    assert img.format == prepared.format
    assert prepared.content_type == f"image/{img.format.lower()}"
    assert img.size == (prepared.width, prepared.height)
    assert min(img.size) >= 50
    assert img.width < 4 * img.height
    if max_side is not None:
        assert max(img.size) <= max_side
    assert len(prepared.data) <= max_bytes
    return img


def photo(size: tuple[int, int] = (512, 600)) -> Image.Image:
    return Image.open(HOPPER).convert("RGB").resize(size)


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def marked(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    """A grey image with one red rectangle (left, top, right, bottom)."""
    img = Image.new("RGB", size, (90, 90, 90))
    img.paste(RED, box)
    return img


def red_centre(img: Image.Image) -> tuple[float, float]:
    arr = np.asarray(img.convert("RGB")).astype(int)
    mask = (arr[..., 0] > 180) & (arr[..., 1] < 90) & (arr[..., 2] < 90)
    ys, xs = np.nonzero(mask)
    assert len(xs) > 0, "marker not found"
    return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5  # centres of pixels


# The stored pixels of a photo whose EXIF orientation is `o`: viewers apply _TRANSPOSE[o] to them.
# TRANSPOSE, TRANSVERSE, flips and 180 are their own inverse; 90 and 270 undo each other.
_INVERSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def with_orientation(upright: Image.Image, orientation: int, fmt: str = "JPEG") -> bytes:
    stored = upright.transpose(_INVERSE[orientation]) if orientation != 1 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    params: dict[str, Any] = {"exif": exif}
    if fmt == "JPEG":
        params["quality"] = 95
    return encode(stored, fmt, **params)


def checksum(img: Image.Image) -> str:
    return hashlib.sha256(img.tobytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# Transform


def test_transform_round_trip_and_box() -> None:
    t = Transform(0.5, 0.25, 10, 20)
    assert t.to_upload(100, 200) == (60.0, 70.0)
    assert t.to_source(60, 70) == (100.0, 200.0)
    # box corners map through, rounded half up; not clipped (negative stays negative)
    assert t.box_to_source(10, 20, 50, 25) == (0, 0, 100, 100)
    assert t.box_to_source(0, 0, 5, 5) == (-20, -80, 10, 20)
    assert Transform(2.0, 2.0).box_to_source(1, 1, 1, 1) == (1, 1, 0, 0)  # 0.5 -> 1, 1.0 -> 1


def test_transform_shifted_maps_the_bigger_image() -> None:
    crop_to_upload = Transform(2.0, 3.0, 5, 7)
    big_to_upload = crop_to_upload.shifted(100, 40)
    # the point (110, 50) of the big image is (10, 10) of the crop
    assert big_to_upload.to_upload(110, 50) == crop_to_upload.to_upload(10, 10)
    assert big_to_upload.box_to_source(*crop_to_upload.to_upload(10, 10), 20, 30) == (
        110,
        50,
        10,
        10,
    )


def test_transform_identity_and_validation() -> None:
    assert Transform.IDENTITY.to_source(3, 4) == (3, 4)
    assert Transform(1.0, 1.0, 0.0, 0.0) == Transform.IDENTITY
    with pytest.raises(InvalidArgumentError, match="scales must be positive"):
        Transform(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# byte-for-byte pass-through


def test_compliant_jpeg_bytes_sent_as_is() -> None:
    data = HOPPER.read_bytes()
    prepared = prepare_image(data)
    assert prepared.data is data
    assert not prepared.reencoded and prepared.quality is None
    assert prepared.transform == Transform.IDENTITY and prepared.scale == 1.0
    assert (prepared.width, prepared.height) == (512, 600)
    assert_compliant(prepared)


def test_compliant_files_sent_as_is_from_path_and_file_object(tmp_path: Path) -> None:
    for source in (HOPPER, ASTRONAUT):
        by_path = prepare_image(source)
        by_str = prepare_image(str(source))
        assert by_path.data == by_str.data == source.read_bytes()
        assert not by_path.reencoded
        assert by_path.format == ("JPEG" if source.suffix == ".jpg" else "PNG")
        with source.open("rb") as f:
            assert prepare_image(f).data == source.read_bytes()


def test_passthrough_needs_every_rule(tmp_path: Path) -> None:
    img = photo()
    plain = prepare_image(encode(img, quality=90))
    assert not plain.reencoded
    # over max_side, over max_bytes, EXIF rotation, CMYK, alpha PNG, 16-bit PNG: all re-encoded
    assert prepare_image(encode(img, quality=90), max_side=300).reencoded
    assert prepare_image(encode(img, quality=90), max_bytes=20_000).reencoded
    assert prepare_image(with_orientation(img, 6)).reencoded
    assert prepare_image(encode(img.convert("CMYK"))).reencoded
    assert prepare_image(encode(img.convert("RGBA"), "PNG")).reencoded
    sixteen = Image.fromarray(np.full((100, 100), 40000, dtype=np.uint16))
    assert prepare_image(encode(sixteen, "PNG")).reencoded
    # EXIF orientation 1 is fine
    assert not prepare_image(with_orientation(img, 1)).reencoded


def test_mpo_sends_only_its_first_frame_as_a_plain_jpeg() -> None:
    # Phones' portrait and 3D modes write MPO: a JPEG with more frames appended. Its bytes pass
    # every rule of a compliant JPEG, but the upload must be the first frame alone.
    first = Image.new("RGB", (320, 240), RED)
    second = Image.new("RGB", (320, 240), (0, 0, 255))
    buf = io.BytesIO()
    first.save(buf, "MPO", save_all=True, append_images=[second])
    mpo = buf.getvalue()
    with Image.open(io.BytesIO(mpo)) as check:
        assert check.format == "MPO" and getattr(check, "n_frames", 1) == 2

    prepared = prepare_image(mpo)
    assert prepared.reencoded
    assert prepared.format == "JPEG" and prepared.data.startswith(b"\xff\xd8")
    assert len(prepared.data) < len(mpo)
    with Image.open(io.BytesIO(prepared.data)) as sent:
        assert sent.format == "JPEG" and "mp" not in sent.info
        assert sent.size == (320, 240)
        r, _, b = sent.convert("RGB").getpixel((160, 120))  # type: ignore[misc]
        assert r > 200 and b < 60  # the first (red) frame, not the second
    assert prepared.transform == Transform.IDENTITY


def test_bytearray_and_memoryview() -> None:
    data = HOPPER.read_bytes()
    assert prepare_image(bytearray(data)).data == data
    assert prepare_image(memoryview(data)).data == data
    # a non-contiguous memoryview is read too (every other byte would not be a JPEG: re-slice)
    doubled = bytes(b for pair in zip(data, data, strict=True) for b in pair)
    assert prepare_image(memoryview(doubled)[::2]).data == data


def test_file_object_is_read_from_its_position_and_restored() -> None:
    data = HOPPER.read_bytes()
    stream = io.BytesIO(b"header" + data)
    stream.seek(6)
    prepared = prepare_image(stream)
    assert prepared.data == data
    assert stream.tell() == 6


# --------------------------------------------------------------------------------------------
# EXIF orientation


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("max_side", [None, 300])
def test_exif_orientation_upright_and_marker_maps_back(
    orientation: int, max_side: int | None
) -> None:
    upright = marked((1600, 1000), (200, 100, 360, 260))  # marker centre (280, 180)
    data = with_orientation(upright, orientation)
    prepared = prepare_image(data, max_side=max_side)
    img = assert_compliant(prepared, max_side=max_side)
    assert (prepared.source_width, prepared.source_height) == (1600, 1000)
    assert prepared.width > prepared.height  # upright: landscape like the upright image
    x, y = red_centre(img)
    sx, sy = prepared.transform.to_source(x, y)
    tolerance = 3 / prepared.scale  # JPEG and resampling blur: a few upload pixels
    assert abs(sx - 280) <= tolerance and abs(sy - 180) <= tolerance
    # open_image shows the same upright picture
    shown = open_image(data)
    assert shown.size == (1600, 1000)
    ox, oy = red_centre(shown)
    assert abs(ox - 280) <= 2 and abs(oy - 180) <= 2


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_in_png(orientation: int) -> None:
    upright = marked((300, 200), (20, 30, 60, 70))
    prepared = prepare_image(with_orientation(upright, orientation, "PNG"))
    assert prepared.reencoded
    x, y = red_centre(decode(prepared))
    assert abs(x - 40) <= 2 and abs(y - 50) <= 2


def test_pil_image_keeps_its_own_grid_even_with_exif() -> None:
    # A PIL image is used as the caller sees it: its own pixel grid, never rotated.
    img = Image.open(io.BytesIO(with_orientation(marked((300, 200), (20, 30, 60, 70)), 6)))
    prepared = prepare_image(img)
    assert (prepared.width, prepared.height) == img.size == (200, 300)
    assert open_image(img).size == (200, 300)


# --------------------------------------------------------------------------------------------
# sizes: downscale, upscale, padding, byte limit


def test_big_jpeg_downscaled_with_exact_mapping() -> None:
    upright = marked((4000, 3000), (1000, 500, 1400, 900))  # centre (1200, 700)
    prepared = prepare_image(encode(upright, quality=90))
    img = assert_compliant(prepared)
    assert prepared.reencoded and prepared.quality == 90
    assert max(img.size) == DEFAULT_MAX_SIDE
    assert prepared.scale == pytest.approx(DEFAULT_MAX_SIDE / 4000)
    x, y = prepared.transform.to_source(*red_centre(img))
    assert abs(x - 1200) <= 4 and abs(y - 700) <= 4
    assert prepared.transform.box_to_source(
        *prepared.transform.to_upload(1000, 500), 400 * prepared.scale, 400 * prepared.scale
    ) == (1000, 500, 400, 400)


# Upright 1601x1003, max_side=200: libjpeg decodes at 1/8 (201x126 or 126x201 stored) and the
# upload keeps 200x125, dropping less than one 8-px block at the stored right and bottom edges:
# 1 px and 3 px (or 3 and 1 when stored rotated). Which upright edges those are depends on the
# orientation; the transform must say so: (left, top) = upright pixel at upload (0, 0).
_DROPPED = {1: (0, 0), 2: (1, 0), 3: (1, 3), 4: (0, 3), 5: (0, 0), 6: (1, 0), 7: (1, 3), 8: (0, 3)}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_dct_scaled_decode_maps_exactly(orientation: int) -> None:
    upright = marked((1601, 1003), (801, 497, 881, 577))  # centre (841, 537)
    prepared = prepare_image(with_orientation(upright, orientation), max_side=200)
    img = assert_compliant(prepared, max_side=200)
    assert img.size == (200, 125)
    t = prepared.transform
    assert (t.scale_x, t.scale_y) == (1 / 8, 1 / 8)
    assert t.to_source(0, 0) == _DROPPED[orientation]
    x, y = t.to_source(*red_centre(img))
    assert abs(x - 841) <= 8 and abs(y - 537) <= 8


def test_big_jpeg_does_not_change_the_callers_lazy_image() -> None:
    data = encode(photo((3000, 2000)), quality=90)
    img = Image.open(io.BytesIO(data))  # not loaded: draft() would change its size
    prepared = prepare_image(img, max_side=400)
    assert img.size == (3000, 2000)
    assert (prepared.width, prepared.height) == (400, 267)


@pytest.mark.parametrize(("size", "expected"), [((10, 10), (50, 50)), ((1, 1), (50, 50))])
def test_tiny_images_are_enlarged(size: tuple[int, int], expected: tuple[int, int]) -> None:
    prepared = prepare_image(photo(size))
    assert_compliant(prepared)
    assert (prepared.width, prepared.height) == expected
    assert prepared.transform.offset_x == prepared.transform.offset_y == 0


def test_small_side_enlarged_keeping_aspect() -> None:
    prepared = prepare_image(photo((120, 40)))
    assert_compliant(prepared)
    assert (prepared.width, prepared.height) == (150, 50)


def test_wide_image_padded_and_mapping_undone() -> None:
    upright = marked((2000, 300), (1500, 100, 1600, 200))  # centre (1550, 150)
    prepared = prepare_image(encode(upright, "PNG"))
    img = assert_compliant(prepared)
    assert img.width < 4 * img.height
    t = prepared.transform
    assert t.offset_y > 0 and t.offset_x == 0
    # the padding is neutral grey, the content is where the transform says
    assert img.getpixel((img.width // 2, 2)) == pytest.approx((128, 128, 128), abs=3)
    x, y = t.to_source(*red_centre(img))
    assert abs(x - 1550) <= 2 and abs(y - 150) <= 2
    assert t.box_to_source(*t.to_upload(1500, 100), 100 * t.scale_x, 100 * t.scale_y) == (
        1500,
        100,
        100,
        100,
    )


def test_extreme_shapes_are_padded_to_the_minimum() -> None:
    tall = prepare_image(photo((20, 4000)))
    assert_compliant(tall)
    assert tall.width == 50 and tall.height == DEFAULT_MAX_SIDE
    line = prepare_image(photo((3000, 1)))
    assert_compliant(line)


def test_max_side_none_keeps_the_size() -> None:
    prepared = prepare_image(photo((2600, 1800)), max_side=None)
    assert (prepared.width, prepared.height) == (2600, 1800)
    assert_compliant(prepared, max_side=None)


@pytest.mark.parametrize(
    ("size", "max_bytes", "max_side"),
    [
        ((3000, 3000), DEFAULT_MAX_BYTES, DEFAULT_MAX_SIDE),
        ((4000, 3000), DEFAULT_MAX_BYTES, None),
        ((1200, 900), 100_000, DEFAULT_MAX_SIDE),
        ((400, 300), 8_000, DEFAULT_MAX_SIDE),
    ],
)
def test_noise_always_fits_max_bytes_in_few_encodes(
    size: tuple[int, int],
    max_bytes: int,
    max_side: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real = images._prepare._encode_jpeg

    def counting(image: Image.Image, quality: int, name: str) -> bytes:
        calls.append(quality)
        return real(image, quality, name)

    monkeypatch.setattr(images._prepare, "_encode_jpeg", counting)
    prepared = prepare_image(noise(*size), max_bytes=max_bytes, max_side=max_side)
    assert_compliant(prepared, max_bytes=max_bytes, max_side=max_side)
    assert len(calls) <= 4, calls


def test_impossible_byte_limit_is_an_image_error() -> None:
    with pytest.raises(ImageError, match="max_bytes"):
        prepare_image(noise(200, 200), max_bytes=300)


def test_bad_arguments() -> None:
    with pytest.raises(ImageError, match="max_side"):
        prepare_image(HOPPER, max_side=20)
    with pytest.raises(ImageError, match="channel_order"):
        prepare_image(HOPPER, channel_order="rbg")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# modes and formats


def _first_pixel(prepared: PreparedImage) -> Any:
    return decode(prepared).convert("RGB").getpixel((5, 5))


def test_alpha_is_flattened_on_white() -> None:
    img = Image.new("RGBA", (100, 100), (255, 0, 0, 0))  # fully transparent red
    img.paste((0, 0, 255, 255), (50, 50, 100, 100))
    for source in (img, encode(img, "PNG"), np.asarray(img)):
        prepared = prepare_image(source)
        out = decode(prepared).convert("RGB")
        assert out.getpixel((10, 10)) == pytest.approx((255, 255, 255), abs=3)
        assert out.getpixel((75, 75)) == pytest.approx((0, 0, 255), abs=6)


def test_palette_with_transparency() -> None:
    img = Image.new("P", (80, 80), 0)
    img.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    img.paste(1, (40, 0, 80, 80))
    img.info["transparency"] = 0
    for source in (img, encode(img, "PNG", transparency=0), encode(img, "GIF", transparency=0)):
        out = decode(prepare_image(source)).convert("RGB")
        assert out.getpixel((10, 40)) == pytest.approx((255, 255, 255), abs=3)
        assert out.getpixel((70, 40)) == pytest.approx((0, 200, 0), abs=8)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: Image.new("CMYK", (60, 60), (0, 255, 255, 0)), (255, 0, 0)),
        (lambda: Image.new("1", (60, 60), 1), (255, 255, 255)),
        (lambda: Image.new("LA", (60, 60), (100, 255)), (100, 100, 100)),
        (lambda: Image.new("L", (60, 60), 77), (77, 77, 77)),
        (lambda: Image.new("I;16", (60, 60), 65535), (255, 255, 255)),
        (lambda: Image.new("I;16", (60, 60), 32896), (128, 128, 128)),
        (lambda: Image.new("I", (60, 60), 200), (200, 200, 200)),
        (lambda: Image.new("F", (60, 60), 50.0), (50, 50, 50)),
        (lambda: Image.new("YCbCr", (60, 60), (76, 85, 255)), (254, 0, 0)),
    ],
)
def test_odd_modes(make: Any, expected: tuple[int, int, int]) -> None:
    img = make()
    before = checksum(img)
    prepared = prepare_image(img)
    assert_compliant(prepared)
    assert _first_pixel(prepared) == pytest.approx(expected, abs=6)
    assert checksum(img) == before
    assert open_image(img).mode in ("RGB", "RGBA", "L")


def test_sixteen_bit_png_scaled_not_clipped() -> None:
    ramp = (np.arange(200 * 100, dtype=np.uint32).reshape(100, 200) * 3).astype(np.uint16)
    out = decode(prepare_image(encode(Image.fromarray(ramp), "PNG")))
    # clipping would make most of the ramp white; scaling keeps the gradient
    assert np.asarray(out.convert("L")).mean() == pytest.approx(ramp.mean() / 257, abs=3)


def test_cmyk_jpeg_reencoded_as_rgb() -> None:
    data = encode(Image.new("CMYK", (100, 100), (0, 255, 255, 0)))
    prepared = prepare_image(data)
    assert prepared.reencoded
    assert decode(prepared).mode in ("RGB", "L")
    assert _first_pixel(prepared) == pytest.approx((255, 0, 0), abs=10)


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF", "GIF", "PPM"])
def test_other_formats_become_jpeg(fmt: str) -> None:
    img = photo((200, 240))
    prepared = prepare_image(encode(img, fmt), filename_hint=f"photo.{fmt.lower()}")
    out = assert_compliant(prepared)
    assert prepared.reencoded and prepared.format == "JPEG"
    assert out.size == (200, 240)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animations_use_the_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (80, 80), c) for c in ((0, 0, 255), (0, 255, 0), (255, 0, 0))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    prepared = prepare_image(data)
    assert prepared.reencoded
    assert _first_pixel(prepared) == pytest.approx((0, 0, 255), abs=12)


def test_heic_via_pillow_heif() -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    registered = dict(Image.OPEN)
    upright = marked((640, 480), (100, 100, 200, 200))
    buffer = io.BytesIO()
    pillow_heif.from_pillow(upright).save(buffer, quality=90)
    data = buffer.getvalue()
    assert data[4:12] == b"ftypheic"
    prepared = prepare_image(data)
    out = assert_compliant(prepared)
    assert prepared.reencoded and out.size == (640, 480)
    x, y = red_centre(out)
    assert abs(x - 150) <= 3 and abs(y - 150) <= 3
    assert open_image(data).size == (640, 480)
    assert dict(Image.OPEN) == registered  # no plugin registered behind the user's back


def test_heic_without_pillow_heif_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes `import pillow_heif` fail
    data = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100
    with pytest.raises(ImageError, match=r'pip install "clova-face\[heic\]"'):
        prepare_image(data)


# --------------------------------------------------------------------------------------------
# arrays


def test_array_kinds() -> None:
    rgb = np.asarray(photo((120, 100)))
    cases: list[tuple[Any, tuple[int, int]]] = [
        (rgb, (120, 100)),
        (rgb[:, :, 0], (120, 100)),
        (rgb[:, :, :1], (120, 100)),
        (np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), (120, 100)),
        (rgb[::2, ::2], (60, 50)),  # non-contiguous view
        (np.asfortranarray(rgb), (120, 100)),
        (rgb.transpose(1, 0, 2), (100, 120)),  # strided view, as cv2.transpose-like code makes
    ]
    for array, size in cases:
        prepared = prepare_image(array)
        assert_compliant(prepared)
        assert (prepared.source_width, prepared.source_height) == size
        assert open_image(array).size == size


def test_bgr_arrays_are_swapped() -> None:
    bgr = np.zeros((60, 60, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV order
    assert _first_pixel(prepare_image(bgr, channel_order="bgr")) == pytest.approx(
        (0, 0, 255), abs=6
    )
    assert _first_pixel(prepare_image(bgr)) == pytest.approx((255, 0, 0), abs=6)
    bgra = np.zeros((60, 60, 4), np.uint8)
    bgra[..., 2] = 255
    bgra[..., 3] = 255
    assert open_image(bgra, channel_order="bgr").getpixel((0, 0)) == (255, 0, 0, 255)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.ones((60, 60), bool), 255),
        (np.full((60, 60), 65535, np.uint16), 255),
        (np.full((60, 60), 257 * 100, np.uint16), 100),
        (np.full((60, 60), 0.5, np.float32), 128),
        (np.full((60, 60), 1.0, np.float64), 255),
        (np.full((60, 60), 200, np.int64), 200),
        (np.full((60, 60), 10, np.int16), 10),
    ],
)
def test_array_dtypes(array: Any, expected: int) -> None:
    assert open_image(array).getpixel((0, 0)) == expected
    assert_compliant(prepare_image(array))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((3, 64, 64), np.uint8), r"\(3, 64, 64\).*transpose\(1, 2, 0\)"),
        (np.zeros((1, 64, 64, 3), np.uint8), r"\(1, 64, 64, 3\).*arr\[0\]"),
        (np.zeros((64, 64, 2), np.uint8), r"\(64, 64, 2\)"),
        (np.zeros(64, np.uint8), r"\(64,\)"),
        (np.full((60, 60), np.nan, np.float32), "NaN"),
        (np.full((60, 60), np.inf), "NaN or infinity"),
        (np.full((60, 60), 255.0), "0..1"),
        (np.full((60, 60), -1, np.int32), "0..255"),
        (np.full((60, 60), 1000, np.int64), "0..255"),
        (np.zeros((60, 60), np.complex64), "dtype"),
    ],
)
def test_bad_arrays(array: Any, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        prepare_image(array)


def test_callers_array_and_image_unchanged() -> None:
    array = np.asarray(photo((900, 700))).copy()
    view = array[::-1]  # a view: writes through it would show up in `array`
    before = hashlib.sha256(array.tobytes()).hexdigest()
    prepare_image(view, channel_order="bgr", max_side=300)
    shown = open_image(view)
    shown.paste((0, 0, 0), (0, 0, 100, 100))  # the copy handed back may be modified...
    assert hashlib.sha256(array.tobytes()).hexdigest() == before  # ...without touching ours
    assert array.flags.writeable

    img = photo((900, 700)).convert("RGBA")
    img.info["note"] = "mine"
    before, info = checksum(img), dict(img.info)
    prepare_image(img, max_side=300)
    opened = open_image(img)
    assert opened is not img
    opened.paste((0, 0, 0, 0), (0, 0, 100, 100))
    assert checksum(img) == before and img.mode == "RGBA" and img.info == info


def test_import_does_not_need_numpy(tmp_path: Path) -> None:
    code = (
        "import sys, ncp_cfr.images as m\n"
        f"m.prepare_image({str(HOPPER)!r}, max_side=100)\n"
        "assert 'numpy' not in sys.modules, 'numpy imported'\n"
    )
    root = Path(images.__file__).parent.parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# --------------------------------------------------------------------------------------------
# bad inputs


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageError, match=r"nope\.jpg"):
        prepare_image(missing)
    with pytest.raises(ImageError, match="URLs"):
        prepare_image("https://example.com/face.jpg")
    with pytest.raises(ImageError, match="directory"):
        prepare_image(tmp_path)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        prepare_image(empty)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, this is not an image at all", "not an image"),
        (b"<!DOCTYPE html><html><body>404</body></html>", "HTML"),
        (b'{"error": "nope"}', "JSON"),
    ],
)
def test_not_an_image(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        prepare_image(data)
    with pytest.raises(ImageError, match=message):
        open_image(data)


@pytest.mark.parametrize(
    ("data", "max_side"),
    [
        (HOPPER.read_bytes()[:30_000], DEFAULT_MAX_SIDE),  # small: a pass-through candidate
        (encode(noise(2400, 1800), quality=90)[:400_000], DEFAULT_MAX_SIDE),  # drafted decode
        (encode(noise(600, 500), quality=90)[:100_000], None),
        (ASTRONAUT.read_bytes()[:300_000], DEFAULT_MAX_SIDE),
        (encode(photo((300, 300)), "WEBP")[:2000], DEFAULT_MAX_SIDE),
    ],
)
def test_truncated_files(data: bytes, max_side: int | None) -> None:
    with pytest.raises(ImageError, match="truncated or corrupt"):
        prepare_image(data, max_side=max_side)
    with pytest.raises(ImageError, match="truncated or corrupt"):
        open_image(data)


def test_decompression_bomb_refused_before_decoding_without_warnings() -> None:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    bombs = [
        _png_header_only(30_000, 30_000),  # 900 MP
        _png_header_only(12_000, 9_000),  # 108 MP: over our 100 MP
        encode(Image.new("RGB", (10, 10)), "BMP")[:18]
        + struct.pack("<ii", 20_000, 20_000)
        + encode(Image.new("RGB", (10, 10)), "BMP")[26:],
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        for data in bombs:
            with pytest.raises(ImageError, match="too large to decode safely"):
                prepare_image(data)
        # the limit is a parameter: a trusted big header gets past it (then fails on the data)
        with pytest.raises(ImageError, match="truncated or corrupt"):
            prepare_image(_png_header_only(12_000, 9_000), max_pixels=200_000_000)
    assert pillow_limit == Image.MAX_IMAGE_PIXELS


def test_text_mode_file_objects(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with text.open() as f, pytest.raises(ImageError, match="binary mode"):
        prepare_image(f)  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="binary mode"):
        prepare_image(io.StringIO("hello"))  # type: ignore[arg-type]

    class Reader:  # a duck-typed reader that returns str
        def read(self) -> str:
            return "hello"

    with pytest.raises(ImageError, match="binary mode"):
        prepare_image(Reader())  # type: ignore[arg-type]


def test_broken_lazy_pil_image_and_odd_paths() -> None:
    lazy = Image.open(io.BytesIO(HOPPER.read_bytes()[:30_000]))  # opened, not decoded
    with pytest.raises(ImageError, match="truncated or corrupt"):
        prepare_image(lazy)
    with pytest.raises(ImageError, match="truncated or corrupt"):
        open_image(lazy)
    with pytest.raises(ImageError, match="cannot open"):
        prepare_image("bad\0name.jpg")


def test_unsupported_source_type_and_error_classes() -> None:
    with pytest.raises(ImageError, match="int") as info:
        prepare_image(42)  # type: ignore[arg-type]
    assert isinstance(info.value, CFRError) and isinstance(info.value, ValueError)


def test_errors_chain_the_pillow_cause() -> None:
    with pytest.raises(ImageError) as info:
        prepare_image(HOPPER.read_bytes()[:30_000])
    assert isinstance(info.value.__cause__, Exception)


# --------------------------------------------------------------------------------------------
# misc


def test_prepared_image_repr_hides_the_bytes() -> None:
    prepared = prepare_image(noise(300, 200))
    assert "data=" not in repr(prepared) and len(repr(prepared)) < 400


def test_threads_give_the_same_result() -> None:
    sources: list[Any] = [
        encode(marked((2000 + 10 * i, 1500), (100, 100, 300, 300)), quality=90) for i in range(6)
    ]
    expected = [prepare_image(s).data for s in sources]
    results: dict[int, bytes] = {}

    def work(i: int) -> None:
        results[i] = prepare_image(sources[i % len(sources)]).data

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i] == expected[i % len(sources)] for i in range(12))


# -- the DCT-scale snap at the default max_side -------------------------------------------------


def _big_jpeg_with_marker(size: tuple[int, int], marker: tuple[int, int, int, int]) -> bytes:
    img = Image.new("RGB", size, (90, 110, 130))
    x, y, w, h = marker
    img.paste((240, 10, 10), (x, y, x + w, y + h))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_default_sends_a_dct_scale_that_lands_close_below_max_side() -> None:
    marker = (4200, 1000, 600, 400)
    prepared = prepare_image(_big_jpeg_with_marker((6000, 4000), marker))
    assert (prepared.width, prepared.height) == (1500, 1000)  # 1/4 scale: >= 3/4 of 1920
    upload = Image.open(io.BytesIO(prepared.data)).convert("RGB")
    ux, uy = prepared.transform.to_upload(marker[0] + 300, marker[1] + 200)
    assert upload.getpixel((round(ux), round(uy)))[0] > 200  # the marker's centre maps onto it
    assert prepared.transform.to_source(ux, uy) == pytest.approx((4500, 1200), abs=1)


def test_no_snap_when_the_scale_would_lose_too_much() -> None:
    # 4032 / 4 = 1008 px is under 3/4 of 1920: resample the 1/2 decode to 1920 instead.
    prepared = prepare_image(_big_jpeg_with_marker((4032, 3024), (10, 10, 50, 50)))
    assert max(prepared.width, prepared.height) == 1920


def test_explicit_max_side_is_honoured_exactly_when_no_scale_is_near() -> None:
    prepared = prepare_image(_big_jpeg_with_marker((6000, 4000), (10, 10, 50, 50)), max_side=1200)
    assert max(prepared.width, prepared.height) == 1200  # 1/8 would be 750: under 3/4
