"""Any photo in, a compliant upload out, and the way back to the caller's pixels.

The CLOVA Face Recognition service takes one JPEG or PNG of at most 2 MB, at least 50 px on each
side and with ``width < 4 * height`` (the docs' Protocol page, "Limits").
[`prepare_image`][ncp_cfr.prepare_image] turns whatever the caller has (a path, bytes, a file
object, a ``PIL.Image`` or a NumPy-style array) into such an upload and returns, with the bytes, the
[`Transform`][ncp_cfr.Transform] from the
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

from ncp_cfr.images._prepare import prepare_image
from ncp_cfr.images._sources import (
    content_of,
    decode_upload,
    open_image,
    pixels_of,
    rereadable,
    sniff_format,
)
from ncp_cfr.images._types import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    MIN_SIDE,
    ArrayLike,
    ChannelOrder,
    ImageSource,
    PreparedImage,
    Transform,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "MIN_SIDE",
    "ArrayLike",
    "ChannelOrder",
    "ImageSource",
    "PreparedImage",
    "Transform",
    "content_of",
    "decode_upload",
    "open_image",
    "pixels_of",
    "prepare_image",
    "rereadable",
    "sniff_format",
]
