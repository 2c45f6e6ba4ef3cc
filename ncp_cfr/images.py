"""Any photo in, a compliant upload out, and the way back to the caller's pixels.

The CLOVA Face Recognition service takes one JPEG or PNG of at most 2 MB, at least 50 px on each
side and with ``width < 4 * height`` (see ``cfr-api.md``). [`prepare_image`][ncp_cfr.prepare_image]
turns whatever the caller has (a path, bytes, a file object, a ``PIL.Image`` or a NumPy-style array)
into such an upload and returns, with the bytes, the [`Transform`][ncp_cfr.Transform] from the
caller's pixels to the uploaded ones, so that coordinates in the answer can be mapped back.

What is done, in order:

1. **Read.** Paths, bytes and file objects are *encoded* sources: the format is sniffed from the
   first bytes (never from the file name), the size is read from the header and checked against
   ``max_pixels`` before any pixel is decoded. HEIC/HEIF goes through the optional ``pillow-heif``.
   PIL images and arrays are used as they are (arrays converted by the rules of
   [`prepare_image`][ncp_cfr.prepare_image]).
2. **Pass through.** An encoded JPEG or PNG that already satisfies every rule is sent byte for
   byte, after reading only its header.
3. **Decode small.** A JPEG larger than needed is decoded by libjpeg at 1/2, 1/4 or 1/8 scale
   (``Image.draft``), never below the target size. When one of those scales already lands
   between 3/4 of ``max_side`` and ``max_side`` (a 24 MP photo at 1/4 is 1493 px), that size is
   the upload's: no resampling pass, about half the time, and still ample pixels per face.
4. **Upright.** For encoded sources the EXIF orientation is applied, as every photo viewer does, so
   results come back in upright pixels. PIL images and arrays keep their own pixel grid.
5. **Modes.** Transparency is flattened onto white, palette/CMYK/16-bit/float modes become RGB or
   greyscale.
6. **Size.** The longest side is brought down to ``max_side``; images under 50 px are enlarged;
   images that are still too small on one side or too wide (``width >= 4 * height``) are padded
   with neutral grey, centred. The padding is part of the transform's offset.
7. **Bytes.** JPEG at quality 90; if the result is over ``max_bytes``, the next quality and, if
   needed, a smaller size are predicted from the bytes per pixel of the previous attempt, so a
   noisy 24 MP photo needs two or three encodes. The result is never over ``max_bytes``.

Nothing here changes global Pillow state (``Image.MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``,
the plugin registry, warning filters) and nothing the caller passed is modified.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, ClassVar, Literal, Protocol, Union

from PIL import Image, ImageFile, JpegImagePlugin, PngImagePlugin

from .errors import ImageError, InvalidArgumentError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "MIN_SIDE",
    "ArrayLike",
    "ImageSource",
    "PreparedImage",
    "Transform",
    "open_image",
    "prepare_image",
    "rereadable",
]

DEFAULT_MAX_BYTES = 2_000_000
"""The service takes at most 2 MB; the exact count is undocumented, so we stay under 2,000,000."""

DEFAULT_MAX_SIDE = 1920
"""Longest side of an upload. Faces covering 1 % of the frame keep ~19 px, a 1920 px photo fits
2 MB at quality 90, and 12, 48 and 50 MP phone photos decode at 1/2 or 1/4 DCT scale."""

DEFAULT_MAX_PIXELS = 100_000_000
"""Width x height above which an encoded image is refused before decoding (decompression bombs).
Large enough for 24, 48 and 50 MP phone photos; pass ``max_pixels`` to go higher."""

MIN_SIDE = 50
"""The service rejects a width or height under 50 px (ER13, ER14)."""

_MAX_ASPECT = 4  # the service rejects width >= 4 * height (ER12)
# A DCT-scaled decode at least this fraction of max_side is sent at its own size (see step 3).
_SNAP_FRACTION = 0.75
_FIRST_QUALITY = 90
_MIN_PHOTO_QUALITY = 70  # below this JPEG artefacts start to hurt recognition: shrink instead
# Rough JPEG size relative to quality 90 (4:2:0, photos and noise alike within ~15 %).
_RELATIVE_BYTES = {90: 1.0, 80: 0.72, 70: 0.6, 50: 0.46, 30: 0.34, 10: 0.2}
_MAX_ENCODES = 12
_PAD_GREY = 128
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_HEIF_BRANDS = {
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"
}  # fmt: skip
# Orientation tag value -> the transposition that makes the stored pixels upright.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ArrayLike(Protocol):
    """Anything NumPy can read as an image: ``numpy.ndarray``, OpenCV images, CPU tensors."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> Any: ...


ImageSource = Union[
    str,
    "os.PathLike[str]",
    bytes,
    bytearray,
    memoryview,
    BinaryIO,
    IO[bytes],
    Image.Image,
    ArrayLike,
]
"""What every image argument of ``ncp_cfr`` accepts."""


# --------------------------------------------------------------------------------------------
# Public types


@dataclass(frozen=True)
class Transform:
    """Affine map per axis from the caller's pixels to the uploaded image's pixels.

    ``upload = caller * scale + offset``. "Caller pixels" are the image as the caller sees it:
    upright (EXIF orientation applied) for paths, bytes and file objects, the object's own grid
    for a ``PIL.Image`` or an array. Coordinates are continuous, with pixel edges at integers,
    so a box ``(x, y, w, h)`` maps through its corners.

    Attributes:
        scale_x: horizontal scale, upload pixels per caller pixel.
        scale_y: vertical scale.
        offset_x: horizontal padding added on the left of the upload, in upload pixels.
        offset_y: vertical padding added on top of the upload, in upload pixels.
    """

    scale_x: float
    scale_y: float
    offset_x: float = 0.0
    offset_y: float = 0.0

    IDENTITY: ClassVar[Transform]

    def __post_init__(self) -> None:
        if not (self.scale_x > 0 and self.scale_y > 0):
            raise InvalidArgumentError(
                f"Transform scales must be positive, got {self.scale_x}, {self.scale_y}"
            )

    def to_upload(self, x: float, y: float) -> tuple[float, float]:
        """Maps a point of the caller's image to the uploaded image."""
        return x * self.scale_x + self.offset_x, y * self.scale_y + self.offset_y

    def to_source(self, x: float, y: float) -> tuple[float, float]:
        """Maps a point of the uploaded image (as the service reports it) to the caller's image."""
        return (x - self.offset_x) / self.scale_x, (y - self.offset_y) / self.scale_y

    def box_to_source(self, x: float, y: float, w: float, h: float) -> tuple[int, int, int, int]:
        """Maps a box of the uploaded image to the caller's image.

        Args:
            x: left edge in upload pixels.
            y: top edge in upload pixels.
            w: width in upload pixels.
            h: height in upload pixels.

        Returns:
            ``(x, y, width, height)`` in caller pixels, corners rounded to the nearest integer
            (so adjacent boxes stay adjacent). Not clipped: the service reports faces that
            extend past the border, and a box may reach into the padding.
        """
        x0, y0 = self.to_source(x, y)
        x1, y1 = self.to_source(x + w, y + h)
        left, top = _round(x0), _round(y0)
        return left, top, _round(x1) - left, _round(y1) - top

    def shifted(self, dx: float, dy: float) -> Transform:
        """The transform for the bigger image a crop was cut from.

        If this transform maps a crop whose top-left corner sits at ``(dx, dy)`` in a bigger
        caller image, the result maps that bigger image to the same upload.
        """
        return Transform(
            self.scale_x,
            self.scale_y,
            self.offset_x - dx * self.scale_x,
            self.offset_y - dy * self.scale_y,
        )


Transform.IDENTITY = Transform(1.0, 1.0)


@dataclass(frozen=True)
class PreparedImage:
    """An image ready to upload, and how to map the service's coordinates back.

    Attributes:
        data: the bytes to upload (a JPEG or PNG, at most ``max_bytes`` long).
        content_type: ``"image/jpeg"`` or ``"image/png"``.
        format: ``"JPEG"`` or ``"PNG"``.
        width: width of the uploaded image.
        height: height of the uploaded image.
        source_width: width of the caller's image as the caller sees it (upright for files).
        source_height: height of the caller's image as the caller sees it.
        transform: maps caller pixels to upload pixels; use
            [`Transform.to_source`][ncp_cfr.images.Transform.to_source] and
            [`Transform.box_to_source`][ncp_cfr.images.Transform.box_to_source] on the service's
            answer.
        reencoded: ``False`` when the caller's own JPEG/PNG bytes are sent byte for byte.
        quality: the JPEG quality used when re-encoded, else ``None``.
    """

    data: bytes = field(repr=False)
    content_type: str
    format: str
    width: int
    height: int
    source_width: int
    source_height: int
    transform: Transform
    reencoded: bool
    quality: int | None

    @property
    def scale(self) -> float:
        """Upload width / source width (padding not counted); 1.0 when sent unchanged."""
        return self.transform.scale_x


# --------------------------------------------------------------------------------------------
# Public functions


def prepare_image(
    source: ImageSource,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int | None = DEFAULT_MAX_SIDE,
    channel_order: Literal["rgb", "bgr"] = "rgb",
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


def open_image(
    source: ImageSource,
    *,
    channel_order: Literal["rgb", "bgr"] = "rgb",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """The caller's image as the caller sees it: the pixel grid results refer to.

    Paths, bytes and file objects are decoded in full with their EXIF orientation applied;
    a ``PIL.Image`` or an array keeps its own pixel grid. This is how the drawing helpers load
    images, so ``draw_faces(path, client.detect_faces(path))`` lines up.

    Args:
        source: any [`ImageSource`][ncp_cfr.images.ImageSource] (see
            [`prepare_image`][ncp_cfr.prepare_image] for the array rules).
        channel_order: ``"bgr"`` for OpenCV arrays.
        max_pixels: refuse encoded images with more pixels than this (``None``: no limit).

    Returns:
        A new, fully loaded image in mode ``"RGB"``, ``"RGBA"`` or ``"L"``; the caller may modify
        it freely.

    Raises:
        ImageError: the source cannot be read or decoded.
    """
    loaded = _load(source, channel_order, None)
    if isinstance(loaded, Image.Image):
        image = _guard(lambda: _natural(_loaded(loaded)), "the image")
        return _guard(image.copy, "the image") if image is source else image
    with loaded:
        im = _identify(loaded, max_pixels)
        orientation = _orientation(im) if im.format == "JPEG" else 1
        _decode(im, loaded.name)
        if im.format != "JPEG":
            orientation = _orientation(im)
        image = _natural(im)
        if orientation in _TRANSPOSE:
            image = _guard(lambda: image.transpose(_TRANSPOSE[orientation]), loaded.name)
        return image.copy() if image is im else image


# --------------------------------------------------------------------------------------------
# Reading sources


class _Encoded:
    """An encoded source: a seekable binary stream, closed with the ``with`` block."""

    def __init__(self, fp: IO[bytes], size: int, name: str, data: bytes | None) -> None:
        self.fp = fp
        self.size = size
        self.name = name
        self.data = data  # the caller's bytes, kept so a pass-through can send them as is
        self.prefix = fp.read(64)
        fp.seek(0)

    def __enter__(self) -> _Encoded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fp.close()

    def read_all(self) -> bytes:
        if self.data is None:
            self.fp.seek(0)
            self.data = self.fp.read()
            self.fp.seek(0)
        return self.data


def _load(source: object, channel_order: str, hint: str | None) -> _Encoded | Image.Image:
    if channel_order not in ("rgb", "bgr"):
        raise ImageError(f'channel_order must be "rgb" or "bgr", not {channel_order!r}')
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = source if isinstance(source, bytes) else _bytes_of(source)
        return _from_bytes(data, hint or "the image bytes")
    if isinstance(source, Image.Image):
        if source.width == 0 or source.height == 0:
            raise ImageError(f"the PIL image is empty ({source.width}x{source.height})")
        return source
    if isinstance(source, (str, os.PathLike)):
        return _from_path(source)
    if isinstance(source, io.TextIOBase):
        raise ImageError(_text_mode_message(source, hint))
    if hasattr(source, "read"):
        return _from_file_object(source, hint)
    if hasattr(source, "shape") and (
        hasattr(source, "__array_interface__") or hasattr(source, "__array__")
    ):
        return _array_to_image(source, channel_order)
    raise ImageError(
        f"cannot read an image from a {type(source).__name__}: pass a path, bytes, a binary "
        "file object, a PIL.Image.Image or a NumPy array"
    )


def _bytes_of(view: bytearray | memoryview) -> bytes:
    try:
        return view.tobytes() if isinstance(view, memoryview) else bytes(view)
    except (ValueError, TypeError) as exc:  # a released memoryview
        raise ImageError(f"cannot read the memoryview: {exc}; pass bytes instead") from exc


def _from_bytes(data: bytes, name: str) -> _Encoded:
    if not data:
        raise ImageError(f"{name} are empty (0 bytes): pass the content of an image file")
    return _Encoded(io.BytesIO(data), len(data), name, data)


def _from_path(path: str | os.PathLike[str]) -> _Encoded:
    try:
        name = os.fspath(path)
    except TypeError as exc:
        raise ImageError(f"{path!r} is not a file path: pass a str or pathlib.Path") from exc
    if not isinstance(name, str):
        raise ImageError(f"{name!r} is not a text path: pass a str or pathlib.Path")
    if os.path.isdir(name):
        raise ImageError(f"{name!r} is a directory, not an image file: pass the path of a file")
    try:
        fp = open(name, "rb")  # noqa: SIM115 - closed by _Encoded.__exit__
    except FileNotFoundError as exc:
        hint = (
            "; URLs are not downloaded: fetch the image first and pass its bytes"
            if name.startswith(("http://", "https://"))
            else ": check the path and the current directory"
        )
        raise ImageError(f"no such file {name!r}{hint}") from exc
    except (OSError, ValueError) as exc:  # ValueError: a NUL character in the path
        raise ImageError(f"cannot open {name!r}: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        size = os.fstat(fp.fileno()).st_size
        if size == 0:
            raise ImageError(f"{name!r} is empty (0 bytes): it is not an image")
        return _Encoded(fp, size, repr(name), None)
    except BaseException:
        fp.close()
        raise


def _text_mode_message(source: object, hint: str | None) -> str:
    name = hint or getattr(source, "name", None) or "the file object"
    return f"{name} was opened in text mode: open it in binary mode, e.g. open(path, 'rb')"


def _from_file_object(source: Any, hint: str | None) -> _Encoded:
    data, name = _read_file_object(source, hint)
    return _from_bytes(data, name)


def rereadable(source: ImageSource) -> ImageSource:
    """``source`` in a form that can be read more than once.

    A binary file object is read once, its position restored (when it can seek) so the caller
    can use it again, and its bytes returned; any other source is returned as it is.

    Raises:
        ImageError: the stream cannot be read, or is in text mode.
    """
    if hasattr(source, "read") and not isinstance(source, Image.Image):
        return _read_file_object(source, None)[0]
    return source


def _read_file_object(source: Any, hint: str | None) -> tuple[bytes, str]:
    """The bytes of a file object from its current position, and its name for messages."""
    name = hint or (source.name if isinstance(getattr(source, "name", None), str) else None)
    name = repr(name) if name else "the file object"
    position: int | None = None
    try:
        if getattr(source, "seekable", lambda: False)():
            position = source.tell()
        data = source.read()
    except (OSError, ValueError) as exc:  # closed file, unreadable stream
        raise ImageError(f"cannot read {name}: {exc}") from exc
    finally:
        if position is not None:
            with contextlib.suppress(OSError, ValueError):
                source.seek(position)  # so the caller can use the same object again
    if isinstance(data, str):
        raise ImageError(_text_mode_message(source, hint))
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"{name}.read() returned {type(data).__name__}, not bytes")
    return bytes(data), name


def _array_to_image(source: Any, channel_order: str) -> Image.Image:
    import numpy as np  # lazily: `import ncp_cfr` must not need NumPy

    try:
        arr = np.asarray(source)
    except Exception as exc:
        raise ImageError(f"cannot read the {type(source).__name__} as an array: {exc}") from exc
    shape = tuple(arr.shape)
    if arr.size == 0:
        raise ImageError(f"the array is empty (shape {shape}): there is no image in it")
    if arr.ndim == 3 and shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and shape[2] in (3, 4))):
        fix = "pass (H, W) greyscale, (H, W, 3) RGB or (H, W, 4) RGBA"
        if arr.ndim == 3 and shape[0] in (1, 3, 4):
            fix = "it looks channels-first (C, H, W): pass arr.transpose(1, 2, 0)"
        elif arr.ndim == 4 and shape[0] == 1:
            fix = "it looks like a batch of one: pass arr[0]"
        raise ImageError(f"unsupported array shape {shape}: {fix}")
    arr = _to_uint8(np, arr)
    if channel_order == "bgr" and arr.ndim == 3:
        arr = arr[..., [2, 1, 0, 3][: shape[2]]]
    # Always our own C-contiguous buffer: fromarray may share memory, and the result is returned
    # to callers of open_image, who may draw on it.
    return Image.fromarray(np.array(arr, dtype=np.uint8, order="C", copy=True))


def _to_uint8(np: Any, arr: Any) -> Any:
    kind, dtype = arr.dtype.kind, arr.dtype
    if kind == "u" and dtype.itemsize == 1:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * np.uint8(255)
    if kind == "u" and dtype.itemsize == 2:
        return np.round(arr / 257.0).astype(np.uint8)
    if kind in "iu":
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > 255:
            raise ImageError(
                f"{dtype} array holds values {low}..{high}: integer arrays other than uint8 and "
                "uint16 must hold 0..255; rescale it, e.g. "
                "(arr * 255 // arr.max()).astype(np.uint8)"
            )
        return arr.astype(np.uint8)
    if kind == "f":
        if not bool(np.isfinite(arr).all()):
            raise ImageError(
                f"{dtype} array contains NaN or infinity: replace them, e.g. np.nan_to_num(arr)"
            )
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageError(
                f"{dtype} array holds values {lo:g}..{hi:g}: float arrays must hold 0..1; "
                "for 0..255 values pass arr.clip(0, 255).astype(np.uint8)"
            )
        return (arr.astype(np.float32) * 255.0 + 0.5).astype(np.uint8)
    raise ImageError(f"unsupported array dtype {dtype}: pass uint8 (or bool, uint16, float 0..1)")


# --------------------------------------------------------------------------------------------
# Identifying and decoding encoded sources


def _is_heif(prefix: bytes) -> bool:
    if prefix[4:8] != b"ftyp" or prefix[8:12] not in _HEIF_BRANDS:
        return False
    if prefix[8:12] in (b"mif1", b"msf1"):
        # Generic brands shared with AVIF: look at the compatible brands of the ftyp box.
        box = prefix[16 : int.from_bytes(prefix[0:4], "big")]
        brands = {box[i : i + 4] for i in range(0, len(box) - 3, 4)}
        return not ({b"avif", b"avis"} & brands) or bool(brands & (_HEIF_BRANDS - {b"mif1"}))
    return True


_Factory = Callable[[IO[bytes], str], ImageFile.ImageFile]


def _candidates(prefix: bytes, name: str) -> tuple[list[_Factory], bool]:
    """The plugin factories to try, and whether Pillow's own pixel limit must also apply."""
    if prefix.startswith(_JPEG_MAGIC):
        # Not Image.open's jpeg_factory: it would turn MPO files (most phone photos with a depth
        # map) into MpoImageFile, which runs Pillow's bomb check and may warn. Frame 0 is the JPEG.
        return [JpegImagePlugin.JpegImageFile], False
    if prefix.startswith(_PNG_MAGIC):
        return [PngImagePlugin.PngImageFile], False
    if _is_heif(prefix):
        try:
            pillow_heif = importlib.import_module("pillow_heif")
        except ImportError as exc:
            raise ImageError(
                f"{name} is a HEIC/HEIF image: reading it needs the optional package "
                'pillow-heif: pip install "clova-face[heic]"'
            ) from exc
        # Used directly rather than registered: the global plugin registry stays untouched.
        return [lambda fp, _name: pillow_heif.HeifImageFile(fp)], False
    # Everything else through Pillow's registry, in Pillow's own order, but without Image.open:
    # it would warn (DecompressionBombWarning) before we could refuse the image ourselves.
    Image.preinit()
    factories: list[_Factory] = []
    for loader in (None, Image.init):
        if loader is not None:
            loader()
        for fmt in list(Image.ID):
            factory, accept = Image.OPEN[fmt]
            if factory in factories or accept is None:
                continue
            verdict = accept(prefix)
            if verdict and not isinstance(verdict, str):
                factories.append(factory)
    return factories, True


def _identify(source: _Encoded, max_pixels: int | None) -> ImageFile.ImageFile:
    """Opens the image (header only) and refuses it if it is too big to decode."""
    factories, pillow_limit = _candidates(source.prefix, source.name)
    im: ImageFile.ImageFile | None = None
    for factory in factories:
        source.fp.seek(0)
        try:
            im = factory(source.fp, "")
            break
        except (SyntaxError, IndexError, TypeError, struct.error, EOFError):
            continue  # not this format after all (same rule as Image.open)
        except Image.DecompressionBombError as exc:
            raise _bomb_error(source.name, str(exc)) from exc
        except Exception as exc:
            raise _corrupt_error(source.name, exc) from exc
    if im is None:
        raise ImageError(_unrecognised_message(source))
    limit = max_pixels
    if pillow_limit and Image.MAX_IMAGE_PIXELS is not None:
        limit = min(limit or Image.MAX_IMAGE_PIXELS, Image.MAX_IMAGE_PIXELS)
    width, height = im.size
    if width < 1 or height < 1:
        raise ImageError(
            f"{source.name} announces an empty image ({width}x{height}): it is corrupt"
        )
    if limit is not None and width * height > limit:
        raise _bomb_error(
            source.name,
            f"{width}x{height} is {width * height / 1e6:.1f} megapixels, over the limit of "
            f"{limit / 1e6:.1f}",
        )
    return im


def _bomb_error(name: str, detail: str) -> ImageError:
    return ImageError(
        f"{name} is too large to decode safely ({detail}; a guard against decompression "
        "bombs): downscale it first, or if you trust it pass a higher max_pixels"
    )


def _corrupt_error(name: str, exc: BaseException) -> ImageError:
    detail = str(exc) or type(exc).__name__
    return ImageError(
        f"{name}: the file is truncated or corrupt ({detail}): re-download or re-export it"
    )


def _unrecognised_message(source: _Encoded) -> str:
    head = source.prefix.lstrip()[:16].lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"{", b"[")):
        what = "it looks like text (an HTML page or JSON: a failed download?)"
    elif source.prefix[4:8] == b"ftyp":
        what = "it is an ISO media file (a video, or an AVIF this Pillow cannot read)"
    else:
        what = f"it starts with {source.prefix[:12]!r}"
    return (
        f"{source.name} is not an image this SDK can read ({what}): pass a JPEG, PNG, WebP, "
        'BMP, TIFF or GIF file, or a HEIC with pip install "clova-face[heic]"'
    )


def _decode(im: ImageFile.ImageFile, name: str) -> None:
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise _bomb_error(name, str(exc)) from exc
    except MemoryError as exc:
        raise ImageError(
            f"{name}: not enough memory to decode a {im.width}x{im.height} image; downscale it "
            "first"
        ) from exc
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, struct.error ...
        raise _corrupt_error(name, exc) from exc


def _guard(step: Callable[[], Image.Image], name: str) -> Image.Image:
    """Runs a Pillow operation, turning whatever it raises into an ImageError."""
    try:
        return step()
    except ImageError:
        raise
    except MemoryError as exc:
        raise ImageError(f"{name}: not enough memory to process the image") from exc
    except Exception as exc:
        raise _corrupt_error(name, exc) from exc


def _loaded(im: Image.Image) -> Image.Image:
    """The caller's image with its pixels loaded (a lazy ``Image.open`` result reads them now)."""
    im.load()
    return im


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # unreadable EXIF: viewers show such photos as stored
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


# --------------------------------------------------------------------------------------------
# Modes


def _natural(im: Image.Image) -> Image.Image:
    """Converts to RGB, RGBA or L, whichever keeps the content. May return ``im`` itself."""
    mode = im.mode
    if mode in ("RGB", "RGBA", "L"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode in ("P", "PA"):
        keeps_alpha = mode == "PA" or "transparency" in im.info
        return im.convert("RGBA" if keeps_alpha else "RGB")
    if mode in ("LA", "La", "RGBa"):
        return im.convert("RGBA")
    if mode.startswith("I;16"):
        # Pillow's I;16 -> L clips at 255; scale the 16-bit range instead.
        return im.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    if mode in ("I", "F"):
        low, high = im.getextrema()
        if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
            return im.convert("L")
        if low >= 0 and high <= 255:
            return im.convert("L")
        gain = 255 / ((high - low) or 1)  # outside 0..255: stretch min..max onto 0..255
        return im.convert("F").point(lambda v: v * gain - low * gain).convert("L")
    try:
        return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX
    except ValueError as exc:
        raise ImageError(f"cannot convert an image of mode {mode!r} to RGB: {exc}") from exc


def _flatten(im: Image.Image) -> Image.Image:
    """RGB or L: transparent pixels become white, as most viewers show them on a page."""
    if im.mode != "RGBA":
        return im
    background = Image.new("RGB", im.size, (255, 255, 255))
    background.paste(im, mask=im.getchannel("A"))
    return background


# --------------------------------------------------------------------------------------------
# Geometry


@dataclass(frozen=True)
class _Plan:
    width: int  # content (the caller's image, resized)
    height: int
    canvas_width: int  # upload, with padding
    canvas_height: int
    left: int
    top: int


def _plan(width: int, height: int, max_side: int | None, shrink: float = 1.0) -> _Plan:
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
    return _Plan(w, h, cw, ch, (cw - w) // 2, (ch - h) // 2)


def _render(
    work: Image.Image,
    box: tuple[float, float, float, float],
    orientation: int,
    stored: tuple[int, int],
    plan: _Plan,
    name: str,
) -> tuple[Image.Image, Transform]:
    """Resizes ``box`` of the stored-orientation image, makes it upright and pads it.

    ``work`` is the decoded image (perhaps at 1/s scale), ``box`` the full extent of the
    ``stored`` image in its pixels. Returns the upload and the transform from upright pixels.
    """
    stored_w, stored_h = stored
    swapped = orientation in (5, 6, 7, 8)
    size = (plan.height, plan.width) if swapped else (plan.width, plan.height)
    full = box == (0.0, 0.0, float(work.width), float(work.height))
    per_pixel = stored_w / box[2]  # stored pixels per work pixel: the DCT scale s
    upright_w, upright_h = (stored_h, stored_w) if swapped else stored
    transform = Transform(plan.width / upright_w, plan.height / upright_h)
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
    if (plan.canvas_width, plan.canvas_height) != image.size:
        grey = _PAD_GREY if image.mode == "L" else (_PAD_GREY,) * 3
        canvas = Image.new(image.mode, (plan.canvas_width, plan.canvas_height), grey)
        canvas.paste(image, (plan.left, plan.top))
        image = canvas
    padded = Transform(
        transform.scale_x,
        transform.scale_y,
        transform.offset_x + plan.left,
        transform.offset_y + plan.top,
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
    im = _identify(source, max_pixels)
    stored_w, stored_h = im.size
    is_jpeg = im.format == "JPEG"
    orientation = _orientation(im) if is_jpeg else 1
    if _passes_through(source, im, orientation, max_bytes, max_side):
        fmt = "JPEG" if is_jpeg else "PNG"
        return PreparedImage(
            data=source.read_all(),
            content_type=f"image/{fmt.lower()}",
            format=fmt,
            width=stored_w,
            height=stored_h,
            source_width=stored_w,
            source_height=stored_h,
            transform=Transform.IDENTITY,
            reencoded=False,
            quality=None,
        )
    box = (0.0, 0.0, float(stored_w), float(stored_h))
    if is_jpeg:
        max_side = _snap_to_dct_scale(max(stored_w, stored_h), max_side)
        swapped = orientation in (5, 6, 7, 8)
        plan = (
            _plan(stored_h, stored_w, max_side) if swapped else _plan(stored_w, stored_h, max_side)
        )
        target = (plan.height, plan.width) if swapped else (plan.width, plan.height)
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
        and min(width, height) >= MIN_SIDE
        and (max_side is None or max(width, height) <= max_side)
        and width < _MAX_ASPECT * height
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
        plan = _plan(source_w, source_h, max_side, shrink)
        image, transform = _render(work, box, orientation, stored, plan, name)
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
        quality, shrink = _next_attempt(len(data), max_bytes, quality, shrink, plan)
    raise ImageError(
        f"{name} could not be encoded within max_bytes={max_bytes}: raise max_bytes"
    )  # pragma: no cover - _next_attempt shrinks geometrically, the loop always ends first


def _next_attempt(
    size: int, max_bytes: int, quality: int, shrink: float, plan: _Plan
) -> tuple[int, float]:
    """Predicts a quality and size that fit, from the bytes per pixel just observed."""
    target = 0.92 * max_bytes  # the model is rough: aim a little under
    per_quality = _RELATIVE_BYTES[quality]
    for lower in (80, _MIN_PHOTO_QUALITY):
        if lower < quality and size * _RELATIVE_BYTES[lower] / per_quality <= target:
            return lower, shrink  # quality alone is enough
    if max(plan.width, plan.height) > MIN_SIDE:
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


def _round(value: float) -> int:
    return math.floor(value + 0.5)  # half up, unlike round()'s half-to-even
