"""The figures behind vultus.faces.tracks: its gates, and which template represents an appearance best.

Usage: python bench/appearances.py [--data-root ../shared/data]

On the shared Hamilton clip, sampled at 2 and at 6 frames a second, with YuNet, dlib's ResNet
and the default quality gate:

(a) Template distances between the same face in consecutive samples of one shot (boxes
    overlapping, IoU over 0.2; shots cut where consecutive pictures differ by over 20 grey
    levels on average), and between different faces of one frame: what ``link_distance`` and
    the motion gate have to separate.
(b) Appearances linked by the tracker, each represented by one rule or another (the
    best-quality sighting, the best score, the largest face, the mean template, the
    quality-weighted mean, the medoid, 2 or 3 diverse sightings, every sighting), searched
    with the photos of the people in the clip: Lin-Manuel Miranda's one photo (his appearances
    are those inside 0.844-1.478 s at the right of the stage and inside 3.580-7.851 s; see
    tests/models/test_video_appearances.py for how that is known) and Barack Obama's four (the
    audience shot, the face centred 320-380 px across, near the top). For each rule: the
    pairs found at distance 0.6, each pair's distance (the nearest of the appearance's
    templates), and each probe's nearest appearance of someone else.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vultus.faces import Face, FaceAnalyzer, QualityGate  # noqa: E402
from vultus.faces.tracks import link_appearances  # noqa: E402
from vultus.media import decode_image  # noqa: E402
from vultus.media.video import sample_frames  # noqa: E402

PROBES = {"miranda": ["facerec_lin_manuel_miranda/1.png"], "obama": [f"facerec_obama/{n}.jpg" for n in (1, 2, 3, 4)]}
RULES = ["best quality", "best score", "largest", "mean", "weighted mean", "medoid", "2 diverse", "3 diverse", "all"]


def cuts(path: Path) -> list[float]:
    """Times of the first picture of each shot after the first, from consecutive pictures' difference."""
    import av

    found, previous = [], None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        origin = (container.start_time or 0) / 1_000_000
        for frame in container.decode(stream):
            picture = frame.to_ndarray(format="rgb24").astype(np.float32)
            if previous is not None and np.abs(picture - previous).mean() > 20:
                found.append(float(frame.pts * stream.time_base) - origin)
            previous = picture
    return found


def iou(a, b) -> float:
    left, top, right, bottom = max(a.left, b.left), max(a.top, b.top), min(a.right, b.right), min(a.bottom, b.bottom)
    inter = max(0, right - left) * max(0, bottom - top)
    return inter / (a.area + b.area - inter)


def label(appearance, shot) -> str:
    """Who an appearance is, by its shot (0 to 3, see tests/models/test_video_appearances.py) and place."""
    boxes = [s.box for s in appearance.sightings]
    x = np.mean([(b.left + b.right) / 2 for b in boxes])
    y = np.mean([(b.top + b.bottom) / 2 for b in boxes])
    first, last = shot(appearance.start), shot(appearance.end)
    if (first == last == 0 and x > 400) or first == last == 2:
        return "miranda"
    if first == last == 3 and 320 < x < 380 and y < 110:
        return "obama"
    return "someone else"


def represent(appearance, rule: str) -> np.ndarray:
    sightings = appearance.sightings
    vectors = np.stack([s.embedding for s in sightings])
    quality = np.array([s.quality for s in sightings])
    best = int(np.argmax(quality))
    if rule == "best quality":
        return vectors[[best]]
    if rule == "best score":
        return vectors[[int(np.argmax([s.score for s in sightings]))]]
    if rule == "largest":
        return vectors[[int(np.argmax([min(s.box.width, s.box.height) for s in sightings]))]]
    if rule == "mean":
        return vectors.mean(0, keepdims=True)
    if rule == "weighted mean":
        return (vectors * quality[:, None]).sum(0, keepdims=True) / quality.sum()
    if rule == "medoid":
        return vectors[[int(np.argmin(np.linalg.norm(vectors[:, None] - vectors[None], axis=2).sum(1)))]]
    if rule.endswith("diverse"):
        chosen = [best]
        while len(chosen) < min(int(rule[0]), len(sightings)):
            nearest = np.min(np.linalg.norm(vectors[:, None] - vectors[chosen][None], axis=2), axis=1)
            chosen.append(int(np.argmax(nearest)))
        return vectors[chosen]
    return vectors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path,
                        default=Path(os.environ.get("VULTUS_TEST_DATA") or REPO.parent / "shared" / "data"))
    args = parser.parse_args()
    clip = args.data_root / "video" / "short_hamilton_clip.mp4"
    analyzer = FaceAnalyzer.from_names("yunet", "dlib-resnet-v1")
    probes = {who: [analyzer.analyze(decode_image((args.data_root / "faces" / p).read_bytes()).rgb)[0].embedding
                    for p in photos] for who, photos in PROBES.items()}
    shots = cuts(clip)
    print(f"shots start at {', '.join(f'{t:.3f}' for t in shots)} s (after the first)")
    for rate in (2.0, 6.0):
        frames: list[tuple[float, list[Face]]] = []
        for frame in sample_frames(clip, rate=rate):
            frames.append((frame.time, analyzer.analyze_gated(frame.rgb, QualityGate())[0]))
        shot = lambda t: sum(t >= c for c in shots)  # noqa: E731
        same = [float(np.linalg.norm(a.embedding - b.embedding))
                for (t1, one), (t2, two) in zip(frames, frames[1:]) if shot(t1) == shot(t2)
                for a in one for b in two if iou(a.box, b.box) > 0.2]
        apart = [float(np.linalg.norm(a.embedding - b.embedding))
                 for _, faces in frames for i, a in enumerate(faces) for b in faces[i + 1:]]
        print(f"\n(a) {rate:g} samples a second: the same face in consecutive samples, n={len(same)}: "
              f"median {np.median(same):.3f}, 95th percentile {np.percentile(same, 95):.3f}, max {max(same):.3f}")
        print(f"    different faces in one frame, n={len(apart)}: min {min(apart):.3f}, "
              f"5th percentile {np.percentile(apart, 5):.3f}, median {np.median(apart):.3f}")
        appearances = link_appearances(frames, link_distance=analyzer.embedder.spec.match_distance)
        labels = [label(a, shot) for a in appearances]
        print(f"(b) {len(appearances)} appearances: {labels.count('miranda')} Miranda, {labels.count('obama')} Obama, "
              f"{labels.count('someone else')} others")
        print(f"    {'rule':14} {'found':>6} {'distance of each pair':>44} {'nearest wrong, per probe':>32} {'vectors':>7}")
        for rule in RULES:
            templates = [represent(a, rule) for a in appearances]
            pairs, wrong = [], []
            for who, vectors in probes.items():
                for probe in vectors:
                    distances = [float(np.min(np.linalg.norm(t - probe, axis=1))) for t in templates]
                    pairs += [d for d, lab in zip(distances, labels) if lab == who]
                    wrong.append(min(d for d, lab in zip(distances, labels) if lab != who))
            found = sum(d <= 0.6 for d in pairs)
            print(f"    {rule:14} {found:>3}/{len(pairs):<2} {' '.join(f'{d:.3f}' for d in pairs):>44} "
                  f"{' '.join(f'{d:.2f}' for d in wrong):>32} {sum(len(t) for t in templates):>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
