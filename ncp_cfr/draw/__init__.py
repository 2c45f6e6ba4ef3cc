"""Pictures of results: overlays ([`draw_faces`][ncp_cfr.draw_faces]), crops
([`crop_faces`][ncp_cfr.crop_faces]) and anonymisation ([`blur_faces`][ncp_cfr.blur_faces]).

Every function loads the image the way the client does
([`ncp_cfr.images.open_image`][ncp_cfr.open_image]), so a result's coordinates land where the
service saw the faces, and returns a new image: the caller's image is never modified. Sizes that are
not given (line width, font size, marker size, blur strength) are derived from the image and the
faces, so the defaults look the same on a 300 px crop and on a 24 MP photo.
"""

from ncp_cfr.draw._overlay import PALETTE, Color, draw_faces, face_label
from ncp_cfr.draw._regions import blur_faces, crop_faces

__all__ = ["PALETTE", "Color", "blur_faces", "crop_faces", "draw_faces", "face_label"]
