"""What YuNet costs and finds by size: the figures behind vultus/faces/scale.py's choices.

    .venv/bin/python bench/detector_scale.py [--data-root ../shared/data]

(a) Cost: ms and ns a pixel of one YuNet call on one core, for detection copies of several
    sizes cut from the largest shared photo (why copies over about 0.8 MP are tiled).
(b) Window: the sure faces (score >= 0.8) YuNet finds in every group photo and every third
    identity photo at a 960 px long side, looked for again at smaller sizes with no size
    filter, counted as found or missed by their width in the detection copy (why the window
    is 16 px).
(c) Floor: faces found in the labelled group photos (of 42, with those over the labels), and
    identity photos left with no face, when YuNet searches at least 480, 640, 800 or 960 px
    (why the floor is 960).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vultus.evaluation import identity_photos  # noqa: E402
from vultus.faces import FaceAnalyzer  # noqa: E402
from vultus.faces.libfacedetection import YuNetDetector  # noqa: E402
from vultus.faces.pipeline import scaled_for_detection  # noqa: E402
from vultus.media import decode_image  # noqa: E402


def _scaled(rgb: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    height, width = rgb.shape[:2]
    scale = long_side / max(height, width)
    return scaled_for_detection(rgb, (max(1, round(width * scale)), max(1, round(height * scale)))), scale


def cost(largest: np.ndarray) -> None:
    detector = YuNetDetector()
    work, _ = _scaled(largest, 3200)
    print("(a) one YuNet call, one core")
    print("size        ms    ns/pixel")
    for width, height in ((480, 320), (640, 427), (768, 768), (1280, 640), (960, 960), (1024, 1024),
                          (1280, 854), (2000, 1335)):
        tile = np.ascontiguousarray(work[:height, :width])
        detector.detect(tile)
        started = time.perf_counter()
        for _ in range(3):
            detector.detect(tile)
        seconds = (time.perf_counter() - started) / 3
        print(f"{width}x{height:<6} {seconds * 1000:5.0f}  {seconds * 1e9 / (width * height):6.0f}")


def _iou(a, b) -> float:  # noqa: ANN001 - (left, top, right, bottom) tuples
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def window(images: list[np.ndarray]) -> None:
    detector = YuNetDetector()
    detector.min_box = 0  # every box the network gives, to see where it stops finding faces

    def found(rgb: np.ndarray, long_side: int):  # noqa: ANN202 - boxes in original pixels, and the scale
        work, scale = _scaled(rgb, long_side)
        return [(d.box.left / scale, d.box.top / scale, d.box.right / scale, d.box.bottom / scale, d.score)
                for d in detector.detect(work)], scale

    counts: dict[int, list[int]] = {}
    for rgb in images:
        reference = [r for r in found(rgb, 960)[0] if r[4] >= 0.8]
        for long_side in (640, 480, 400, 320, 256, 200, 160, 128, 100):
            boxes, scale = found(rgb, long_side)
            for face in reference:
                width = int((face[2] - face[0]) * scale) // 4 * 4
                counts.setdefault(width, [0, 0])[0 if any(_iou(face, b) > 0.4 for b in boxes) else 1] += 1
    print("\n(b) faces by width where detected (px): found / missed")
    for width in sorted(w for w in counts if w < 40):
        print(f"{width:2d}-{width + 3:<3d} {counts[width][0]:4d} / {counts[width][1]}")


def floor(groups: dict[str, tuple[np.ndarray, int]], identities: list[np.ndarray]) -> None:
    analyzer = FaceAnalyzer.from_names("yunet", "dlib-resnet-v1")
    print("\n(c) floor (px)  group faces of 42  over the labels  identity photos with no face")
    for size in (480, 640, 800, 960):
        analyzer.detector.min_size = size
        got = over = 0
        for rgb, expected in groups.values():
            n = len(analyzer.detect(rgb))
            got, over = got + min(n, expected), over + max(0, n - expected)
        empty = sum(1 for rgb in identities if not analyzer.detect(rgb))
        print(f"{size:>13}  {got:>17}  {over:>15}  {empty:>29}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("VULTUS_TEST_DATA") or str(REPO.parent / "shared" / "data"))
    args = parser.parse_args()
    faces = Path(args.data_root) / "faces"
    identities = []
    for paths in identity_photos(faces).values():
        for path in paths:
            try:
                identities.append(decode_image(path.read_bytes(), name=str(path)).rgb)
            except Exception:  # noqa: BLE001 - the set's unreadable files
                continue
    with open(faces / "labels.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["file"].startswith("_group/") and r["expected_faces"]]
    groups = {r["file"]: (decode_image((faces / r["file"]).read_bytes()).rgb, int(r["expected_faces"])) for r in rows}
    cost(max(identities, key=lambda rgb: rgb.shape[0] * rgb.shape[1]))
    window([rgb for rgb, _ in groups.values()] + identities[::3])
    floor(groups, identities)


if __name__ == "__main__":
    main()
