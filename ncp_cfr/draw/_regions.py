"""Cutting faces out ([`crop_faces`][ncp_cfr.crop_faces]) and hiding them
([`blur_faces`][ncp_cfr.blur_faces]).
"""

from __future__ import annotations

from typing import Literal

from PIL import Image, ImageDraw, ImageFilter

from ncp_cfr.draw._checks import _check_margin, _check_size, _positioned_faces
from ncp_cfr.errors import InvalidArgumentError
from ncp_cfr.images import ImageSource, open_image
from ncp_cfr.models import (
    Analysis,
    FaceResult,
)


def crop_faces(
    image: ImageSource,
    result: FaceResult | Analysis,
    *,
    margin: float = 0.2,
    square: bool = False,
    channel_order: Literal["rgb", "bgr"] = "rgb",
) -> list[Image.Image]:
    """Cut each face out of the image, with some context around it.

    The box is grown by ``margin`` times its width on the left and right and times its height
    at the top and bottom, rounded outward to whole pixels, then clipped to the image. A face
    partly outside the image therefore gives a smaller crop; one entirely outside (which the
    service is not known to send) gives an empty ``0×0`` image. No face is skipped, so
    ``zip(result.faces, crops)`` pairs each face with its crop.

    Args:
        image: the image the result was computed for (any input of
            [`ncp_cfr.images.open_image`][ncp_cfr.open_image]). It is not modified.
        result: a [`FaceResult`][ncp_cfr.FaceResult] or [`Analysis`][ncp_cfr.Analysis].
        margin: the context to add, as a fraction of the box size (``0`` for the bare box).
        square: make each box square (its longer side, around its centre) before clipping;
            crops at the image border can still come out non-square.
        channel_order: ``"bgr"`` for OpenCV arrays; ignored for other inputs.

    Returns:
        One new image per face, in the order of ``result.faces``, in the image's own mode.

    Raises:
        ncp_cfr.errors.ImageError: ``image`` cannot be read.
        InvalidArgumentError: ``result`` has no face positions (a ``CelebrityResult``), or
            ``margin`` is negative.
    """
    faces = _positioned_faces(result, "crop_faces")
    _check_margin(margin)
    source = open_image(image, channel_order=channel_order)
    _check_size(result, source)
    crops: list[Image.Image] = []
    for face in faces:
        x0, y0, x1, y1 = face.roi.crop_box(source.size, margin, square=square)
        if x1 <= x0 or y1 <= y0:
            crops.append(Image.new(source.mode, (0, 0)))
        else:
            crops.append(source.crop((x0, y0, x1, y1)))
    return crops


def blur_faces(
    image: ImageSource,
    result: FaceResult | Analysis,
    *,
    method: Literal["gaussian", "pixelate"] = "gaussian",
    strength: float | None = None,
    margin: float = 0.1,
    shape: Literal["rect", "ellipse"] = "rect",
    channel_order: Literal["rgb", "bgr"] = "rgb",
) -> Image.Image:
    """Anonymise every face: blur or pixelate it, leaving the rest of the image as it was.

    Only pixels inside each face's box, grown by ``margin`` and clipped to the image, change
    (only inside the inscribed ellipse with ``shape="ellipse"``); every other pixel is copied
    bit for bit.

    Args:
        image: the image the result was computed for (any input of
            [`ncp_cfr.images.open_image`][ncp_cfr.open_image]). It is not modified.
        result: a [`FaceResult`][ncp_cfr.FaceResult] or [`Analysis`][ncp_cfr.Analysis].
        method: ``"gaussian"`` (a smooth blur) or ``"pixelate"`` (coarse blocks).
        strength: the Gaussian radius or the pixel block size, in pixels. By default 1/8 (blur)
            or 1/10 (blocks) of the face's longer side: strong enough that the face cannot be
            recognised, whatever the image size.
        margin: how far beyond the box to anonymise, as a fraction of the box size: boxes are
            tight and hair or ears identify people too.
        shape: ``"rect"`` for the whole box, ``"ellipse"`` for the ellipse inscribed in it.
        channel_order: ``"bgr"`` for OpenCV arrays; ignored for other inputs.

    Returns:
        A new image in the mode of the loaded image (``RGB``, ``RGBA`` or ``L``; other modes are
        converted to ``RGB``, or ``RGBA`` when they carry transparency).

    Raises:
        ncp_cfr.errors.ImageError: ``image`` cannot be read.
        InvalidArgumentError: ``result`` has no face positions (a ``CelebrityResult``), an
            unknown ``method`` or ``shape``, a negative ``margin`` or a ``strength`` that is not
            positive.
    """
    faces = _positioned_faces(result, "blur_faces")
    if method not in ("gaussian", "pixelate"):
        raise InvalidArgumentError(f"method must be 'gaussian' or 'pixelate', not {method!r}")
    if shape not in ("rect", "ellipse"):
        raise InvalidArgumentError(f"shape must be 'rect' or 'ellipse', not {shape!r}")
    if strength is not None and not strength > 0:
        raise InvalidArgumentError(
            f"strength must be a positive number of pixels, not {strength!r}"
        )
    _check_margin(margin)

    canvas = open_image(image, channel_order=channel_order)
    if canvas.mode not in ("RGB", "RGBA", "L"):
        # Filters need a plain mode; palette images would otherwise blur their palette indices.
        has_alpha = "A" in canvas.getbands() or "transparency" in canvas.info
        canvas = canvas.convert("RGBA" if has_alpha else "RGB")
    _check_size(result, canvas)

    for face in faces:
        x0, y0, x1, y1 = face.roi.crop_box(canvas.size, margin)
        if x1 <= x0 or y1 <= y0:
            continue
        region = canvas.crop((x0, y0, x1, y1))
        longer = max(face.roi.width, face.roi.height)
        if method == "pixelate":
            block = strength if strength is not None else max(2.0, longer / 10)
            small = (max(1, round(region.width / block)), max(1, round(region.height / block)))
            hidden = region.resize(small, Image.Resampling.BOX).resize(
                region.size, Image.Resampling.NEAREST
            )
        else:
            radius = strength if strength is not None else max(2.0, longer / 8)
            hidden = region.filter(ImageFilter.GaussianBlur(radius))
        mask = None
        if shape == "ellipse":
            # The ellipse of the whole (unclipped) box: a face cut by the border stays an arc.
            mask = Image.new("L", region.size, 0)
            gx0, gy0, gx1, gy1 = face.roi.expanded(margin)
            ImageDraw.Draw(mask).ellipse((gx0 - x0, gy0 - y0, gx1 - x0 - 1, gy1 - y0 - 1), fill=255)
        canvas.paste(hidden, (x0, y0), mask)
    return canvas


# -- sizes and colours --------------------------------------------------------------------------
