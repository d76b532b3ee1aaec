"""`vultus` commands for the people in the photos and for accountability.

access, erase, object, restrict, suppressions, requests, receipt, purge, keys and audit:
thin like the rest of the CLI (parse, call the engine, render). Imported by
:mod:`vultus.cli`, which owns the group and the shared helpers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ..report import clock
from .base import _engine, _friendly, _json_option, _table, cli

# -- rights of the people in the photos ---------------------------------------------------

_face_option = click.option(
    "--face", "face_number", type=click.IntRange(min=1), default=None,
    help="Which face of the photo is the requester's, 1 = largest [default: the largest]; one PHOTO only.",
)


def _rights_photo(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path),
                          metavar="PHOTO [PHOTO...]")(func)


def _show_matches(match: Any) -> None:
    images = {hit.image_id: hit for hit, _ in match.faces}
    held = f"{len(images)} photo(s)"
    if match.appearances:
        videos = {image_id for image_id, _ in match.appearances}
        held = f"{len(images) - len(videos)} photo(s) and {len(match.appearances)} appearance(s) in {len(videos)} video(s)"
    probes = f" (matching any of the {len(match.templates)} probe faces)" if len(match.templates) > 1 else ""
    click.echo(f"{held} with {len(match.faces)} matching face(s) at similarity >= {match.threshold:.3f}{probes}:")
    for hit, similarity in match.faces:
        flag = "  [restricted]" if hit.restricted else ""
        where = f"  at {clock(hit.media_time)} (seen {clock(hit.time_start)}-{clock(hit.time_end)})" if hit.is_video else ""
        click.echo(f"  {similarity:.3f}  {hit.source}  {hit.original_path}{where}  box {list(hit.box)}{flag}")


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.ClickException(f"{question} Nothing was changed: run again with --yes to confirm.")
    if not click.confirm(question, default=False):
        raise click.ClickException("Nothing was changed.")


def _emit_receipt(receipt: dict, receipt_path: Path | None, as_json: bool, summary: str) -> None:
    text = json.dumps(receipt, indent=2)
    if receipt_path is not None:
        receipt_path.write_text(text + "\n")
    if as_json:
        click.echo(text)
        return
    click.echo(summary)
    if receipt_path is not None:
        click.echo(f"Signed receipt written to {receipt_path}; check it with `vultus receipt verify {receipt_path}`.")
    else:
        click.echo("Signed receipt:")
        click.echo(text)


_receipt_option = click.option(
    "--receipt", "receipt_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Also write the signed receipt to this file.",
)


@cli.command()
@_rights_photo
@_face_option
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report to FILE.html (with face crops) or FILE.json.")
@click.pass_context
@_friendly
def access(ctx: click.Context, photos: tuple[Path, ...], face_number: int | None, out_path: Path | None) -> None:
    """Show everything held about the person in PHOTO (GDPR Art. 15).

    Lists every photo and face that matches at the rights threshold, with source, legal
    basis, purpose, ingest and expiry dates, and every logged search that returned them,
    over the whole history. PHOTO is used in memory only and never stored. Several photos
    of the requester (at most 5) find more: a stored face matches if it matches any of
    their faces, and every one of them must match the first photo's face.
    """
    from ..report import access_report_html

    suffix = out_path.suffix.lower() if out_path else ""
    if out_path is not None and suffix not in (".html", ".htm", ".json"):
        raise click.ClickException(f"--out must end in .html or .json, not {out_path.name!r}.")
    report = _engine(ctx).access(list(photos), face=face_number, include_crops=suffix in (".html", ".htm"))
    if out_path is not None:
        out_path.write_text(access_report_html(report) if suffix != ".json" else json.dumps(report, indent=2))
    appearances = sum(len(v["appearances"]) for v in report["videos"])
    click.echo(
        f"Access request {report['request_id']}: {len(report['images'])} photo(s), "
        f"{sum(len(i['faces']) for i in report['images'])} face(s), "
        + (f"{appearances} appearance(s) in {len(report['videos'])} video(s), " if report["videos"] else "")
        + f"{len(report['searches'])} logged search(es) that returned them"
        + (f", matching any of {report['probe_faces']} probe faces." if report["probe_faces"] > 1 else ".")
    )
    for image in report["images"]:
        click.echo(
            f"  {image['original_path']}  source {image['source']} ({image['legal_basis']}), "
            f"held since {image['ingested_at'][:10]}, deleted by {image['expires_at'][:10]}"
        )
    for video in report["videos"]:
        times = ", ".join(a["time_range"] for a in video["appearances"])
        click.echo(
            f"  {video['original_path']} (video) seen {times}  source {video['source']} ({video['legal_basis']}), "
            f"held since {video['ingested_at'][:10]}, deleted by {video['expires_at'][:10]}"
        )
    for search in report["searches"]:
        click.echo(f"  search {search['audit_id']} at {search['at']} by {search['actor']}: {search['purpose']} ({search['case']})")
    if out_path is not None:
        click.echo(f"Report written to {out_path}.")


def _erase_command(kind: str) -> Callable[..., Any]:
    def command(ctx: click.Context, photos: tuple[Path, ...], face_number: int | None, yes: bool, as_json: bool,
                receipt_path: Path | None) -> None:
        engine = _engine(ctx)
        match = engine.match_person(list(photos), face=face_number)
        if not match.faces:
            # Still registered, logged and receipted: the request was received and answered.
            click.echo("No stored photo matches this face; nothing to erase.", err=as_json)
        elif not as_json:
            _show_matches(match)
        if match.faces:
            count = len(match.image_ids)
            what = f"{count} photo(s)" + (f" and {len(match.appearances)} video appearance(s) (their stills, crops "
                                          "and templates; the rest of each video's record stays)"
                                          if match.appearances else "")
            _confirm(yes, f"Erase these {what} for good (copies, crops, templates, index entries)?")
        receipt = engine.erase(match) if kind == "erasure" else engine.object(match)
        summary = f"Erased {len(receipt['removed_images'])} photo(s) and {receipt['faces_removed']} face(s)."
        if receipt.get("removed_videos"):
            spans = sum(len(v["time_ranges"]) for v in receipt["removed_videos"])
            summary += f" Of these, {spans} appearance(s) in {len(receipt['removed_videos'])} video(s)."
        if kind == "objection":
            entries = receipt["suppression_ids"]
            summary += (f" Suppression entry {entries[0]}: future ingests skip this face." if len(entries) == 1 else
                        f" Suppression entries {', '.join(map(str, entries))} (one per probe face): future ingests "
                        "skip these faces.")
        _emit_receipt(receipt, receipt_path, as_json, summary)

    return command


def _erase_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed([
        _rights_photo,
        _face_option,
        click.option("--yes", is_flag=True, help="Do it without asking for confirmation."),
        _json_option,
        _receipt_option,
        click.pass_context,
        _friendly,
    ]):
        func = decorator(func)
    return func


@cli.command()
@_erase_options
def erase(ctx: click.Context, **kwargs: Any) -> None:
    """Erase every photo of the person in PHOTO, for good (GDPR Art. 17).

    Lists what matches and, once confirmed, removes every matched photo's copy, face crops,
    templates and index entries; the database zeroes freed pages and the index file is
    rewritten. Prints a receipt signed with the deployment's key. PHOTO is not stored.
    Several photos of the person (at most 5, all of the same face) find more of their photos.
    """
    _erase_command("erasure")(ctx, **kwargs)


@cli.command("object")
@_erase_options
def object_(ctx: click.Context, **kwargs: Any) -> None:
    """Object to processing: erase the person in PHOTO and block them from future ingest (Art. 21).

    Erases as `vultus erase` does and adds an encrypted suppression entry, so any later
    ingest skips this face (and counts the skip); with several photos of the person, one
    entry per photo's face. Listed by id only with `vultus suppressions list`; withdrawn
    with `vultus suppressions withdraw ID`.
    """
    _erase_command("objection")(ctx, **kwargs)


@cli.command()
@_rights_photo
@_face_option
@click.option("--lift", is_flag=True, help="Release a restriction instead of imposing one.")
@click.option("--yes", is_flag=True, help="Do it without asking for confirmation.")
@click.pass_context
@_friendly
def restrict(ctx: click.Context, photos: tuple[Path, ...], face_number: int | None, lift: bool, yes: bool) -> None:
    """Restrict processing of the person in PHOTO (GDPR Art. 18): kept, never searched.

    Restricted faces stay stored and appear in access reports, but search never returns
    them. --lift releases the restriction. Several photos of the person (at most 5) find
    more of their faces.
    """
    engine = _engine(ctx)
    match = engine.match_person(list(photos), face=face_number)
    if match.faces:
        _show_matches(match)
        _confirm(yes, f"{'Release' if lift else 'Restrict'} these {len(match.faces)} face(s)?")
    else:
        click.echo("No stored photo matches this face; nothing to change.")
    request_id, changed = engine.restrict(match, lift=lift)
    click.echo(f"Request {request_id}: {changed} face(s) {'released' if lift else 'restricted'}.")


@cli.group()
def suppressions() -> None:
    """List or withdraw suppression entries made by objections."""


@suppressions.command("list")
@_json_option
@click.pass_context
@_friendly
def suppressions_list(ctx: click.Context, as_json: bool) -> None:
    """List suppression entries by id and dates (their templates are never shown)."""
    entries = _engine(ctx).suppressions()
    if as_json:
        click.echo(json.dumps([e.__dict__ for e in entries], indent=2))
        return
    if not entries:
        click.echo("No suppression entries.")
        return
    rows = [[str(e.id), e.created_at, e.withdrawn_at or "active"] for e in entries]
    click.echo(_table(["id", "created", "withdrawn"], rows))


@suppressions.command("withdraw")
@click.argument("suppression_id", type=int)
@click.pass_context
@_friendly
def suppressions_withdraw(ctx: click.Context, suppression_id: int) -> None:
    """Withdraw suppression entry SUPPRESSION_ID: its template is erased and ingest stops skipping that face."""
    if _engine(ctx).withdraw_suppression(suppression_id):
        click.echo(f"Suppression entry {suppression_id} withdrawn; its template was erased.")
    else:
        raise click.ClickException(
            f"There is no active suppression entry {suppression_id}; see `vultus suppressions list`."
        )


@cli.command()
@click.option("--overdue", is_flag=True, help="Only requests still open after their due date.")
@_json_option
@click.pass_context
@_friendly
def requests(ctx: click.Context, overdue: bool, as_json: bool) -> None:
    """List the requests register: access, erasure, objection and restriction requests, due one month after receipt."""
    rows = _engine(ctx).requests(overdue=overdue)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    if not rows:
        click.echo("No overdue requests." if overdue else "No requests yet.")
        return
    table = [[str(r.id), r.kind, r.received_at, r.due_at, r.completed_at or "OPEN", r.outcome or ""] for r in rows]
    click.echo(_table(["id", "kind", "received", "due", "completed", "outcome"], table))


@cli.group()
def receipt() -> None:
    """List, show and check the signed receipts of erasures, objections and purges."""


@receipt.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
@_friendly
def receipt_verify(ctx: click.Context, file: Path) -> None:
    """Check that the receipt in FILE is unaltered and signed; exits 1 if not."""
    try:
        data = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{file} is not a JSON receipt ({exc}).") from exc
    if not isinstance(data, dict):
        raise click.ClickException(f"{file} is not a Vultus receipt.")
    verdict = _engine(ctx).check_receipt(data)
    videos = data.get("removed_videos") or []
    appearances = f", {sum(len(v.get('time_ranges', [])) for v in videos)} video appearance(s)" if videos else ""
    click.echo(f"{file}: {verdict}. {len(data.get('removed_images', []))} image(s){appearances} removed "
               f"({data.get('kind')}), completed {data.get('completed_at')}.")


@receipt.command("list")
@_json_option
@click.pass_context
@_friendly
def receipt_list(ctx: click.Context, as_json: bool) -> None:
    """List every erasure, objection and purge with its receipt id; `vultus receipt show ID` prints one.

    An erasure cut short by a crash is finished, and its receipt made, by the next Vultus
    command of any kind; until then it is listed as pending.
    """
    rows = _engine(ctx).receipts()
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    if not rows:
        click.echo("No erasures, objections or purges yet.")
        return
    table = [[str(r.id), r.kind, "" if r.request_id is None else str(r.request_id), r.started_at,
              r.completed_at or "PENDING", str(r.images_removed), str(r.appearances_removed), str(r.faces_removed)]
             for r in rows]
    click.echo(_table(["id", "kind", "request", "started", "completed", "photos", "video appearances", "faces"], table))


@receipt.command("show")
@click.argument("receipt_id", type=click.IntRange(min=1, max=2**63 - 1))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the signed receipt to FILE instead of printing it.")
@click.pass_context
@_friendly
def receipt_show(ctx: click.Context, receipt_id: int, out_path: Path | None) -> None:
    """Print the signed receipt RECEIPT_ID (an id from `vultus receipt list`), as JSON."""
    text = json.dumps(_engine(ctx).receipt(receipt_id), indent=2)
    if out_path is None:
        click.echo(text)
        return
    out_path.write_text(text + "\n")
    click.echo(f"Signed receipt written to {out_path}; check it with `vultus receipt verify {out_path}`.")


# -- retention, keys and audit ------------------------------------------------------------


@cli.command()
@click.option("--now", "now_text", default=None, metavar="TIMESTAMP",
              help="Purge as if it were this time (ISO 8601, e.g. 2027-01-31T00:00:00Z) [default: now].")
@_json_option
@_receipt_option
@click.pass_context
@_friendly
def purge(ctx: click.Context, now_text: str | None, as_json: bool, receipt_path: Path | None) -> None:
    """Remove every image past its expiry date, through the erasure path, with a signed receipt."""
    now = _parse_time(now_text, "--now") if now_text else None
    result = _engine(ctx).purge(now=now)
    videos = f" and {len(result['removed_videos'])} expired video(s)" if result.get("removed_videos") else ""
    _emit_receipt(result, receipt_path, as_json,
                  f"Purged {len(result['removed_images'])} expired photo(s){videos} (expired by {result['expired_by']}).")


@cli.group()
def keys() -> None:
    """Manage the encryption keys of the data directory."""


@keys.command("rotate")
@click.pass_context
@_friendly
def keys_rotate(ctx: click.Context) -> None:
    """Re-encrypt everything sealed (photo copies, crops, templates, suppression entries, open public
    requests, people's names and centroids, the index) under a new key, then drop the old one.

    Refused while another process (such as `vultus serve`) has the data directory open; rotate
    through the server then (POST /v1/keys/rotate). A rotation cut short is finished by running
    this again.
    """
    done = _engine(ctx).rotate_keys()
    click.echo(
        f"{'Finished the interrupted rotation' if done['resumed'] else 'Rotated'}: now encrypting with key "
        f"{done['new_key']}; re-encrypted {done['blobs']} file(s), {done['templates']} template(s), "
        f"{done['suppression_entries']} suppression entr(y/ies), {done['public_requests']} open public "
        f"request(s) and {done.get('people', 0)} people group(s); dropped key(s) {', '.join(done['dropped_keys']) or 'none'}. Back up the key file now."
    )


@cli.group()
def audit() -> None:
    """Read, check and export the hash-chained audit log."""


def _audit_filters(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--until", "until_text", default=None, metavar="TIMESTAMP",
                        help="Only entries before this time (ISO 8601).")(func)
    return click.option("--since", "since_text", default=None, metavar="TIMESTAMP",
                        help="Only entries at or after this time (ISO 8601).")(func)


@audit.command("list")
@_audit_filters
@click.option("--action", default=None, help="Only entries of this action (e.g. search, erasure).")
@_json_option
@click.pass_context
@_friendly
def audit_list(ctx: click.Context, since_text: str | None, until_text: str | None, action: str | None, as_json: bool) -> None:
    """List audit entries, oldest first."""
    entries = _engine(ctx).audit_entries(
        since=_iso_or_none(since_text, "--since"), until=_iso_or_none(until_text, "--until"), action=action
    )
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    if not entries:
        click.echo("No audit entries.")
        return
    rows = [[str(e.id), e.at, e.actor, e.action, _summarise(e.details)] for e in entries]
    click.echo(_table(["id", "at", "actor", "action", "details"], rows))


@audit.command("verify")
@click.pass_context
@_friendly
def audit_verify(ctx: click.Context) -> None:
    """Check the whole audit chain; exits 1 and names the first edited, removed or reordered entry."""
    result = _engine(ctx).verify_audit()
    if not result.ok:
        raise click.ClickException(
            f"The audit log fails verification at entry {result.bad_id}: {result.problem}. "
            f"{result.checked} entries before it are intact."
        )
    click.echo(f"The audit log verifies: {result.checked} entries, chain and signed head intact.")


@audit.command("export")
@_audit_filters
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to FILE instead of standard output.")
@click.pass_context
@_friendly
def audit_export(ctx: click.Context, since_text: str | None, until_text: str | None, out_path: Path | None) -> None:
    """Export audit entries as JSON lines, with their hashes, for an auditor."""
    entries = _engine(ctx).audit_entries(since=_iso_or_none(since_text, "--since"), until=_iso_or_none(until_text, "--until"))
    lines = "".join(json.dumps(e.as_dict(), sort_keys=True) + "\n" for e in entries)
    if out_path is None:
        click.echo(lines, nl=False)
    else:
        out_path.write_text(lines)
        click.echo(f"Exported {len(entries)} entries to {out_path}.", err=True)


def _summarise(details: dict) -> str:
    keep = {k: v for k, v in details.items()
            if k not in ("candidates", "removed_images", "removed_videos", "paths", "refused", "ignored")}
    if "candidates" in details:
        keep["candidates"] = len(details["candidates"])
    for listed in ("removed_images", "removed_videos"):
        if listed in details:
            keep[listed] = len(details[listed])
    text = json.dumps(keep, sort_keys=True)
    return text if len(text) <= 110 else text[:107] + "..."


def _parse_time(text: str, option: str):  # noqa: ANN202 - datetime
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.ClickException(
            f"{option} {text!r} is not an ISO 8601 time; write e.g. 2027-01-31 or 2027-01-31T12:00:00Z."
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _iso_or_none(text: str | None, option: str) -> str | None:
    if not text:
        return None
    from ..store import iso

    return iso(_parse_time(text, option))
