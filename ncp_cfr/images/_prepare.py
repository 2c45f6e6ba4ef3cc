"""Preparing an upload: fit the caller's image to the service's rules, at the fewest encodes.

The steps are listed in [`ncp_cfr.images`][ncp_cfr.images].
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image, ImageFile

from ncp_cfr.errors import ImageError
from ncp_cfr.images._jpeg import read_jpeg_header
from ncp_cfr.images._sources import (
    _JPEG_MAGIC,
    _TRANSPOSE,
    _decode,
    _Encoded,
    _flatten,
    _guard,
    _identify,
    _load,
    _loaded,
    _natural,
    _orientation,
)
from ncp_cfr.images._types import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    MIN_SIDE,
    ChannelOrder,
    ImageSource,
    PreparedImage,
    Transform,
)

_MAX_ASPECT = 4  # the service rejects width >= 4 * height (ER12)
# A DCT-scaled decode at least this fraction of max_side is sent at its own size (see step 3).
_SNAP_FRACTION = 0.75
_FIRST_QUALITY = 90
_MIN_PHOTO_QUALITY = 70  # below this JPEG artefacts start to hurt recognition: shrink instead
# Rough JPEG size relative to quality 90 (4:2:0, photos and noise alike within ~15 %).
_RELATIVE_BYTES = {90: 1.0, 80: 0.72, 70: 0.6, 50: 0.46, 30: 0.34, 10: 0.2}
_MAX_ENCODES = 12
_PAD_GREY = 128


def prepare_image(
    source: ImageSource,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int | None = DEFAULT_MAX_SIDE,
    channel_order: ChannelOrder = "rgb",
    filename_hint: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> PreparedImage:
    """Turns any supported image into an upload the CLOVA service accepts.

    Args:
        source: a path (``str`` or ``os.PathLike``); ``bytes``, ``bytearray`` or ``memoryview``
            holding an encoded image; a binary file object (read from its current position, which
            is restored afterwards when the object can seek); a ``PIL.Image.Image``; or a
            NumPy-style array of shape ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``.
            Array dtypes: ``uint8`` as is; ``bool`` as 0/255; ``uint16`` divided by 257 (the
            16-bit range onto 0..255); other integers must hold values in 0..255; floats must be
            finite and in [0, 1] and are multiplied by 255.
        max_bytes: the upload is never longer than this.
        max_side: the longest side of the upload is at most this many pixels (at least 50);
            ``None`` for no limit other than ``max_bytes``.
        channel_order: ``"bgr"`` when an array comes from OpenCV (BGR or BGRA). Ignored for
            everything else.
        filename_hint: a name used in error messages for bytes and file objects.
        max_pixels: encoded images whose header announces more pixels than this are refused
            before decoding (decompression bombs); ``None`` for no limit. Formats other than
            JPEG, PNG and HEIF are also bound by ``PIL.Image.MAX_IMAGE_PIXELS``.

    Returns:
        The bytes to upload and the transform back to the caller's pixels.

    Raises:
        ImageError: the source cannot be read, is not an image, is truncated or corrupt, is too
            large to decode safely, or an argument is out of range. The message says what to do.
    """
    if max_side is not None and max_side < MIN_SIDE:
        raise ImageError(
            f"max_side={max_side} is too small: the service needs at least {MIN_SIDE} px"
        )
    if max_bytes < 1:
        raise ImageError(f"max_bytes={max_bytes} must be positive")
    loaded = _load(source, channel_order, filename_hint)
    if isinstance(loaded, Image.Image):
        work = _guard(lambda: _flatten(_natural(_loaded(loaded))), "the image")
        box = (0.0, 0.0, float(work.width), float(work.height))
        return _fit(work, box, 1, max_side, max_bytes, "the image")
    with loaded:
        return _prepare_encoded(loaded, max_bytes, max_side, max_pixels)


# --------------------------------------------------------------------------------------------
# Geometry


@dataclass(frozen=True)
class _Layout:
    width: int  # content (the caller's image, resized)
    height: int
    canvas_width: int  # upload, with padding
    canvas_height: int
    left: int
    top: int


def _layout(width: int, height: int, max_side: int | None, shrink: float = 1.0) -> _Layout:
    longest, shortest = max(width, height), min(width, height)
    # Without max_side, tiny images may still be enlarged, but not past the default size.
    cap = max_side if max_side is not None else max(longest, DEFAULT_MAX_SIDE)
    ratio = min(1.0, cap / longest)
    if shortest * ratio < MIN_SIDE:
        ratio = min(MIN_SIDE / shortest, cap / longest)
    ratio *= shrink
    w = min(cap, max(1, round(width * ratio)))
    h = min(cap, max(1, round(height * ratio)))
    cw, ch = max(w, MIN_SIDE), max(h, MIN_SIDE)
    if cw >= _MAX_ASPECT * ch:
        ch = cw // _MAX_ASPECT + 1
    return _Layout(w, h, cw, ch, (cw - w) // 2, (ch - h) // 2)


def _render(
    work: Image.Image,
    box: tuple[float, float, float, float],
    orientation: int,
    stored: tuple[int, int],
    layout: _Layout,
    name: str,
) -> tuple[Image.Image, Transform]:
    """Resizes ``box`` of the stored-orientation image, makes it upright and pads it.

    ``work`` is the decoded image (perhaps at 1/s scale), ``box`` the full extent of the
    ``stored`` image in its pixels. Returns the upload and the transform from upright pixels.
    """
    stored_w, stored_h = stored
    swapped = orientation in (5, 6, 7, 8)
    size = (layout.height, layout.width) if swapped else (layout.width, layout.height)
    full = box == (0.0, 0.0, float(work.width), float(work.height))
    per_pixel = stored_w / box[2]  # stored pixels per work pixel: the DCT scale s
    upright_w, upright_h = (stored_h, stored_w) if swapped else stored
    transform = Transform(layout.width / upright_w, layout.height / upright_h)
    image = work
    spare_w, spare_h = work.width - size[0], work.height - size[1]
    if per_pixel > 1.5 and 0 <= spare_w <= 1 and 0 <= spare_h <= 1:
        # libjpeg's 1/s decode is the target but for the partial last block: crop it instead of
        # resampling (which would cost as much as the decode did). The upload then covers all
        # but < s source pixels at the stored right/bottom edge, whichever upright edge that is.
        if size != work.size:
            image = work.crop((0, 0, *size))
        covered = (min(stored_w, size[0] * per_pixel), min(stored_h, size[1] * per_pixel))
        corners = (_upright(orientation, 0, 0, stored), _upright(orientation, *covered, stored))
        left, top = min(c[0] for c in corners), min(c[1] for c in corners)
        transform = Transform(1 / per_pixel, 1 / per_pixel, -left / per_pixel, -top / per_pixel)
    elif size != work.size or not full:
        enlarging = size[0] > box[2] - box[0]
        # HAMMING: sharper than BILINEAR at the same cost, half the cost of LANCZOS, which
        # is no better for a detector. reducing_gap: big reductions first go through reduce()
        # (a box filter), so a 24 MP PNG is not filtered in full.
        resample = Image.Resampling.BICUBIC if enlarging else Image.Resampling.HAMMING
        image = _guard(lambda: work.resize(size, resample, box=box, reducing_gap=3.0), name)
    if orientation in _TRANSPOSE:
        # Transposing after the resize: exact, and on the smaller image.
        image = image.transpose(_TRANSPOSE[orientation])
    if (layout.canvas_width, layout.canvas_height) != image.size:
        grey = _PAD_GREY if image.mode == "L" else (_PAD_GREY,) * 3
        canvas = Image.new(image.mode, (layout.canvas_width, layout.canvas_height), grey)
        canvas.paste(image, (layout.left, layout.top))
        image = canvas
    padded = Transform(
        transform.scale_x,
        transform.scale_y,
        transform.offset_x + layout.left,
        transform.offset_y + layout.top,
    )
    return image, padded


def _upright(orientation: int, x: float, y: float, stored: tuple[int, int]) -> tuple[float, float]:
    """Where the stored point (x, y) lands once the EXIF orientation is applied."""
    w, h = stored
    return {
        2: (w - x, y),
        3: (w - x, h - y),
        4: (x, h - y),
        5: (y, x),
        6: (h - y, x),
        7: (h - y, w - x),
        8: (y, w - x),
    }.get(orientation, (x, y))


# --------------------------------------------------------------------------------------------
# Preparing


def _prepare_encoded(
    source: _Encoded, max_bytes: int, max_side: int | None, max_pixels: int | None
) -> PreparedImage:
    fast = _plain_jpeg_as_is(source, max_bytes, max_side, max_pixels)
    if fast is not None:
        return fast
    im = _identify(source, max_pixels)
    stored_w, stored_h = im.size
    is_jpeg = im.format == "JPEG"
    orientation = _orientation(im) if is_jpeg else 1
    if _passes_through(source, im, orientation, max_bytes, max_side):
        return _as_is(source.read_all(), "JPEG" if is_jpeg else "PNG", stored_w, stored_h)
    box = (0.0, 0.0, float(stored_w), float(stored_h))
    if is_jpeg:
        max_side = _snap_to_dct_scale(max(stored_w, stored_h), max_side)
        swapped = orientation in (5, 6, 7, 8)
        layout = (
            _layout(stored_h, stored_w, max_side)
            if swapped
            else _layout(stored_w, stored_h, max_side)
        )
        target = (layout.height, layout.width) if swapped else (layout.width, layout.height)
        if target[0] < stored_w and target[1] < stored_h:
            # libjpeg decodes at 1/2, 1/4 or 1/8 scale, never below `target`; the returned box
            # is the original image's extent in the smaller grid, so the mapping stays exact.
            drafted = im.draft(im.mode, target)
            if drafted is not None:
                box = drafted[1]
    _decode(im, source.name)
    if not is_jpeg:
        orientation = _orientation(im)
    work = _guard(lambda: _flatten(_natural(im)), source.name)
    return _fit(work, box, orientation, max_side, max_bytes, source.name, (stored_w, stored_h))


def _snap_to_dct_scale(longest: int, max_side: int | None) -> int | None:
    """``max_side``, or the size of a libjpeg 1/s decode that is close enough below it."""
    if max_side is None or longest <= max_side:
        return max_side
    for s in (2, 4, 8):
        # Rounded down: libjpeg rounds a partial block up, and draft() only picks scale s
        # when the target is at most longest // s; the spare pixel is cropped, not resampled.
        scaled = longest // s
        if scaled <= max_side:
            return scaled if scaled >= _SNAP_FRACTION * max_side else max_side
    return max_side


def _as_is(data: bytes, fmt: str, width: int, height: int) -> PreparedImage:
    """The caller's own bytes, sent unchanged."""
    return PreparedImage(
        data=data,
        content_type=f"image/{fmt.lower()}",
        format=fmt,
        width=width,
        height=height,
        source_width=width,
        source_height=height,
        transform=Transform.IDENTITY,
        reencoded=False,
        quality=None,
    )


def _fits(width: int, height: int, max_side: int | None) -> bool:
    """Whether an upright image of this size is within the service's (and the caller's) limits."""
    return (
        min(width, height) >= MIN_SIDE
        and (max_side is None or max(width, height) <= max_side)
        and width < _MAX_ASPECT * height
    )


def _plain_jpeg_as_is(
    source: _Encoded, max_bytes: int, max_side: int | None, max_pixels: int | None
) -> PreparedImage | None:
    """A complying JPEG, judged from its header alone (no Pillow): the common case, made cheap.

    ``None`` when it does not plainly comply; the general path then decides, with Pillow.
    """
    if not source.prefix.startswith(_JPEG_MAGIC) or source.size > max_bytes:
        return None
    data = source.read_all()
    header = read_jpeg_header(data)
    if (
        header is None
        or header.components not in (1, 3)  # greyscale or colour: CMYK is re-encoded
        or header.multi_frame
        or header.orientation != 1
        or (max_pixels is not None and header.width * header.height > max_pixels)
        or not _fits(header.width, header.height, max_side)
        or not data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9")
    ):
        return None
    return _as_is(data, "JPEG", header.width, header.height)


def _passes_through(
    source: _Encoded,
    im: ImageFile.ImageFile,
    orientation: int,
    max_bytes: int,
    max_side: int | None,
) -> bool:
    width, height = im.size
    if not (
        im.format in ("JPEG", "PNG")
        and source.size <= max_bytes
        and _fits(width, height, max_side)
        and orientation == 1
    ):
        return False
    data = source.read_all()
    if im.format == "JPEG":
        # CMYK JPEGs are not read by every decoder; a missing end marker means truncation. An
        # MPO (phones' portrait and 3D modes: a JPEG with more frames appended, announced in an
        # APP2 "MPF" segment) is re-encoded so that only its first frame is sent.
        return (
            im.mode in ("L", "RGB")
            and "mp" not in im.info
            and data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9")
        )
    # PNG: 8-bit or less, no transparency, one frame, no EXIF (which may carry an orientation
    # stored after the pixels, and which we would not read without decoding), ends with IEND.
    bit_depth, colour_type = data[24], data[25]
    return (
        bit_depth <= 8
        and colour_type in (0, 2, 3)
        and "transparency" not in im.info
        and getattr(im, "n_frames", 1) == 1
        and b"eXIf" not in data
        and data.rstrip(b"\0\r\n ")[-8:-4] == b"IEND"
    )


def _fit(
    work: Image.Image,
    box: tuple[float, float, float, float],
    orientation: int,
    max_side: int | None,
    max_bytes: int,
    name: str,
    stored: tuple[int, int] | None = None,
) -> PreparedImage:
    """Renders and encodes, lowering quality then size until the upload fits ``max_bytes``."""
    stored = stored or work.size
    source_w, source_h = (stored[1], stored[0]) if orientation in (5, 6, 7, 8) else stored
    quality, shrink = _FIRST_QUALITY, 1.0
    for _ in range(_MAX_ENCODES):
        layout = _layout(source_w, source_h, max_side, shrink)
        image, transform = _render(work, box, orientation, stored, layout, name)
        data = _encode_jpeg(image, quality, name)
        if len(data) <= max_bytes:
            return PreparedImage(
                data=data,
                content_type="image/jpeg",
                format="JPEG",
                width=image.width,
                height=image.height,
                source_width=source_w,
                source_height=source_h,
                transform=transform,
                reencoded=True,
                quality=quality,
            )
        quality, shrink = _next_attempt(len(data), max_bytes, quality, shrink, layout)
    raise ImageError(
        f"{name} could not be encoded within max_bytes={max_bytes}: raise max_bytes"
    )  # pragma: no cover - _next_attempt shrinks geometrically, the loop always ends first


def _next_attempt(
    size: int, max_bytes: int, quality: int, shrink: float, layout: _Layout
) -> tuple[int, float]:
    """Predicts a quality and size that fit, from the bytes per pixel just observed."""
    target = 0.92 * max_bytes  # the model is rough: aim a little under
    per_quality = _RELATIVE_BYTES[quality]
    for lower in (80, _MIN_PHOTO_QUALITY):
        if lower < quality and size * _RELATIVE_BYTES[lower] / per_quality <= target:
            return lower, shrink  # quality alone is enough
    if max(layout.width, layout.height) > MIN_SIDE:
        next_quality = min(quality, _MIN_PHOTO_QUALITY)
        predicted = size * _RELATIVE_BYTES[next_quality] / per_quality
        linear = min(0.95, math.sqrt(target / predicted))
        return next_quality, shrink * linear
    # Already at the minimum size: only quality is left.
    lower_qualities = [q for q in _RELATIVE_BYTES if q < quality]
    if not lower_qualities:
        raise ImageError(
            f"max_bytes={max_bytes} is too small for even a {MIN_SIDE}x{MIN_SIDE} JPEG: raise it"
        )
    return max(lower_qualities), shrink


def _encode_jpeg(image: Image.Image, quality: int, name: str) -> bytes:
    buffer = io.BytesIO()
    try:
        # No EXIF (orientation is applied, and GPS or camera data need not travel), no ICC.
        image.save(buffer, "JPEG", quality=quality)
    except Exception as exc:
        raise ImageError(f"{name}: could not encode the image as JPEG ({exc})") from exc
    return buffer.getvalue()
