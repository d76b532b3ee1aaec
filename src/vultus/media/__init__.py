"""Media: finding items to ingest, telling their content type, decoding them into frames of
pixels, cleaning stored copies, cutting crops; reading videos (:mod:`vultus.media.video`,
not yet registered as a decoder).

Importing this package registers the photo decoders (``vultus.media.photo``) and the video
ones (``vultus.media.video_item``, PyAV imported only when a video is read); the registry
itself (``vultus.media.base``) imports no decoder.
"""

from . import photo as _photo  # noqa: F401 - registers the photo formats
from . import video_item as _video_item  # noqa: F401 - registers the video containers
from .base import (
    HEAD_BYTES,
    PHOTO_FRAME,
    Decoder,
    Frame,
    MediaItem,
    MediaKind,
    accepted_suffixes,
    content_type_of,
    content_types,
    decoder_for,
    decoders,
    ends_with_accepted,
    format_names,
    register_decoder,
    suffix_for,
    unregister_decoder,
)
from .collect import Collection, Item, collect, read_items
from .containers import VIDEO_SUFFIXES, sniff_video
from .crop import face_crop_jpeg, frame_jpeg, redact_regions, still_jpeg
from .decode import SUPPORTED_FORMATS, DecodedImage, PhotoPixels, decode_image, sniff_format, upright_size
from .items import first_frame, no_picture, open_media, read_media, read_photo
from .location import strip_location
from .photo import PhotoItem
from .video_item import VideoItem, frame_key
from .video import VideoFrame, VideoInfo, probe_video, sample_frames

__all__ = [
    "Collection",
    "DecodedImage",
    "Decoder",
    "Frame",
    "Item",
    "MediaItem",
    "MediaKind",
    "HEAD_BYTES",
    "PHOTO_FRAME",
    "PhotoItem",
    "VideoItem",
    "frame_key",
    "PhotoPixels",
    "SUPPORTED_FORMATS",
    "VIDEO_SUFFIXES",
    "VideoFrame",
    "VideoInfo",
    "accepted_suffixes",
    "collect",
    "content_type_of",
    "content_types",
    "decode_image",
    "decoder_for",
    "decoders",
    "ends_with_accepted",
    "face_crop_jpeg",
    "first_frame",
    "format_names",
    "frame_jpeg",
    "no_picture",
    "open_media",
    "probe_video",
    "read_items",
    "read_media",
    "read_photo",
    "redact_regions",
    "register_decoder",
    "sample_frames",
    "still_jpeg",
    "strip_location",
    "sniff_format",
    "sniff_video",
    "strip_location",
    "suffix_for",
    "unregister_decoder",
    "upright_size",
]
