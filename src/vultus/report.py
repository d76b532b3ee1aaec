"""Reports as self-contained HTML pages: an access report (GDPR Art. 15) and an evaluation report."""

from __future__ import annotations

import os
import tempfile
from html import escape
from pathlib import Path
from typing import Any

from .errors import OutputPathError

__all__ = ["access_report_html", "check_report_path"]


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
<h2>Searches that returned these photos ({len(report['searches'])})</h2>
<table><tr><th>When</th><th>Who</th><th>Purpose</th><th>Case</th><th>Photos returned</th></tr>
{''.join(searches) or '<tr><td colspan="5">None.</td></tr>'}
</table>
<p class="note">You may ask for these photos to be erased, object to their processing, or ask for
their use to be restricted, by sending a photo of your face again. No name or identity document is
needed.</p>
</body></html>
"""
