"""ncp_cfr: the Python SDK for NAVER Cloud Platform's CLOVA Face Recognition (CFR).

```python
from ncp_cfr import Client

with Client() as client:  # NCP_CFR_CLIENT_ID / NCP_CFR_CLIENT_SECRET
    for face in client.detect_faces("photo.jpg").faces:
        print(face.roi, face.gender.value, face.age.value)
```
"""

from ncp_cfr._version import __version__
from ncp_cfr.client import AsyncClient, Client
from ncp_cfr.draw import blur_faces, crop_faces, draw_faces
from ncp_cfr.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CFRError,
    ImageError,
    ImageTooLargeError,
    InvalidImageError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
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
from ncp_cfr.pipelines import BatchItem

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
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
    "FaceResult",
    "Gender",
    "GenderValue",
    "ImageError",
    "ImageTooLargeError",
    "Info",
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
