"""Media: finding photos, decoding them into pixels, cleaning stored copies, cutting crops and video stills."""

from .collect import Collection, Item, collect, read_items
from .crop import face_crop_jpeg, redact_regions, still_jpeg
from .decode import SUPPORTED_FORMATS, DecodedImage, PhotoPixels, decode_image, sniff_format, upright_size
from .location import strip_location

__all__ = [
    "Collection",
    "DecodedImage",
    "Item",
    "PhotoPixels",
    "SUPPORTED_FORMATS",
    "collect",
    "decode_image",
    "face_crop_jpeg",
    "read_items",
    "redact_regions",
    "still_jpeg",
    "strip_location",
    "sniff_format",
    "upright_size",
]
