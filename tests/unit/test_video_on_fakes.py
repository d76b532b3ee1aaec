"""Video appearances on the fake models: the stills kept of them.

A coloured square is a person; a still is a synthetic frame of squares.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from vultus.media import still_jpeg

def _frame(fakes, squares):
    return fakes.square_pixels([fakes.Square(colour, left, top) for colour, (left, top) in squares], size=(640, 480))


def test_a_still_blacks_out_the_faces_it_is_told_to_and_outlines_its_own(fakes):
    frame = _frame(fakes, [("red", (40, 60)), ("green", (300, 60))])
    before = frame.copy()
    jpeg = still_jpeg(frame, (40, 60, 136, 156), redact=[(300, 60, 396, 156)])
    assert np.array_equal(frame, before)  # the caller's frame is not changed
    pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    assert pixels[60 + 48, 300 + 48].max() < 40 and pixels[60 + 5, 300 + 5].max() < 40  # the objector: black
    assert abs(pixels[60 + 48, 40 + 48] - np.array(fakes.PALETTE["red"])).max() < 30  # the face itself: as it was
    assert abs(pixels[58, 80] - np.array([255, 196, 0])).max() < 60  # the outline, just above the box
    found = fakes.FakeDetector().detect(pixels.astype(np.uint8))
    colours = {tuple(int(v) for v in pixels[(d.box.top + d.box.bottom) // 2, (d.box.left + d.box.right) // 2]) for d in found}
    assert not any(abs(np.array(c) - np.array(fakes.PALETTE["green"])).max() < 40 for c in colours)
