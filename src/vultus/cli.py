"""The `vultus` command: parse, call the engine, render. No logic of its own.

Library errors become ``click.ClickException`` here, so a user sees one clear message
and exit status 1, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from .config import DEFAULT_DATA_DIR, Settings
from .errors import VultusError
from .policy import LegalBasis

BASIS_CHOICES = [b.value for b in LegalBasis]


def _engine(ctx: click.Context):
    """The engine for this invocation, opened on first use and closed at exit."""
    obj = ctx.find_root().obj
    if obj.get("engine") is None:
        from .engine import Engine

        obj["engine"] = ctx.with_resource(Engine(obj["settings"]))
    return obj["engine"]


def _friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn Vultus errors into click errors: a message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except VultusError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def _json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VultusError as exc:  # raised while opening the engine
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="VULTUS_DATA",
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Data directory holding the database, photo copies and index (env VULTUS_DATA).",
)
@click.option(
    "--detector",
    envvar="VULTUS_DETECTOR",
    default="hog",
    show_default=True,
    help="Face detector: hog (fast, frontal faces) or cnn (dlib MMOD: more turned faces, ~4 s a photo on CPU). Env VULTUS_DETECTOR.",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="VULTUS_KEY_FILE",
    default=None,
    help="Key file with the encryption and signing keys (env VULTUS_KEY_FILE; default: DATA/keys.json).",
)
@click.option(
    "--actor",
    envvar="VULTUS_ACTOR",
    default=None,
    help="Who is acting, recorded in the audit log (env VULTUS_ACTOR; default: your login name).",
)
@click.version_option(package_name="vultus")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path, detector: str, key_file: Path | None, actor: str | None) -> None:
    """Vultus: find every photo of a person in a collection you lawfully hold, from one photo.

    Local files only, no crawler; every face has a registered source with a legal basis.
    Start with `vultus source add`, then `vultus ingest`, then `vultus search`.
    """
    try:
        settings = Settings.from_env(data_dir=data_dir, detector=detector, key_file=key_file, actor=actor)
    except VultusError as exc:
        raise click.ClickException(str(exc)) from exc
    ctx.obj = {"settings": settings, "engine": None}


# -- sources ------------------------------------------------------------------------------


@cli.group()
def source() -> None:
    """Register and list sources: where photos come from and why they may be processed."""


@source.command("add")
@click.argument("name")
@click.option(
    "--basis",
    required=True,
    type=click.Choice(BASIS_CHOICES, case_sensitive=False),
    help="GDPR Art. 6(1) legal basis for processing this source's photos.",
)
@click.option("--purpose", required=True, help="Why these photos are processed (the declared purpose).")
@click.option(
    "--retention",
    required=True,
    help="How long photos are kept after ingest: a number and d, w, m or y (e.g. 365d; at most 3y).",
)
@click.option("--controller", help="The organisation responsible for the data (the controller).")
@click.option("--consent-ref", help="Where the consents are recorded, for basis 'consent'.")
@_json_option
@click.pass_context
@_friendly
def source_add(ctx: click.Context, name: str, basis: str, purpose: str, retention: str,
               controller: str | None, consent_ref: str | None, as_json: bool) -> None:
    """Register source NAME with its legal basis, purpose and retention."""
    record = _engine(ctx).add_source(
        name, basis=basis, purpose=purpose, retention=retention, controller=controller, consent_ref=consent_ref
    )
    if as_json:
        click.echo(json.dumps(_source_dict(record), indent=2))
    else:
        click.echo(
            f"Registered source {record.name!r}: basis {record.legal_basis}, purpose {record.purpose!r}, "
            f"retention {record.retention_days} days, controller {record.controller!r}."
        )


@source.command("list")
@_json_option
@click.pass_context
@_friendly
def source_list(ctx: click.Context, as_json: bool) -> None:
    """List registered sources with their provenance and counts."""
    records = _engine(ctx).sources()
    if as_json:
        click.echo(json.dumps([_source_dict(r) for r in records], indent=2))
        return
    if not records:
        click.echo("No sources yet. Register one with `vultus source add NAME --basis ... --purpose ... --retention ...`.")
        return
    rows = [
        [r.name, r.legal_basis, f"{r.retention_days}d", str(r.image_count), str(r.face_count), r.controller, r.purpose]
        for r in records
    ]
    click.echo(_table(["name", "basis", "retention", "images", "faces", "controller", "purpose"], rows))


def _source_dict(record: Any) -> dict[str, Any]:
    return {
        "name": record.name,
        "controller": record.controller,
        "legal_basis": record.legal_basis,
        "purpose": record.purpose,
        "retention_days": record.retention_days,
        "consent_ref": record.consent_ref,
        "created_at": record.created_at,
        "images": record.image_count,
        "faces": record.face_count,
    }


# -- ingest -------------------------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--source", "source_name", required=True, help="Registered source the photos belong to.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Worker processes (default or 0: one per CPU core; 1 runs in this process).")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar (default: when on a terminal).")
@_json_option
@click.pass_context
@_friendly
def ingest(ctx: click.Context, paths: tuple[str, ...], source_name: str, workers: int | None,
           progress: bool | None, as_json: bool) -> None:
    """Index the photos in PATHS: files, folders (recursively), zip and tar archives.

    Photos already indexed (same sha256) are skipped, so running the same command again
    after an interruption finishes the job. Files that cannot be read are listed with the
    reason and the batch goes on. Local paths only: there is no crawler.
    """
    from tqdm import tqdm

    engine = _engine(ctx)
    bar = tqdm(total=0, unit="img", desc="Ingesting", file=sys.stderr, disable=(not progress) if progress is not None else None)

    def on_progress(done: int, total: int, faces: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)
        bar.set_postfix(faces=faces, refresh=False)

    try:
        summary = engine.ingest(paths, source=source_name, workers=workers or None, progress=on_progress)
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
        return
    click.echo(
        f"Indexed {summary.images} photo{'s' if summary.images != 1 else ''} with {summary.faces} "
        f"face{'s' if summary.faces != 1 else ''} into source {summary.source!r} in {summary.seconds:.1f} s "
        f"({summary.images_per_second:.2f} photos/s)."
    )
    click.echo(f"No face found: {summary.no_face}. Already indexed (skipped): {summary.duplicates}.")
    if summary.suppressed_faces:
        click.echo(
            f"Skipped {summary.suppressed_faces} face(s) of people who objected (not stored); "
            f"{summary.suppressed_photos} photo(s) showed only them and were not stored at all."
        )
    if summary.ignored:
        click.echo(f"Ignored {len(summary.ignored)} file(s) that are not photos, e.g. {summary.ignored[0]}.")
    if summary.refused:
        click.echo(f"Refused {len(summary.refused)} file(s):")
        for path, reason in summary.refused:
            click.echo(f"  {path}: {reason}" if not reason.startswith(path) else f"  {reason}")


# -- search -------------------------------------------------------------------------------


@cli.command()
@click.argument("photo", type=click.Path(path_type=Path))
@click.option("--purpose", default=None, help="Why you are searching; recorded in the audit log (required unless the deployment relaxes it).")
@click.option("--case", "case_ref", default=None, help="Case or file reference the search is for; recorded in the audit log.")
@click.option("--top", type=click.IntRange(min=1, max=1000), default=None, help="Most candidates to return [default: 10].")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Minimum similarity (0-1, higher is closer) [default: 0.70, dlib's distance 0.6].")
@click.option("--face", "face_number", type=click.IntRange(min=1), default=None,
              help="Which face of the probe to search with, 1 = largest [default: the largest].")
@_json_option
@click.pass_context
@_friendly
def search(ctx: click.Context, photo: Path, purpose: str | None, case_ref: str | None, top: int | None,
           threshold: float | None, face_number: int | None, as_json: bool) -> None:
    """Find candidate photos of the person in PHOTO, best first.

    Results are candidates for a person to review, never identifications. The probe photo
    is used in memory and not stored.
    """
    result = _engine(ctx).search(
        photo, purpose=purpose, case=case_ref, top=top, threshold=threshold, face=face_number
    )
    note = None
    if result.probe_faces > 1:
        note = (
            f"The probe has {result.probe_faces} faces; searched with face {result.face_used} "
            f"({'the largest' if result.face_used == 1 else 'as asked'}, box {result.face_box}). "
            "Use --face N to pick another (1 = largest)."
        )
    if as_json:
        if note:
            click.echo(note, err=True)
        click.echo(json.dumps([c.as_dict() for c in result.candidates], indent=2))
        return
    if note:
        click.echo(note)
    if not result.candidates:
        click.echo(
            f"No candidate at similarity >= {result.threshold:.2f} among {result.gallery_faces} indexed faces."
            + (" The gallery is empty: index photos first with `vultus ingest`." if not result.gallery_faces else "")
        )
        return
    click.echo(
        f"{len(result.candidates)} candidate(s) at similarity >= {result.threshold:.2f} among "
        f"{result.gallery_faces} indexed faces. These are leads for a person to check, not identifications."
    )
    rows = [
        [str(c.rank), f"{c.similarity:.3f}", c.source, c.legal_basis, c.ingested_at[:10],
         "[{},{},{},{}]".format(*c.box), c.path]
        for c in result.candidates
    ]
    click.echo(_table(["#", "similarity", "source", "basis", "ingested", "box", "path"], rows))


# -- maintenance --------------------------------------------------------------------------


@cli.command()
@_json_option
@click.pass_context
@_friendly
def stats(ctx: click.Context, as_json: bool) -> None:
    """Show sources, images, faces, index size and disk use."""
    s = _engine(ctx).stats()
    if as_json:
        click.echo(json.dumps(s.__dict__, indent=2))
        return
    rows = [
        ["data directory", s.data_dir],
        ["sources", str(s.sources)],
        ["images", f"{s.images} ({s.images_with_faces} with faces)"],
        ["faces", str(s.faces)],
        ["index", f"{s.index_vectors} vectors, {_size(s.index_bytes)}"],
        ["disk use", _size(s.disk_bytes)],
        ["models", f"detector {s.detector}, embedder {s.embedder}"],
        ["restricted faces", str(s.restricted_faces)],
        ["audit entries", str(s.audit_entries)],
        ["open requests", str(s.open_requests)],
        ["suppression entries", f"{s.active_suppressions} active"],
        ["search purpose", "required" if s.purpose_required else
         "OPTIONAL (VULTUS_PURPOSE_REQUIRED=0: for a personal deployment only)"],
        ["key file", s.key_file],
    ]
    click.echo(_table(["", ""], rows, header=False))


@cli.command()
@click.pass_context
@_friendly
def reindex(ctx: click.Context) -> None:
    """Rebuild the vector index from the store (after a corrupt or deleted index file)."""
    count = _engine(ctx).reindex()
    click.echo(f"Rebuilt the index from the store: {count} face templates.")


# -- rights of the people in the photos ---------------------------------------------------

_face_option = click.option(
    "--face", "face_number", type=click.IntRange(min=1), default=None,
    help="Which face of the photo is the requester's, 1 = largest [default: the largest].",
)


def _rights_photo(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument("photo", type=click.Path(path_type=Path))(func)


def _show_matches(match: Any) -> None:
    images = {hit.image_id: hit for hit, _ in match.faces}
    click.echo(
        f"{len(images)} photo(s) with {len(match.faces)} matching face(s) at similarity >= {match.threshold:.3f}:"
    )
    for hit, similarity in match.faces:
        flag = "  [restricted]" if hit.restricted else ""
        click.echo(f"  {similarity:.3f}  {hit.source}  {hit.original_path}  box {list(hit.box)}{flag}")


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
def access(ctx: click.Context, photo: Path, face_number: int | None, out_path: Path | None) -> None:
    """Show everything held about the person in PHOTO (GDPR Art. 15).

    Lists every photo and face that matches at the rights threshold, with source, legal
    basis, purpose, ingest and expiry dates, and every logged search that returned them,
    over the whole history. PHOTO is used in memory only and never stored.
    """
    from .report import access_report_html

    suffix = out_path.suffix.lower() if out_path else ""
    if out_path is not None and suffix not in (".html", ".htm", ".json"):
        raise click.ClickException(f"--out must end in .html or .json, not {out_path.name!r}.")
    report = _engine(ctx).access(photo, face=face_number, include_crops=suffix in (".html", ".htm"))
    if out_path is not None:
        out_path.write_text(access_report_html(report) if suffix != ".json" else json.dumps(report, indent=2))
    click.echo(
        f"Access request {report['request_id']}: {len(report['images'])} photo(s), "
        f"{sum(len(i['faces']) for i in report['images'])} face(s), "
        f"{len(report['searches'])} logged search(es) that returned them."
    )
    for image in report["images"]:
        click.echo(
            f"  {image['original_path']}  source {image['source']} ({image['legal_basis']}), "
            f"held since {image['ingested_at'][:10]}, deleted by {image['expires_at'][:10]}"
        )
    for search in report["searches"]:
        click.echo(f"  search {search['audit_id']} at {search['at']} by {search['actor']}: {search['purpose']} ({search['case']})")
    if out_path is not None:
        click.echo(f"Report written to {out_path}.")


def _erase_command(kind: str) -> Callable[..., Any]:
    def command(ctx: click.Context, photo: Path, face_number: int | None, yes: bool, as_json: bool,
                receipt_path: Path | None) -> None:
        engine = _engine(ctx)
        match = engine.match_person(photo, face=face_number)
        if not match.faces:
            # Still registered, logged and receipted: the request was received and answered.
            click.echo("No stored photo matches this face; nothing to erase.", err=as_json)
        elif not as_json:
            _show_matches(match)
        if match.faces:
            count = len(match.image_ids)
            _confirm(yes, f"Erase these {count} photo(s) for good (copies, crops, templates, index entries)?")
        receipt = engine.erase(match) if kind == "erasure" else engine.object(match)
        summary = f"Erased {len(receipt['removed_images'])} photo(s) and {receipt['faces_removed']} face(s)."
        if kind == "objection":
            summary += f" Suppression entry {receipt['suppression_id']}: future ingests skip this face."
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
    """
    _erase_command("erasure")(ctx, **kwargs)


@cli.command("object")
@_erase_options
def object_(ctx: click.Context, **kwargs: Any) -> None:
    """Object to processing: erase the person in PHOTO and block them from future ingest (Art. 21).

    Erases as `vultus erase` does and adds an encrypted suppression entry, so any later
    ingest skips this face (and counts the skip). Listed by id only with
    `vultus suppressions list`; withdrawn with `vultus suppressions withdraw ID`.
    """
    _erase_command("objection")(ctx, **kwargs)


@cli.command()
@_rights_photo
@_face_option
@click.option("--lift", is_flag=True, help="Release a restriction instead of imposing one.")
@click.option("--yes", is_flag=True, help="Do it without asking for confirmation.")
@click.pass_context
@_friendly
def restrict(ctx: click.Context, photo: Path, face_number: int | None, lift: bool, yes: bool) -> None:
    """Restrict processing of the person in PHOTO (GDPR Art. 18): kept, never searched.

    Restricted faces stay stored and appear in access reports, but search never returns
    them. --lift releases the restriction.
    """
    engine = _engine(ctx)
    match = engine.match_person(photo, face=face_number)
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
    """Check signed receipts of erasures, objections and purges."""


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
    click.echo(f"{file}: {verdict}. {len(data.get('removed_images', []))} image(s) removed ({data.get('kind')}), "
               f"completed {data.get('completed_at')}.")


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
    _emit_receipt(result, receipt_path, as_json,
                  f"Purged {len(result['removed_images'])} expired photo(s) (expired by {result['expired_by']}).")


@cli.group()
def keys() -> None:
    """Manage the encryption keys of the data directory."""


@keys.command("rotate")
@click.pass_context
@_friendly
def keys_rotate(ctx: click.Context) -> None:
    """Re-encrypt all photo copies, crops, templates, suppression entries and the index under a new key."""
    done = _engine(ctx).rotate_keys()
    click.echo(
        f"Now encrypting with key {done['new_key']}; re-encrypted {done['blobs']} file(s), "
        f"{done['templates']} template(s) and {done['suppression_entries']} suppression entr(y/ies); "
        f"dropped key(s) {', '.join(done['dropped_keys']) or 'none'}. Back up the key file now."
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
    keep = {k: v for k, v in details.items() if k not in ("candidates", "removed_images", "paths", "refused", "ignored")}
    if "candidates" in details:
        keep["candidates"] = len(details["candidates"])
    if "removed_images" in details:
        keep["removed_images"] = len(details["removed_images"])
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
    from .store import iso

    return iso(_parse_time(text, option))


# -- rendering ----------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]], *, header: bool = True) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    lines = []
    if header:
        lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in rows:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def main() -> None:
    """Entry point of the `vultus` console script."""
    cli(prog_name="vultus")


if __name__ == "__main__":
    main()
