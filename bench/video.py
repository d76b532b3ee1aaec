"""Video ingest's parts at work: sampling, detection, embedding and linking, as real-time factors.

Usage: python bench/video.py [--data-root ../shared/data] [--rate 2] [--no-hd] [--repeat 3] [--long 12]

For every video in ``DATA/video/`` (and, unless ``--no-hd``, the shared clip scaled to
1920x1080 and encoded here with libx264, as phones record), each configuration runs in a
fresh child process that does what video ingest will do: ``sample_frames`` at the rate
(default 2 a second), the quality gate's ``analyze_gated`` with the default detector (YuNet)
and dlib's ResNet on each sampled frame, and ``AppearanceTracker``. It prints:

* sampled frames, faces that passed the gate, appearances;
* wall time from opening the file to the last appearance (the models are loaded before, and
  their loading is shown apart), and the real-time factor: seconds of video per second of
  wall time (over 1 is faster than playback);
* the child's peak resident memory (VmHWM), and what it was once the models were loaded.

Each row is the fastest of ``--repeat`` runs (default 3): on a machine shared with other
work, the fastest is the one least slowed by it.

Configurations, on this machine's cores (2 where it was measured):

* ``1 lane``: one thread analyses one frame at a time; onnxruntime and the decoder use the
  cores as they will (ORT threads unset, decoder 2 threads).
* ``2 lanes``: two frames analysed at once by two threads (``FaceAnalyzer(lanes=2)``, the
  models' native code runs without the GIL), one onnxruntime thread each, the decoder on
  one thread; appearances are linked in time order as results come back.
* ``2 lanes, photo floor``: the same, with frames blown up to YuNet's 960 px as small photos
  are, which video ingest does not do (``VIDEO_MAX_UPSCALE``): the comparison behind that.
* ``decode only``: sampling alone, the decoder's share of the cost.

``nearest`` is the distance from Lin-Manuel Miranda's photo (the warm-up face) to the
nearest appearance found: the match a search would rank first.

* ``ingest``: the real thing, ``Engine.ingest`` into a fresh data directory with the default
  workers (one process per core; a video is analysed in one of them, two frames at a time),
  timed from the call to its return, worker start-up and model loading included; peak memory
  is the larger of this process and its largest worker. Besides the shared clip it ingests
  the clip remuxed ``--long`` times over into one file (default 12: two minutes of video),
  where loading the models no longer dominates.

Run it alone: it uses every core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

_CHILD = r"""
import json, sys, time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024

from vultus.faces import FaceAnalyzer, QualityGate
from vultus.faces.tracks import AppearanceTracker
from vultus.media import decode_image
from vultus.media.video import probe_video, sample_frames

path, rate, mode, face_photo = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
info = probe_video(path)
lanes = 2 if mode.startswith("2 lanes") else 1
started = time.perf_counter()
analyzer = FaceAnalyzer.from_names("yunet", "dlib-resnet-v1", lanes=lanes)
if mode != "decode only":
    warm = decode_image(open(face_photo, "rb").read()).rgb  # a face: the embedder loads too
    with ThreadPoolExecutor(lanes) as pool:  # every lane's models loaded
        probe = list(pool.map(analyzer.analyze, [warm] * lanes))[0][0].embedding
load_s = time.perf_counter() - started
loaded = hwm()
gate = QualityGate()
from vultus.video_ingest import VIDEO_MAX_UPSCALE as upscale  # as ingest detects frames
if mode.endswith("photo floor"):
    upscale = None  # as photos are detected: small frames blown up to YuNet's 960 px
tracker = AppearanceTracker(link_distance=analyzer.embedder.spec.match_distance)
samples = faces = 0
appearances = []
started = time.perf_counter()
frames = sample_frames(path, rate=rate, threads=1 if lanes == 2 else 2)
if mode == "decode only":
    samples = sum(1 for _ in frames)
elif lanes == 1:
    for frame in frames:
        passed, _, _ = analyzer.analyze_gated(frame.rgb, gate, max_upscale=upscale)
        samples, faces = samples + 1, faces + len(passed)
        appearances += tracker.add(frame.time, passed, frame.rgb)
else:
    with ThreadPoolExecutor(lanes) as pool:
        pending = deque()
        def settle(block):
            global samples, faces
            while pending and (block or pending[0][1].done()):
                frame, job = pending.popleft()
                passed = job.result()[0]
                samples, faces = samples + 1, faces + len(passed)
                appearances.extend(tracker.add(frame.time, passed, frame.rgb))
        for frame in frames:
            pending.append((frame, pool.submit(analyzer.analyze_gated, frame.rgb, gate, max_upscale=upscale)))
            while len(pending) > 2 * lanes:
                frame0, job0 = pending[0]
                job0.result()
                settle(False)
        settle(True)
appearances += tracker.finish()
wall = time.perf_counter() - started
import numpy as np
nearest = min((float(np.linalg.norm(a.template - probe)) for a in appearances), default=None)
print(json.dumps({"nearest": nearest, "duration": info.duration, "size": f"{info.width}x{info.height}", "samples": samples,
                  "faces": faces, "appearances": len(appearances) if mode != "decode only" else 0,
                  "wall": wall, "load": load_s, "loaded_mb": loaded, "peak_mb": hwm()}))
"""

_INGEST = r"""
import json, resource, sys, time
import vultus
path, data = sys.argv[1], sys.argv[2]
engine = vultus.open(data)
engine.add_source("bench", basis="legitimate-interests", purpose="bench", retention="1d")
started = time.perf_counter()
summary = engine.ingest([path], source="bench")
wall = time.perf_counter() - started
faces = engine.store.hydrate(engine.store.searchable_face_ids().tolist()).values()
duration = max((f.duration or 0) for f in faces) if faces else 0
own = int([l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]) // 1024
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
print(json.dumps({"duration": duration, "size": "", "samples": "", "faces": "", "appearances": summary.appearances,
                  "wall": wall, "load": 0.0, "loaded_mb": "", "peak_mb": max(own, workers),
                  "refused": summary.refused}))
"""

_LONG = r"""
import sys
from vultus.testing.video import looped_video
looped_video(sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""

_MAKE_HD = r"""
import sys, av
source, target = sys.argv[1], sys.argv[2]
with av.open(source) as inp, av.open(target, "w") as out:
    stream = inp.streams.video[0]
    video = out.add_stream("libx264", rate=stream.average_rate)
    video.width, video.height, video.pix_fmt = 1920, 1080, "yuv420p"
    video.options = {"crf": "20", "preset": "veryfast"}
    for frame in inp.decode(stream):
        picture = frame.reformat(width=1920, height=1080, format="yuv420p")
        picture.pts, picture.time_base = frame.pts, frame.time_base
        out.mux(video.encode(picture))
    out.mux(video.encode())
"""


def _run(code: str, *args: str, env: dict | None = None) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(SRC), **(env or {})})
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path,
                        default=Path(os.environ.get("VULTUS_TEST_DATA") or REPO.parent / "shared" / "data"))
    parser.add_argument("--rate", type=float, default=2.0, help="frames sampled per second of video")
    parser.add_argument("--no-hd", action="store_true", help="skip the 1080p copy of the shared clip")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each row; the fastest is shown")
    parser.add_argument("--long", type=int, default=12, help="copies of the clip in the long video ingested")
    args = parser.parse_args()
    videos = sorted(p for p in (args.data_root / "video").iterdir() if p.is_file())
    face_photo = args.data_root / "faces" / "facerec_lin_manuel_miranda" / "1.png"
    with tempfile.TemporaryDirectory() as work:
        if not args.no_hd and videos:
            hd = Path(work) / f"{videos[0].stem}_1080p.mp4"
            _run(_MAKE_HD, str(videos[0]), str(hd))
            videos.append(hd)
        print(f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.2f} at the start), sampling "
              f"{args.rate:g} frames a second; YuNet + dlib-resnet-v1\n")
        header = (f"{'video':34} {'size':>9} {'seconds':>7} {'config':>20} {'samples':>7} {'faces':>5} "
                  f"{'appear.':>7} {'wall s':>7} {'x real':>6} {'load s':>6} {'models MB':>9} {'peak MB':>7} "
                  f"{'nearest':>7}")
        print(header)
        print("-" * len(header))
        rows = [(video, mode, env) for video in videos
                for mode, env in (("1 lane", {}), ("2 lanes", {"VULTUS_ORT_THREADS": "1"}),
                                  ("2 lanes, photo floor", {"VULTUS_ORT_THREADS": "1"}), ("decode only", {}))]
        if videos:
            long = Path(work) / f"{videos[0].stem}_x{args.long}.mp4"
            _run(_LONG, str(videos[0]), str(long), str(args.long))
            rows += [(videos[0], "ingest", {}), (long, "ingest", {})]
        for number, (video, mode, env) in enumerate(rows):
            if mode == "ingest":
                runs = [json.loads(_run(_INGEST, str(video), str(Path(work) / f"data{number}_{n}"),
                                        env={"VULTUS_VIDEO_SAMPLE_RATE": str(args.rate)}))
                        for n in range(max(1, args.repeat))]
            else:
                runs = [json.loads(_run(_CHILD, str(video), str(args.rate), mode, str(face_photo), env=env))
                        for _ in range(max(1, args.repeat))]
            row = min(runs, key=lambda r: r["wall"])
            nearest = "" if row.get("nearest") is None else f"{row['nearest']:.3f}"
            print(f"{video.name[:34]:34} {row['size']:>9} {row['duration']:>7.1f} {mode:>20} {row['samples']:>7} "
                  f"{row['faces']:>5} {row['appearances']:>7} {row['wall']:>7.2f} "
                  f"{row['duration'] / row['wall']:>6.1f} {row['load']:>6.1f} {row['loaded_mb']:>9} "
                  f"{row['peak_mb']:>7} {nearest:>7}")
            if row.get("refused"):
                print(f"  refused: {row['refused']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
