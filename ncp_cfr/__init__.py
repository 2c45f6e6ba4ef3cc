"""ncp_cfr: the Python SDK for NAVER Cloud Platform's CLOVA Face Recognition (CFR).

```python
from ncp_cfr import Client

with Client() as client:  # NCP_CFR_CLIENT_ID / NCP_CFR_CLIENT_SECRET
    for face in client.detect_faces("photo.jpg").faces:
        print(face.roi, face.gender.value, face.age.value)
```
"""

from typing import TYPE_CHECKING

from ncp_cfr._lazy import lazy_exports
from ncp_cfr._version import __version__
from ncp_cfr.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CFRError,
    FontError,
    ImageError,
    ImageTooLargeError,
    InvalidArgumentError,
    InvalidImageError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)

if TYPE_CHECKING:
    from ncp_cfr.client import AsyncClient, Client
    from ncp_cfr.draw import blur_faces, crop_faces, draw_faces
    from ncp_cfr.images import PreparedImage, Transform, open_image, prepare_image
    from ncp_cfr.models import (
        Age,
        Analysis,
        AnalyzedFace,
        Celebrity,
        CelebrityFace,
        CelebrityResult,
        Emotion,
        EmotionValue,
        Face,
        FaceResult,
        Gender,
        GenderValue,
        Info,
        Landmark,
        Lookalike,
        LookalikeCandidate,
        LookalikeScale,
        Point,
        Pose,
        PoseValue,
        Prediction,
        Roi,
        Size,
        UploadInfo,
    )
    from ncp_cfr.pipelines import Batch, BatchItem

# Imported on first use (PEP 562): `import ncp_cfr` stays light (only the errors), so the pytest
# plugin every pytest session loads costs nothing and `--cov=ncp_cfr` measures the project's tests.
_LAZY = {
    "AsyncClient": "client",
    "Client": "client",
    "blur_faces": "draw",
    "crop_faces": "draw",
    "draw_faces": "draw",
    "PreparedImage": "images",
    "Transform": "images",
    "open_image": "images",
    "prepare_image": "images",
    "Age": "models",
    "Analysis": "models",
    "AnalyzedFace": "models",
    "Celebrity": "models",
    "CelebrityFace": "models",
    "CelebrityResult": "models",
    "Emotion": "models",
    "EmotionValue": "models",
    "Face": "models",
    "FaceResult": "models",
    "Gender": "models",
    "GenderValue": "models",
    "Info": "models",
    "Landmark": "models",
    "Lookalike": "models",
    "LookalikeCandidate": "models",
    "LookalikeScale": "models",
    "Point": "models",
    "Pose": "models",
    "PoseValue": "models",
    "Prediction": "models",
    "Roi": "models",
    "Size": "models",
    "UploadInfo": "models",
    "Batch": "pipelines",
    "BatchItem": "pipelines",
}


__getattr__, __dir__ = lazy_exports("ncp_cfr", _LAZY, globals())


__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "Batch",
    "BatchItem",
    "Age",
    "Analysis",
    "AnalyzedFace",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "CFRError",
    "Celebrity",
    "CelebrityFace",
    "CelebrityResult",
    "Client",
    "Emotion",
    "EmotionValue",
    "Face",
    "FontError",
    "FaceResult",
    "Gender",
    "GenderValue",
    "ImageError",
    "ImageTooLargeError",
    "Info",
    "InvalidArgumentError",
    "InvalidImageError",
    "Landmark",
    "Lookalike",
    "LookalikeCandidate",
    "LookalikeScale",
    "NotFoundError",
    "PermissionDeniedError",
    "Point",
    "Pose",
    "PoseValue",
    "Prediction",
    "PreparedImage",
    "QuotaExceededError",
    "RateLimitError",
    "Roi",
    "ServerError",
    "Size",
    "Transform",
    "UploadInfo",
    "__version__",
    "open_image",
    "prepare_image",
    "draw_faces",
    "crop_faces",
    "blur_faces",
]
