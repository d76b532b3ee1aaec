"""Reports as self-contained HTML pages: an access report (GDPR Art. 15) and an evaluation report."""

from __future__ import annotations

import os
import tempfile
from html import escape
from pathlib import Path
from typing import Any

from .errors import OutputPathError
from .metrics import roc_points

__all__ = ["access_report_html", "check_report_path", "clock", "evaluation_figures", "evaluation_plots", "evaluation_html"]


def clock(seconds: float | None) -> str:
    """A time in a video as people read it: ``mm:ss``, or ``h:mm:ss`` from an hour on (seconds are cut, not rounded)."""
    if seconds is None:
        return ""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def check_report_path(path: Path) -> None:
    """Refuse (OutputPathError) a report file that could not be written, before any work is done.

    Its folder must exist and take a new file: a trial file is made and removed, since
    permission bits do not tell (root ignores them; a read-only mount does not).
    """
    folder = Path(path).parent
    if not folder.is_dir():
        raise OutputPathError(
            f"The folder {folder} for the report does not exist; create it (mkdir -p {folder}) "
            "or give a --report path in an existing folder, then run the command again."
        )
    if Path(path).is_dir():
        raise OutputPathError(f"{path} is a folder; give a file name for the report, e.g. {Path(path) / 'report.html'}.")
    try:
        handle, trial = tempfile.mkstemp(dir=folder, prefix=".vultus-write-check-")
        os.close(handle)
        os.unlink(trial)
        if Path(path).exists():
            with open(path, "ab"):  # an existing report must be replaceable too; nothing is written
                pass
    except OSError as exc:
        raise OutputPathError(
            f"The report cannot be written in {folder} ({exc.strerror or exc}); give a --report path in a "
            "folder you can write to, then run the command again."
        ) from None

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.35rem .5rem;
text-align:left;vertical-align:top;font-size:.9rem}th{background:#f3f3f3}.crop{width:96px;height:auto}
.still{width:240px;height:auto}
.note{color:#555;font-size:.9rem}
"""


def access_report_html(report: dict[str, Any]) -> str:
    """The report as one HTML page with the face crops embedded (no external files)."""
    rows = []
    for image in report["images"]:
        crops = "".join(
            f'<img class="crop" alt="face {f["face_id"]}" src="data:image/jpeg;base64,{f["crop_jpeg_base64"]}">'
            for f in image["faces"]
            if f.get("crop_jpeg_base64")
        )
        faces = "<br>".join(
            f'face {f["face_id"]}, box {f["box"]}, similarity {f["similarity"]:.3f}'
            + (" (restricted: kept, never searched)" if f["restricted"] else "")
            for f in image["faces"]
        )
        rows.append(
            "<tr>"
            f"<td>{crops}</td>"
            f"<td>{escape(image['original_path'])}<br><small>sha256 {image['image_sha256']}</small><br>{faces}</td>"
            f"<td>{escape(image['source'])}<br>controller: {escape(image['controller'])}</td>"
            f"<td>{escape(image['legal_basis'])}<br>{escape(image['purpose'])}</td>"
            f"<td>{image['ingested_at']}</td><td>{image['expires_at']}</td>"
            "</tr>"
        )
    videos = []
    for video in report.get("videos", []):
        for shown in video["appearances"]:
            still = (f'<img class="still" alt="appearance {shown["appearance"]}" '
                     f'src="data:image/jpeg;base64,{shown["still_jpeg_base64"]}">' if shown.get("still_jpeg_base64") else "")
            videos.append(
                "<tr>"
                f"<td>{still}</td>"
                f"<td>{escape(video['original_path'])}<br><small>sha256 {video['video_sha256']}</small><br>"
                f"seen {shown['time_range']} ({len(shown['seen_at'])} sampled frames), similarity {shown['similarity']:.3f}"
                + (" (restricted: kept, never searched)" if shown["restricted"] else "")
                + "</td>"
                f"<td>{escape(video['source'])}<br>controller: {escape(video['controller'])}</td>"
                f"<td>{escape(video['legal_basis'])}<br>{escape(video['purpose'])}</td>"
                f"<td>{video['ingested_at']}</td><td>{video['expires_at']}</td>"
                "</tr>"
            )
    video_section = ""
    if videos:
        video_section = f"""<h2>Appearances in videos ({len(videos)})</h2>
<p class="note">This organisation keeps a still and face crops of each appearance, never a copy of the video.</p>
<table><tr><th>Still</th><th>Video and time</th><th>Source</th><th>Legal basis and purpose</th><th>Held since</th>
<th>Deleted by</th></tr>
{''.join(videos)}
</table>
"""
    groups = "".join(
        f"<tr><td>{g['person_id']}</td><td>{escape(g['source'])}</td>"
        f"<td>{escape(g['name']) if g['name'] else '<i>no name given</i>'}</td>"
        f"<td>{len(g['face_ids'])} of {g['faces_in_group']}</td></tr>"
        for g in report.get("people", [])
    )
    people_section = ""
    if groups:
        people_section = f"""<h2>Groups of faces taken to be one person ({len(report['people'])})</h2>
<p class="note">This organisation groups the faces of some collections into people, and its users may name
a group. Your faces are in these groups; a group may also hold faces of someone else.</p>
<table><tr><th>Group</th><th>Source</th><th>Name given</th><th>Your faces in it</th></tr>
{groups}
</table>
"""
    searches = [
        "<tr>"
        f"<td>{s['at']}</td><td>{escape(str(s['actor']))}</td><td>{escape(str(s['purpose']))}</td>"
        f"<td>{escape(str(s['case']))}</td><td>{len(s['returned'])}</td>"
        "</tr>"
        for s in report["searches"]
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Access report {report['request_id']}</title>
<style>{_STYLE}</style></head><body>
<h1>What this organisation holds about the person in the photo</h1>
<p class="note">Access request {report['request_id']}, received {report['received_at']}, report made
{report['generated_at']}. Photos were matched to the face in the photo you sent at similarity
{report['threshold']:.3f} or more, deliberately more inclusively than searches are; some may show
someone else. The photo you sent was used in memory only and was not kept.</p>
<h2>Photos ({len(report['images'])})</h2>
<table><tr><th>Face</th><th>Photo</th><th>Source</th><th>Legal basis and purpose</th><th>Held since</th>
<th>Deleted by</th></tr>
{''.join(rows) or '<tr><td colspan="6">No photo matches.</td></tr>'}
</table>
{video_section}{people_section}<h2>Searches that returned these photos{' or videos' if videos else ''} ({len(report['searches'])})</h2>
<table><tr><th>When</th><th>Who</th><th>Purpose</th><th>Case</th><th>Photos returned</th></tr>
{''.join(searches) or '<tr><td colspan="5">None.</td></tr>'}
</table>
<p class="note">You may ask for these photos to be erased, object to their processing, or ask for
their use to be restricted, by sending a photo of your face again. No name or identity document is
needed.</p>
</body></html>
"""


# -- evaluation report ----------------------------------------------------------------------


def evaluation_figures(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """The ROC and DET curves of an evaluation as ``[("roc", Figure), ("det", Figure)]``.

    Only what the data resolves is drawn: no FMR below 1 / impostor pairs (and, on the
    DET's log axis, no FNMR below 1 / genuine pairs), since a rate under one comparison
    in n is not measured, only bounded. The search threshold is marked, and the TMR at
    FMR 1e-3 given (or said to be unresolved).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    genuine, impostor = report["_genuine"], report["_impostor"]
    _, fmr, fnmr = roc_points(genuine, impostor)
    fmr_floor = 1.0 / len(impostor) if len(impostor) else 1.0
    fnmr_floor = 1.0 / len(genuine) if len(genuine) else 1.0
    resolved = fmr >= fmr_floor
    tmr_note = (f"TMR at FMR 1e-3: {report['tmr_at_fmr_1e-3']:.4f}" if report.get("tmr_at_fmr_1e-3") is not None
                else f"TMR at FMR 1e-3: not resolved ({len(impostor)} impostor pairs)")
    at_fmr, at_fnmr = report["fmr"], report["fnmr"]
    below = at_fmr < fmr_floor  # the threshold accepts no impostor: its FMR is only bounded
    fnmr_below = at_fnmr < fnmr_floor
    label = (f"threshold {report['threshold']:.3f}: FMR {'< ' + format(fmr_floor, '.2g') if below else format(at_fmr, '.3g')}"
             f", FNMR {'< ' + format(fnmr_floor, '.2g') if fnmr_below else format(at_fnmr, '.3g')}")
    # A rate below the floor is drawn at the floor, as an open marker: a bound, not a measurement.
    point = {"color": "C3", "marker": "o", "linestyle": "none", "label": label,
             "fillstyle": "none" if below or fnmr_below else "full"}
    made = []
    for kind in ("roc", "det"):
        figure = Figure(figsize=(5.5, 4.2), dpi=100)
        axis = figure.add_subplot()
        if kind == "roc":
            axis.plot(fmr[resolved], 1 - fnmr[resolved], label="ROC")
            axis.plot([max(at_fmr, fmr_floor)], [1 - at_fnmr], **point)
            axis.set_ylabel("true match rate")
        else:
            shown = resolved & (fnmr >= fnmr_floor)
            axis.plot(fmr[shown], fnmr[shown], label="DET")
            if not shown.any():
                axis.text(0.5, 0.5, "no threshold has both rates measurable\n(more pairs are needed)",
                          transform=axis.transAxes, ha="center", fontsize=8, color="0.4")
            axis.plot([max(at_fmr, fmr_floor)], [max(at_fnmr, fnmr_floor)], **point)
            axis.set_yscale("log")
            axis.set_ylim(bottom=fnmr_floor * 0.8)  # a little room: a marker at the floor stays whole
            axis.set_ylabel("false non-match rate")
        if fmr_floor <= 1e-3:
            axis.axvline(1e-3, color="0.5", linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.set_xlim(fmr_floor * 0.8, 1.0)
        axis.set_xlabel(f"false match rate (from 1/{len(impostor)} impostor pairs)")
        axis.set_title(f"{kind.upper()}: {report['model_id']}\n{tmr_note}", fontsize=9)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7, loc="lower right" if kind == "roc" else "upper right")
        figure.tight_layout()
        made.append((kind, figure))
    return made


def evaluation_plots(report: dict[str, Any], stem: Path) -> list[Path]:
    """The ROC and DET curves as PNG files ``STEM-roc.png`` and ``STEM-det.png``."""
    written = []
    for kind, figure in evaluation_figures(report):
        path = stem.with_name(f"{stem.name}-{kind}.png")
        figure.savefig(path)
        written.append(path)
    return written


def evaluation_html(figures: dict[str, Any], images: list[Path]) -> str:
    """An evaluation's figures and its curves (embedded) as one HTML page."""
    import base64

    headline = ""
    if "pairs_failed" in figures:
        headline = (
            f"<p>Accuracy (10-fold, standard protocol: the {figures['pairs_failed']} of {figures['pairs']} pairs with "
            f"an image that yields no face count as failed): <b>{figures['accuracy_10fold']:.4f}</b>. On the "
            f"{figures['pairs_scored']} scored pairs only: {figures['accuracy_10fold_scored']:.4f}.</p>"
        )
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in figures.items())
    plots = "".join(f'<img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
                    for p in images)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Vultus evaluation</title></head>"
            f"<body style='font-family:sans-serif'><h1>Evaluation of {escape(figures['model_id'])}</h1>{headline}"
            f"<table border=1 cellpadding=4>{rows}</table>{plots}</body></html>")
