"""Test without the real service: [`Emulator`][ncp_cfr.testing.Emulator] speaks CFR on loopback or
in-process.

```python
from ncp_cfr.testing import Emulator, make_face

with Emulator() as emu, emu.client() as client:
    emu.reply("face", faces=[make_face(40, 40, 120, 120, gender="female", age="24~28")])
    assert client.detect_faces("photo.jpg").faces[0].gender.value == "female"
```
"""

from typing import TYPE_CHECKING

from ncp_cfr._lazy import lazy_exports

if TYPE_CHECKING:
    from ncp_cfr.testing.detector import DetectorUnavailableError, FaceDetector, load_detector
    from ncp_cfr.testing.emulator import FAKE_CLIENT_ID, FAKE_CLIENT_SECRET, Emulator
    from ncp_cfr.testing.gallery import Gallery
    from ncp_cfr.testing.rules import (
        MAX_IMAGE_BYTES,
        RecordedRequest,
        cfr_error,
        error_envelope,
        frontal_landmarks,
        gateway_error,
        legacy_error,
        make_celebrity,
        make_face,
    )

# Imported on first use (PEP 562), as in `ncp_cfr`: the pytest plugin lives in this package.
_LAZY = {
    "DetectorUnavailableError": "detector",
    "FaceDetector": "detector",
    "load_detector": "detector",
    "FAKE_CLIENT_ID": "emulator",
    "FAKE_CLIENT_SECRET": "emulator",
    "Emulator": "emulator",
    "Gallery": "gallery",
    "MAX_IMAGE_BYTES": "rules",
    "RecordedRequest": "rules",
    "cfr_error": "rules",
    "error_envelope": "rules",
    "frontal_landmarks": "rules",
    "gateway_error": "rules",
    "legacy_error": "rules",
    "make_celebrity": "rules",
    "make_face": "rules",
}


__getattr__, __dir__ = lazy_exports("ncp_cfr.testing", _LAZY, globals())


__all__ = [
    "DetectorUnavailableError",
    "FaceDetector",
    "Gallery",
    "load_detector",
    "FAKE_CLIENT_ID",
    "FAKE_CLIENT_SECRET",
    "MAX_IMAGE_BYTES",
    "Emulator",
    "RecordedRequest",
    "cfr_error",
    "error_envelope",
    "frontal_landmarks",
    "gateway_error",
    "legacy_error",
    "make_celebrity",
    "make_face",
]
