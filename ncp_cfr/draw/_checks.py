"""What every drawing function checks first: a result with positions, a margin, the image size."""

from __future__ import annotations

import warnings

from PIL import Image

from ncp_cfr.errors import InvalidArgumentError
from ncp_cfr.models import (
    Analysis,
    CelebrityResult,
    Face,
    FaceResult,
)


def _positioned_faces(result: object, caller: str) -> list[Face]:
    if isinstance(result, CelebrityResult):
        raise InvalidArgumentError(
            f"{caller} needs face positions, and a CelebrityResult has none (the celebrity "
            "endpoint does not say where faces are): use detect_faces() or analyze()"
        )
    if not isinstance(result, (FaceResult, Analysis)):
        raise InvalidArgumentError(f"{caller} expects a FaceResult or Analysis, got {result!r}")
    return list(result.faces)


def _check_margin(margin: float) -> None:
    if not margin >= 0:
        raise InvalidArgumentError(
            f"margin must be 0 or more (a fraction of the box size), not {margin!r}"
        )


def _check_size(result: FaceResult | Analysis, image: Image.Image) -> None:
    expected = (result.info.size.width, result.info.size.height)
    if expected != image.size:
        warnings.warn(
            f"the result is for a {expected[0]}x{expected[1]} image but this image is "
            f"{image.width}x{image.height}: boxes will be misplaced. Pass the image the result "
            "was computed for (a path or bytes is loaded upright, like the client does).",
            UserWarning,
            stacklevel=3,
        )
