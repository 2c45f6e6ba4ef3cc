"""What a JPEG's header says, read without Pillow: the fast path of a photo sent as it is.

Most uploads are JPEGs that already comply (a phone photo the caller resized, a crop saved by
OpenCV). To send one byte for byte, only its size, colour layout, EXIF orientation and whether it
carries more frames (MPO) are needed: all in the segments before the scan. Reading them here
takes a few microseconds, where opening the file with Pillow parses every table and costs
about ten times that on each call. Anything unusual (another coding, 12-bit samples, a damaged
segment) returns ``None``, and Pillow decides as before.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

#: Start-of-frame markers of the codings every decoder reads: baseline, extended, progressive
#: Huffman. Lossless, hierarchical and arithmetic-coded JPEGs go the slow way.
_PLAIN_SOF = (0xC0, 0xC1, 0xC2)
_OTHER_SOF = frozenset(range(0xC3, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM carry no length
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class JpegHeader:
    """The facts of a JPEG's header that decide whether it can be sent as it is."""

    width: int
    height: int
    components: int
    orientation: int
    multi_frame: bool


def read_jpeg_header(data: bytes) -> JpegHeader | None:
    """The header of the JPEG ``data``, or ``None`` when it is not a plain one read this way."""
    if not data.startswith(b"\xff\xd8"):
        return None
    pos, end = 2, len(data)
    orientation, multi_frame = 1, False
    try:
        while pos + 4 <= end:
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte before a marker
                pos += 1
                continue
            if marker in _STANDALONE:
                pos += 2
                continue
            (length,) = struct.unpack_from(">H", data, pos + 2)
            segment = data[pos + 4 : pos + 2 + length]
            if length < 2 or len(segment) != length - 2:
                return None
            if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
                found = _exif_orientation(segment[6:])
                if found is None:
                    return None
                orientation = found
            elif marker == 0xE2 and segment.startswith(b"MPF\x00"):
                multi_frame = True
            elif marker in _PLAIN_SOF:
                precision, height, width, components = struct.unpack_from(">BHHB", segment)
                if precision != 8 or width < 1 or height < 1:
                    return None
                return JpegHeader(width, height, components, orientation, multi_frame)
            elif marker in _OTHER_SOF or marker in (0xDA, 0xD9):
                return None  # another coding, or a scan before any frame header
            pos += 2 + length
    except struct.error:
        return None
    return None


def _exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of an EXIF block's first IFD (1 when absent), ``None`` if unreadable."""
    if tiff[:4] == b"II*\x00":
        order = "<"
    elif tiff[:4] == b"MM\x00*":
        order = ">"
    else:
        return None
    try:
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for index in range(count):
            tag, kind, _, value = struct.unpack_from(order + "HHIH", tiff, ifd + 2 + 12 * index)
            if tag == _ORIENTATION_TAG:
                return value if kind == 3 and 1 <= value <= 8 else None
    except struct.error:
        return None
    return 1
