"""Synthetic photos for the fake models: coloured squares on a plain background.

A square's colour is the identity of its "person": :class:`~vultus.testing.FakeEmbedder`
gives squares of one colour the same template wherever they are and however large, and
squares of two colours of :data:`PALETTE` templates far beyond the match distance.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["BACKGROUND", "PALETTE", "Square", "blank_photo", "square_photo", "square_pixels"]

#: Colours far enough apart (at least 128 levels in some channel) to be different people.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (210, 30, 30),
    "green": (30, 190, 40),
    "blue": (30, 50, 210),
    "yellow": (230, 210, 30),
    "magenta": (200, 40, 200),
    "cyan": (40, 200, 210),
    "black": (15, 15, 15),
    "orange": (240, 130, 20),
}

#: The plain background squares are drawn on: a light grey, unlike every palette colour.
BACKGROUND: tuple[int, int, int] = (235, 235, 235)


@dataclass(frozen=True)
class Square:
    """One solid square "face": its colour (a :data:`PALETTE` name or RGB), corner and side."""

    colour: str | tuple[int, int, int]
    left: int
    top: int
    side: int = 96

    @property
    def rgb(self) -> tuple[int, int, int]:
        return PALETTE[self.colour] if isinstance(self.colour, str) else tuple(self.colour)  # type: ignore[return-value]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom), right and bottom exclusive, as Vultus's boxes are."""
        return self.left, self.top, self.left + self.side, self.top + self.side


def _squares(squares: Sequence[Square | str]) -> list[Square]:
    """Squares given as colour names alone are laid out left to right, 96 px apart."""
    laid = []
    for n, square in enumerate(squares):
        laid.append(Square(square, 40 + n * 192, 60) if isinstance(square, str) else square)
    return laid


def square_pixels(squares: Sequence[Square | str], *, size: tuple[int, int] = (640, 480),
                  background: tuple[int, int, int] = BACKGROUND) -> np.ndarray:
    """An RGB array (height x width x 3, uint8) of ``size`` (width, height) with the squares drawn.

    A square given as a colour name is placed in a row along the top (at most three fit the
    default width); squares must not overlap or touch, as faces would not be told apart.
    """
    width, height = size
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[:] = background
    for square in _squares(squares):
        left, top, right, bottom = square.box
        if left < 1 or top < 1 or right >= width or bottom >= height:
            raise ValueError(f"The square at {square.box} does not fit inside a {width}x{height} photo with a border.")
        rgb[top:bottom, left:right] = square.rgb
    return rgb


def square_photo(squares: Sequence[Square | str] = ("red",), *, size: tuple[int, int] = (640, 480),
                 format: str = "JPEG", background: tuple[int, int, int] = BACKGROUND,
                 quality: int = 92) -> bytes:
    """A photo file (JPEG or PNG bytes) of :func:`square_pixels`."""
    image = Image.fromarray(square_pixels(squares, size=size, background=background))
    out = io.BytesIO()
    if format.upper() in ("JPEG", "JPG"):
        image.save(out, format="JPEG", quality=quality)
    else:
        image.save(out, format=format.upper())
    return out.getvalue()


def blank_photo(*, size: tuple[int, int] = (640, 480), format: str = "JPEG",
                background: tuple[int, int, int] = BACKGROUND) -> bytes:
    """A photo with no square at all: the fake detector finds no face in it."""
    return square_photo((), size=size, format=format, background=background)
