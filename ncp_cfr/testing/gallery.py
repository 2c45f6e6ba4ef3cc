"""An offline stand-in for the celebrity endpoint: your own "celebrities", matched by identity
when the ``attributes`` extra is installed, else by a pixel measure.

```python
from ncp_cfr.testing import Emulator
from ncp_cfr.testing.gallery import Gallery

gallery = Gallery({"Grace Hopper": "hopper.jpg", "Eileen Collins": "astronaut.png"})
with Emulator(detector="auto", gallery=gallery) as emu, emu.client() as client:
    client.recognize_celebrities("hopper_cropped.jpg").faces[0].celebrity.value  # "Grace Hopper"
```

**Identity, with the ``attributes`` extra.** Each face becomes dlib's 128-number descriptor (see
[`ncp_cfr.testing.attributes`][ncp_cfr.testing.attributes]) and the nearest registered face
names it, with the confidence
[`identity_confidence`][ncp_cfr.testing.attributes.identity_confidence] of the distance (0.5 at
dlib's same-person threshold). Register several photos of a person and a new photo of them is
matched to the closest one: this recognises a *person* across photos, as the service does.

**Without it, a pixel measure, honestly.** A face is compared by its pixels: the face is
aligned on its two eyes (a rotation, scale and shift that puts them at fixed points of a 64×64
grey crop), histogram-equalised and lightly blurred, and two crops are compared by their Pearson
correlation (the cosine of the mean-centred pixels). That finds the *same photo* again at
another size, crop, compression or small rotation, which is what tests and demos need. It does
not recognise a *person* across different photos, lighting or expressions: do not read a high
score as identity.

The answer follows the service's shape (docs/protocol.md, "Answers"): one entry per face the
detector finds, one name each, no ``roi``. Like the service, it always names somebody: the
best-matching entry, with confidence ``(similarity - floor) / (1 - floor)`` (pixels) or the
identity confidence (embeddings), clamped to 0.01..1, so a face matching nobody still comes back
named, at 0.01. An empty gallery answers ``faces: []``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, Union

from PIL import Image, ImageFilter, ImageOps

from ncp_cfr.errors import InvalidArgumentError
from ncp_cfr.images import ImageSource, open_image
from ncp_cfr.testing.rules import Detector, Recognizer, frontal_landmarks, make_celebrity

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["DEFAULT_FLOOR", "SIGNATURE_SIZE", "Gallery", "face_signature"]

#: Side of the aligned grey crop two faces are compared by.
SIGNATURE_SIZE = 64
#: Similarity at or below which a match gets the minimum confidence.
DEFAULT_FLOOR = 0.6
#: Where the eyes land in the aligned crop (fractions of its side).
_EYE_Y = 0.38
_LEFT_EYE_X, _RIGHT_EYE_X = 0.32, 0.68
_BLUR_RADIUS = 2.0
_MIN_CONFIDENCE = 0.01  # the service names somebody even at 0.01 (docs/protocol.md, "Answers")

_Photos = Union[ImageSource, list[ImageSource], tuple[ImageSource, ...]]


def _eyes(face: Mapping[str, Any]) -> tuple[tuple[float, float], tuple[float, float]]:
    """The two eye centres of a face dict; from its box when it has no landmarks."""
    landmark = face.get("landmark") or {}
    if "leftEye" in landmark and "rightEye" in landmark:
        points = landmark
    else:
        roi = face["roi"]
        points = frontal_landmarks(roi["x"], roi["y"], roi["width"], roi["height"])
    left, right = points["leftEye"], points["rightEye"]
    return (float(left["x"]), float(left["y"])), (float(right["x"]), float(right["y"]))


def face_signature(image: Image.Image, face: Mapping[str, Any]) -> npt.NDArray[np.float64]:
    """The unit vector two faces are compared by (see the module docstring).

    Args:
        image: the image the face was found in.
        face: a face dict in the face endpoint's JSON shape (``roi``, ``landmark`` or ``None``).

    Returns:
        A mean-centred, unit-length vector of ``SIGNATURE_SIZE ** 2`` floats (all zeros for a
        flat crop).
    """
    import numpy as np

    (lx, ly), (rx, ry) = _eyes(face)
    grey = image.convert("L")
    size = SIGNATURE_SIZE
    target = (size * (_RIGHT_EYE_X - _LEFT_EYE_X)) or 1.0
    scale = max(math.hypot(rx - lx, ry - ly), 1.0) / target  # source pixels per crop pixel
    # Shrink first with a box filter: the affine warp samples without antialiasing, and a large
    # face sampled at 1/8 would alias into noise that depends on the exact size.
    shrink = max(1, int(scale))
    if shrink > 1:
        grey = grey.reduce(shrink)
        lx, ly, rx, ry, scale = lx / shrink, ly / shrink, rx / shrink, ry / shrink, scale / shrink
    angle = math.atan2(ry - ly, rx - lx)
    a, b = scale * math.cos(angle), -scale * math.sin(angle)
    d, e = scale * math.sin(angle), scale * math.cos(angle)
    ox, oy = size * _LEFT_EYE_X, size * _EYE_Y
    # PIL's affine data maps each crop pixel back to a source pixel.
    coefficients = (a, b, lx - a * ox - b * oy, d, e, ly - d * ox - e * oy)
    crop = grey.transform(
        (size, size), Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR, fillcolor=128
    )
    # Blurred after equalising, so that eyes found a pixel or two apart (the same face at another
    # size) cost little similarity.
    crop = ImageOps.equalize(crop).filter(ImageFilter.GaussianBlur(_BLUR_RADIUS))
    vector = np.asarray(crop, dtype=np.float64).ravel()
    vector -= vector.mean()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class Gallery:
    """Named reference photos: the "celebrities" of an offline celebrity endpoint.

    Args:
        people: ``{name: photo}`` or ``{name: [photo, ...]}`` (a list or tuple); a photo is a
            path, bytes, a file object, a ``PIL.Image`` or an array (anything
            [`ncp_cfr.open_image`][ncp_cfr.open_image] reads).
    """

    def __init__(self, people: Mapping[str, _Photos] | None = None) -> None:
        self._photos: list[tuple[str, Image.Image]] = []
        self._lock = threading.Lock()
        for name, photos in (people or {}).items():
            if isinstance(photos, (list, tuple)):
                for photo in photos:
                    self.add(name, photo)
            else:
                self.add(name, photos)

    def add(self, name: str, photo: ImageSource) -> None:
        """Register one more photo of ``name`` (a name may have several; its best one counts).

        Raises:
            ImageError: the photo cannot be read (checked now, not at the first request).
        """
        image = open_image(photo)
        with self._lock:
            self._photos.append((name, image))

    @property
    def names(self) -> list[str]:
        """The registered names, each once, in registration order."""
        with self._lock:
            return list(dict.fromkeys(name for name, _ in self._photos))

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __repr__(self) -> str:
        return f"Gallery({self.names!r})"

    def recognizer(
        self,
        detector: Detector | str = "auto",
        *,
        floor: float = DEFAULT_FLOOR,
        identity: Literal["auto", "embeddings", "pixels"] = "auto",
    ) -> Recognizer:
        """A celebrity-endpoint answer function: ``f(PIL.Image) -> [celebrity dict]``.

        Args:
            detector: finds the faces, in uploads and in the reference photos: a detector
                function, or a name for [`load_detector`][ncp_cfr.testing.load_detector].
            floor: the pixel measure's similarity (-1..1) at or below which the confidence is
                the minimum, 0.01.
            identity: how faces are compared: ``"embeddings"`` (dlib's face descriptor; the
                ``attributes`` extra), ``"pixels"`` (the pixel measure), or ``"auto"``
                (embeddings when installed).

        Raises:
            ModelsUnavailableError: ``identity="embeddings"`` without the extra.

        Photos added to the gallery later are picked up by the recognizer too.
        """
        if isinstance(detector, str):
            from ncp_cfr.testing.detector import load_detector

            detector = load_detector(detector, attributes=None)
        # Only the faces matter here: the gender and age models would run for nothing.
        faces_only = getattr(detector, "without_attributes", None)
        found: Detector = faces_only() if callable(faces_only) else detector
        if not -1.0 <= floor < 1.0:
            raise InvalidArgumentError(f"floor must be in [-1, 1), not {floor}")
        if identity not in ("auto", "embeddings", "pixels"):
            raise InvalidArgumentError(
                f"identity is 'auto', 'embeddings' or 'pixels', not {identity!r}"
            )
        embedder = None
        if identity != "pixels":
            from ncp_cfr.testing.attributes import FaceEmbedder, load_embedder

            embedder = FaceEmbedder() if identity == "embeddings" else load_embedder()
        return _GalleryRecognizer(self, found, floor, embedder)

    def _snapshot(self) -> list[tuple[str, Image.Image]]:
        with self._lock:
            return list(self._photos)


class _GalleryRecognizer:
    def __init__(
        self, gallery: Gallery, detector: Detector, floor: float, embedder: Any = None
    ) -> None:
        self._gallery = gallery
        self._detector = detector
        self._floor = floor
        #: Compares faces by identity when set (a FaceEmbedder); else by pixels.
        self.embedder = embedder
        # Signatures by photo identity: computed once per photo, on first use.
        self._signatures: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _reference(self, photo: Image.Image) -> Any:
        faces = self._detector(photo)
        if faces:
            face = max(faces, key=lambda f: f["roi"]["width"] * f["roi"]["height"])
        else:  # a tight crop the detector misses: the whole photo is the face
            face = {"roi": {"x": 0, "y": 0, "width": photo.width, "height": photo.height}}
        return self._signature(photo, face)

    def _signature(self, image: Image.Image, face: Mapping[str, Any]) -> Any:
        if self.embedder is not None:
            return self.embedder(image, face)
        return face_signature(image, face)

    def _confidence(self, signature: Any, reference: Any) -> float:
        """How sure a face is the reference's person, 0.01..1."""
        if self.embedder is not None:
            from ncp_cfr.testing.attributes import identity_confidence

            distance = float(((signature - reference) ** 2).sum() ** 0.5)
            confidence = identity_confidence(distance)
        else:
            confidence = (float(signature @ reference) - self._floor) / (1.0 - self._floor)
        return min(max(confidence, _MIN_CONFIDENCE), 1.0)

    def _references(self) -> list[tuple[str, Any]]:
        photos = self._gallery._snapshot()
        with self._lock:
            for _, photo in photos:
                if id(photo) not in self._signatures:
                    self._signatures[id(photo)] = self._reference(photo)
            return [(name, self._signatures[id(photo)]) for name, photo in photos]

    def __call__(self, image: Image.Image) -> list[dict[str, Any]]:
        references = self._references()
        if not references:
            return []
        answers = []
        for face in self._detector(image):
            signature = self._signature(image, face)
            name, confidence = max(
                ((name, self._confidence(signature, ref)) for name, ref in references),
                key=lambda pair: pair[1],
            )
            answers.append(make_celebrity(name, round(confidence, 6)))
        return answers
