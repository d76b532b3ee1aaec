"""Long test videos made quickly: a real clip's packets repeated into one file, without re-encoding."""

from __future__ import annotations

from pathlib import Path

__all__ = ["looped_video"]


def looped_video(clip: str | Path, path: str | Path, copies: int) -> Path:
    """Write ``clip`` ``copies`` times over into the MP4 ``path`` (its video stream, remuxed); return ``path``.

    Every copy keeps the clip's pictures and timing, shifted to follow the one before, so a
    ten-second clip becomes a long video of real faces in well under a second.
    """
    import av

    with av.open(str(clip)) as src, av.open(str(path), "w", format="mp4") as out:
        video = src.streams.video[0]
        stream = out.add_stream_from_template(video)
        offset = 0
        for _ in range(copies):
            src.seek(0)
            end = offset
            for packet in src.demux(video):
                if packet.dts is None:  # the demuxer's empty packet at the end
                    continue
                packet.pts += offset
                packet.dts += offset
                end = max(end, packet.pts + (packet.duration or 0))
                packet.stream = stream
                out.mux(packet)
            offset = end
    return Path(path)
