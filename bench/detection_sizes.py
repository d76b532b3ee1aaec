"""The smallest face each detector finds at each photo size, as Vultus plans detection.

    .venv/bin/python bench/detection_sizes.py [--min-face 32]

Prints, for common photo sizes, the detection copy, how many tiles it is searched in, and
the smallest face (shorter side, original pixels) that the plan finds: the detector's
window divided by the scale. No timing: this is what `vultus.faces.scale` decides.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vultus.faces import create_detector  # noqa: E402
from vultus.faces.scale import plan_detection  # noqa: E402

SIZES = [(250, 250), (640, 480), (1280, 960), (1920, 1080), (4000, 3000), (6000, 4000), (8000, 6000), (12000, 9000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-face", type=int, default=32, help="VULTUS_MIN_FACE_SIZE (default 32)")
    args = parser.parse_args()
    print(f"Minimum face {args.min_face} px (VULTUS_MIN_FACE_SIZE); copy = detection copy (px), tiles searched")
    print("| photo | yunet: copy, tiles, smallest face | hog: copy, tiles, smallest face |")
    print("|---|---|---|")
    for width, height in SIZES:
        cells = []
        for name in ("yunet", "hog"):
            plan = plan_detection(width, height, create_detector(name), min_face=args.min_face)
            cells.append(f"{plan.size[0]}x{plan.size[1]}, {len(plan.tiles)}, {plan.smallest_face} px")
        print(f"| {width}x{height} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
