"""Reading any image argument: sniffing the format from its first bytes, checking its size
before decoding, decoding it and making it upright; ``open_image`` and the other readers.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import struct
from collections.abc import Callable
from typing import IO, Any

from PIL import Image, ImageFile

from ncp_cfr.errors import ImageError
from ncp_cfr.images._arrays import _array_to_image
from ncp_cfr.images._types import (
    DEFAULT_MAX_PIXELS,
    ChannelOrder,
    ImageSource,
    PreparedImage,
    Transform,
)

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_HEIF_BRANDS = {
    b"heic",
    b"heix",
    b"heim",
    b"heis",
    b"hevc",
    b"hevx",
    b"hevm",
    b"hevs",
    b"mif1",
    b"msf1",
}
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


def open_image(
    source: ImageSource,
    *,
    channel_order: ChannelOrder = "rgb",
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


def sniff_format(data: bytes) -> str | None:
    """``"JPEG"`` or ``"PNG"`` if ``data`` starts like one (the only formats the service takes)."""
    if data.startswith(_JPEG_MAGIC):
        return "JPEG"
    if data.startswith(_PNG_MAGIC):
        return "PNG"
    return None


def decode_upload(prepared: PreparedImage) -> Image.Image:
    """The pixels of a prepared upload, decoded.

    Raises:
        ImageError: the upload's bytes are not an image Pillow can decode.
    """
    try:
        with Image.open(io.BytesIO(prepared.data)) as img:
            img.load()
            pixels: Image.Image = img.copy()
            return pixels
    except Exception as exc:  # any decoder failure: the bytes are not an image we can crop
        raise ImageError(f"the PreparedImage's data cannot be decoded: {exc}") from None


def pixels_of(
    image: ImageSource | PreparedImage,
    prepared: PreparedImage | None,
    channel_order: ChannelOrder = "rgb",
) -> tuple[Image.Image, Transform]:
    """The pixels to cut crops from, and the map from the caller's pixels onto them.

    For an image argument, its pixels as the caller sees them (the identity map). For a
    [`PreparedImage`][ncp_cfr.PreparedImage] only the upload exists: its decoded pixels,
    through the upload's own transform. ``prepared`` is the upload of ``image``, when made.
    """
    if isinstance(image, PreparedImage):
        return decode_upload(image), image.transform
    return open_image(image, channel_order=channel_order), Transform.IDENTITY


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


def content_of(source: ImageSource) -> tuple[ImageSource, str]:
    """``source`` read once, and the SHA-256 (hex) of its content: what a result store keys on.

    Paths, bytes and file objects become their bytes (the hash is of the bytes as read, so a
    copy of a photo under another name hashes the same); a ``PIL.Image`` or an array stays as
    it is and its hash covers its mode or dtype, its size and its pixels.

    Raises:
        ImageError: the file or stream cannot be read.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise ImageError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
        return data, hashlib.sha256(data).hexdigest()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return data, hashlib.sha256(data).hexdigest()
    if hasattr(source, "read") and not isinstance(source, Image.Image):
        data = _read_file_object(source, None)[0]
        return data, hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    if isinstance(source, Image.Image):
        digest.update(f"{source.mode} {source.size}".encode())
        digest.update(source.tobytes())
    else:  # an array: its layout and its bytes, as NumPy holds them
        import numpy as np

        array = np.ascontiguousarray(source)
        digest.update(f"{array.dtype} {array.shape}".encode())
        digest.update(array.tobytes())
    return source, digest.hexdigest()


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
    # Imported here: most programs import the SDK long before they read an image.
    from PIL import JpegImagePlugin, PngImagePlugin

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
