"""The commands on sources: register one with its provenance, search categories and whether its
faces may be grouped into people, change what it allows, list them. Parse, call the engine, render."""

from __future__ import annotations

import json
from typing import Any

import click

from .base import BASIS_CHOICES, CATEGORY_CHOICES, _engine, _friendly, _json_option, _table, cli

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
@click.option("--purposes", "purposes", multiple=True, metavar="CATEGORY[,CATEGORY...]",
              help=f"Search categories it may be searched for: {', '.join(CATEGORY_CHOICES)} (a comma list, or the "
              "option repeated) [default: the one closest to --purpose, printed].")
@click.option("--clustering", is_flag=True,
              help="Its registration allows grouping its faces into people (off by default; audited).")
@click.option("--clustering-note", help="Where the decision that allows grouping is recorded (a DPIA, the consent's wording).")
@_json_option
@click.pass_context
@_friendly
def source_add(ctx: click.Context, name: str, basis: str, purpose: str, retention: str,
               controller: str | None, consent_ref: str | None, purposes: tuple[str, ...], clustering: bool,
               clustering_note: str | None, as_json: bool) -> None:
    """Register source NAME with its legal basis, purpose, retention and search categories (and whether
    its faces may be grouped into people)."""
    if clustering_note is not None and not clustering:
        raise click.UsageError("--clustering-note goes with --clustering (it records why grouping is allowed).")
    engine = _engine(ctx)
    record = engine.add_source(
        name, basis=basis, purpose=purpose, retention=retention, controller=controller, consent_ref=consent_ref,
        purposes=purposes or None, clustering=clustering, clustering_note=clustering_note,
    )
    chosen = (f"Searchable for: {', '.join(record.purposes)}, the category closest to its purpose text (not "
              f"given with --purposes); change it with `vultus source set {record.name} --purposes ...`.")
    if as_json:
        if not purposes:
            click.echo(chosen, err=True)
        click.echo(json.dumps(_source_dict(record, _clustering_of(engine)), indent=2))
        return
    click.echo(
        f"Registered source {record.name!r}: basis {record.legal_basis}, purpose {record.purpose!r}, "
        f"retention {record.retention_days} days, controller {record.controller!r}"
        + (", its faces grouped into people." if clustering else ".")
    )
    click.echo(chosen if not purposes else f"Searchable for: {', '.join(record.purposes)}.")


@source.command("set")
@click.argument("name")
@click.option("--purposes", "purposes", multiple=True, metavar="CATEGORY[,CATEGORY...]",
              help=f"The search categories it may be searched for from now on, replacing the old ones: "
              f"{', '.join(CATEGORY_CHOICES)} (a comma list, or the option repeated).")
@click.option("--clustering/--no-clustering", default=None,
              help="Allow grouping its faces into people, or stop it (which deletes its people groups).")
@click.option("--clustering-note", help="Where the decision that allows grouping is recorded (with --clustering).")
@_json_option
@click.pass_context
@_friendly
def source_set(ctx: click.Context, name: str, purposes: tuple[str, ...], clustering: bool | None,
               clustering_note: str | None, as_json: bool) -> None:
    """Change what source NAME allows: the search categories it may be searched for, and whether its
    faces are grouped into people.

    Each change is audited (categories with the values before and after). Searches for a
    category it no longer allows leave it out, and say so; turning clustering off deletes its
    people groups (names and centroids), never its faces.
    """
    if not purposes and clustering is None:
        raise click.UsageError("Say what to change: --purposes CATEGORY[,CATEGORY...], --clustering or --no-clustering.")
    if clustering_note is not None and not clustering:
        raise click.UsageError("--clustering-note goes with --clustering (it records why grouping is allowed).")
    engine = _engine(ctx)
    before = engine.store.get_source(name).purposes
    record = engine.set_source(name, purposes=purposes) if purposes else None
    done = engine.people.set_clustering(name, enabled=clustering, note=clustering_note) if clustering is not None else None
    if as_json:
        record = engine.store.get_source(name)
        click.echo(json.dumps({**_source_dict(record, _clustering_of(engine)),
                               **({"clustering_change": done} if done is not None else {})}, indent=2))
        return
    if record is not None:
        click.echo(f"Source {record.name!r} is searchable for: {', '.join(record.purposes)} "
                   f"(was: {', '.join(before) or 'nothing'}).")
    if done is None:
        return
    if not done["changed"]:
        click.echo(f"Source {done['source']!r} already {'allows' if clustering else 'does not allow'} clustering; "
                   "nothing changed.")
    elif clustering:
        click.echo(f"Source {done['source']!r} now groups its faces into people: new faces are placed as they are "
                   f"ingested; run `vultus people cluster --source {done['source']}` to group those it holds.")
    else:
        deleted = done["deleted"]
        click.echo(f"Source {done['source']!r} no longer groups its faces: {deleted['people']} people group(s) "
                   f"deleted ({deleted['named']} named); its faces are kept.")


@source.command("list")
@_json_option
@click.pass_context
@_friendly
def source_list(ctx: click.Context, as_json: bool) -> None:
    """List registered sources with their provenance and counts."""
    engine = _engine(ctx)
    records = engine.sources()
    clustering = _clustering_of(engine)
    if as_json:
        click.echo(json.dumps([_source_dict(r, clustering) for r in records], indent=2))
        return
    if not records:
        click.echo("No sources yet. Register one with `vultus source add NAME --basis ... --purpose ... --retention ...`.")
        return
    rows = [
        [r.name, r.legal_basis, f"{r.retention_days}d", str(r.image_count), str(r.face_count),
         ",".join(r.purposes) or "(none)", "on" if r.name in clustering else "off", r.controller, r.purpose]
        for r in records
    ]
    click.echo(_table(["name", "basis", "retention", "images", "faces", "searchable for", "clustering", "controller",
                       "purpose"], rows))


def _clustering_of(engine: Any) -> set[str]:
    """The names of the sources whose faces are grouped into people."""
    return {c.source for c in engine.people.clustering_sources()}


def _source_dict(record: Any, clustering: "set[str] | frozenset[str]" = frozenset()) -> dict[str, Any]:
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
        "purposes": list(record.purposes),
        "clustering": record.name in clustering,
    }
