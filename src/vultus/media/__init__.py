"""Media: finding photos, decoding them into pixels, and cutting face crops."""

from .collect import Collection, Item, collect
from .crop import face_crop_jpeg
from .decode import SUPPORTED_FORMATS, DecodedImage, decode_image, sniff_format

__all__ = [
    "Collection",
    "DecodedImage",
    "Item",
    "SUPPORTED_FORMATS",
    "collect",
    "decode_image",
    "face_crop_jpeg",
    "sniff_format",
]
