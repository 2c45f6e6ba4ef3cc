"""The image layer's types and limits: what an image argument may be, the prepared upload and
the transform between the caller's pixels and the upload's.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, ClassVar, Literal, Protocol, Union

from PIL import Image

from ncp_cfr.errors import InvalidArgumentError

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

#: The channel order of an array image: ``"bgr"`` for OpenCV's.
ChannelOrder = Literal["rgb", "bgr"]


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


def _round(value: float) -> int:
    return math.floor(value + 0.5)  # half up, unlike round()'s half-to-even
