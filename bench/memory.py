"""Peak memory of one ingest worker: the shared photos, and small files that decode to huge images.

Usage: python bench/memory.py [--data-root ../shared/data]

Each case runs in a fresh child process that does what an ingest worker does (load the
default detector, YuNet, and dlib's ResNet, then decode, detect, align and embed each photo with
``analyze_photo``) and prints its own peak resident memory (VmHWM). The table gives the
file's size, the decode estimate checked against VULTUS_MAX_DECODE_MB, the child's memory
once the models are loaded, and its peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

_MAKE = r"""
import sys
import numpy as np
from PIL import Image
out = sys.argv[1]
Image.fromarray(np.zeros((11000, 10000), np.float32), mode="F").save(out + "/float.tiff", compression="tiff_deflate")
Image.fromarray(np.zeros((10000, 10000), np.uint16)).save(out + "/sixteen.png")
Image.fromarray(np.zeros((10000, 12000, 3), np.uint8)).save(out + "/rgb.jpg", quality=90)
"""

_WORKER = r"""
import io, json, sys
from pathlib import Path
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
from PIL import Image
from vultus.errors import MediaError
from vultus.faces.pipeline import FaceAnalyzer
from vultus.ingest import analyze_photo
from vultus.media.pixels import decode_cost
from vultus.config import Settings
analyzer = FaceAnalyzer.from_names(Settings().detector, "dlib-resnet-v1")
analyzer.analyze(__import__("numpy").zeros((200, 200, 3), "uint8"))  # load the models
loaded = hwm()
files = [Path(p) for p in sys.argv[1:]]
estimate = faces = refused = 0
for path in files:
    data = path.read_bytes()
    try:
        Image.MAX_IMAGE_PIXELS = None
        estimate = max(estimate, decode_cost(Image.open(io.BytesIO(data))).total // 2**20)
    except Exception:
        pass
    try:
        faces += len(analyze_photo(analyzer, data, name=path.name, max_pixels=120_000_000).faces)
    except MediaError:
        refused += 1
print(json.dumps({"loaded_mb": loaded, "peak_mb": hwm(), "estimate_mb": estimate, "faces": faces, "refused": refused}))
"""


def _run(files: list[Path]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", _WORKER, *map(str, files)], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = os.environ.get("VULTUS_TEST_DATA") or str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--data-root", default=default_root)
    args = parser.parse_args()
    faces_root = Path(args.data_root) / "faces"
    photos = sorted(p for p in faces_root.rglob("*") if p.is_file() and p.suffix.lower() != ".csv")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", _MAKE, tmp], check=True)
        cases = [
            (f"the {len(photos)} shared photos", photos),
            ("float TIFF 10000x11000 (F)", [Path(tmp) / "float.tiff"]),
            ("16-bit PNG 10000x10000 (I;16)", [Path(tmp) / "sixteen.png"]),
            ("8-bit JPEG 12000x10000 (RGB)", [Path(tmp) / "rgb.jpg"]),
        ]
        print(f"{'case':34} {'file':>10} {'estimate':>9} {'models':>7} {'peak':>7}")
        for label, files in cases:
            result = _run(files)
            size = sum(f.stat().st_size for f in files)
            print(f"{label:34} {size / 1024:>8.0f}KB {result['estimate_mb']:>7}MB {result['loaded_mb']:>5}MB "
                  f"{result['peak_mb']:>5}MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
