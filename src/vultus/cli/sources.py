"""The commands on sources: register one with its provenance and search categories, change
what it allows, list them. Parse, call the engine, render."""

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
@_json_option
@click.pass_context
@_friendly
def source_add(ctx: click.Context, name: str, basis: str, purpose: str, retention: str,
               controller: str | None, consent_ref: str | None, purposes: tuple[str, ...], as_json: bool) -> None:
    """Register source NAME with its legal basis, purpose, retention and search categories."""
    record = _engine(ctx).add_source(
        name, basis=basis, purpose=purpose, retention=retention, controller=controller, consent_ref=consent_ref,
        purposes=purposes or None,
    )
    chosen = (f"Searchable for: {', '.join(record.purposes)}, the category closest to its purpose text (not "
              f"given with --purposes); change it with `vultus source set {record.name} --purposes ...`.")
    if as_json:
        if not purposes:
            click.echo(chosen, err=True)
        click.echo(json.dumps(_source_dict(record), indent=2))
        return
    click.echo(
        f"Registered source {record.name!r}: basis {record.legal_basis}, purpose {record.purpose!r}, "
        f"retention {record.retention_days} days, controller {record.controller!r}."
    )
    click.echo(chosen if not purposes else f"Searchable for: {', '.join(record.purposes)}.")


@source.command("set")
@click.argument("name")
@click.option("--purposes", "purposes", multiple=True, metavar="CATEGORY[,CATEGORY...]",
              help=f"The search categories it may be searched for from now on, replacing the old ones: "
              f"{', '.join(CATEGORY_CHOICES)} (a comma list, or the option repeated).")
@_json_option
@click.pass_context
@_friendly
def source_set(ctx: click.Context, name: str, purposes: tuple[str, ...], as_json: bool) -> None:
    """Change what source NAME allows: the search categories it may be searched for.

    The change is audited with the values before and after. Searches for a category it no
    longer allows leave it out, and say so.
    """
    engine = _engine(ctx)
    before = engine.store.get_source(name).purposes
    record = engine.set_source(name, purposes=purposes or None)
    if as_json:
        click.echo(json.dumps(_source_dict(record), indent=2))
        return
    click.echo(f"Source {record.name!r} is searchable for: {', '.join(record.purposes)} "
               f"(was: {', '.join(before) or 'nothing'}).")


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
        [r.name, r.legal_basis, f"{r.retention_days}d", str(r.image_count), str(r.face_count),
         ",".join(r.purposes) or "(none)", r.controller, r.purpose]
        for r in records
    ]
    click.echo(_table(["name", "basis", "retention", "images", "faces", "searchable for", "controller", "purpose"],
                      rows))


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
        "purposes": list(record.purposes),
    }
