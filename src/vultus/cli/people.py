"""`vultus people`: a source's faces grouped into people; listing, clustering and a user's corrections.

Thin like the rest of the CLI (parse, call the engine, render). Imported by :mod:`vultus.cli`,
which owns the group and the shared helpers.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..report import clock
from .base import _engine, _friendly, _json_option, _table, cli


@cli.group()
def people() -> None:
    """People: a source's faces grouped into people, for sources whose registration allows it.

    Groups are made inside one source only (`vultus source set NAME --clustering`), placed as
    ingest adds faces and in full with `people cluster`; a user's corrections (name, merge,
    split, forget) survive later runs. Listing and every change are audited.
    """


def _where(face: dict[str, Any]) -> str:
    if face.get("media") == "video":
        return f"{face['path']} at {clock(face.get('time_start'))}-{clock(face.get('time_end'))}"
    return face["path"]


def _emit_person(person: dict[str, Any], as_json: bool, headline: str) -> None:
    if as_json:
        click.echo(json.dumps(person, indent=2))
        return
    click.echo(headline)
    _show_faces(person)


def _show_faces(person: dict[str, Any]) -> None:
    rows = [[str(f["face_id"]), "yes" if f["pinned"] else "", str(f["box"]), _where(f)] for f in person["faces"]]
    click.echo(_table(["face", "pinned", "box", "path"], rows))


def _label(person: dict[str, Any]) -> str:
    name = f" {person['name']!r}" if person.get("name") else " (no name)"
    return f"Person {person['id']}{name} in source {person['source']!r}: {person['count']} face(s)"


@people.command("list")
@click.option("--source", "source_name", help="Only the people of this source.")
@_json_option
@click.pass_context
@_friendly
def people_list(ctx: click.Context, source_name: str | None, as_json: bool) -> None:
    """List people (id, name, faces, cover face), largest first; audited."""
    found = _engine(ctx).people.list(source=source_name)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("No people yet: turn clustering on for a source (`vultus source set NAME --clustering`), "
                   "ingest into it, and run `vultus people cluster --source NAME`.")
        return
    rows = [[str(p["id"]), p["name"] or "", str(p["count"]), p["source"], _where(p["cover"]) if p["cover"] else ""]
            for p in found]
    click.echo(_table(["id", "name", "faces", "source", "cover"], rows))


@people.command("show")
@click.argument("person_id", type=click.IntRange(min=1))
@_json_option
@click.pass_context
@_friendly
def people_show(ctx: click.Context, person_id: int, as_json: bool) -> None:
    """Show person ID and each of its faces (face id, box, path); audited."""
    person = _engine(ctx).people.show(person_id)
    _emit_person(person, as_json, _label(person) + ":")


@people.command("cluster")
@click.option("--source", "source_name", required=True, help="The source whose faces are grouped.")
@_json_option
@click.pass_context
@_friendly
def people_cluster(ctx: click.Context, source_name: str, as_json: bool) -> None:
    """Group the faces of a source into people in full; corrections (pinned faces) are kept."""
    figures = _engine(ctx).people.cluster(source_name)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    left = figures["left_out"]
    click.echo(
        f"Grouped {figures['grouped']} of {figures['faces']} face(s) of source {figures['source']!r} into "
        f"{figures['people']} people ({figures['new_people']} new, {figures['pinned']} face(s) kept where a "
        f"user put them); {figures['unassigned']} left unassigned. Left out: {left['restricted']} restricted, "
        f"{left['forgotten']} forgotten."
    )


@people.command("name")
@click.argument("person_id", type=click.IntRange(min=1))
@click.argument("name", required=False)
@click.option("--clear", is_flag=True, help="Remove the person's name instead.")
@_json_option
@click.pass_context
@_friendly
def people_name(ctx: click.Context, person_id: int, name: str | None, clear: bool, as_json: bool) -> None:
    """Give person ID the name NAME (or --clear it); its faces are pinned, so the name stays with them."""
    if clear == (name is not None):
        raise click.UsageError("Give either a NAME or --clear.")
    person = _engine(ctx).people.name(person_id, None if clear else name)
    _emit_person(person, as_json, f"Person {person['id']} is now {person['name']!r}." if person["name"]
                 else f"Person {person['id']} has no name now.")


@people.command("merge")
@click.argument("person_ids", nargs=-1, required=True, type=click.IntRange(min=1))
@_json_option
@click.pass_context
@_friendly
def people_merge(ctx: click.Context, person_ids: tuple[int, ...], as_json: bool) -> None:
    """Merge people ID ID... of one source into the first ID (it keeps its id and name)."""
    person = _engine(ctx).people.merge(person_ids)
    _emit_person(person, as_json, f"Merged into {_label(person)}.")


def _face_ids(values: tuple[str, ...]) -> list[int]:
    found = []
    for value in values:
        for part in value.replace(",", " ").split():
            if not part.isdigit() or int(part) < 1 or int(part) > 2**63 - 1:
                raise click.BadParameter(f"{part!r} is not a face id (a number from `vultus people show ID`).",
                                         param_hint="--faces")
            found.append(int(part))
    return found


@people.command("split")
@click.argument("person_id", type=click.IntRange(min=1))
@click.option("--faces", "faces", multiple=True, required=True,
              help="Face ids to split off (repeat the option, or separate ids with commas).")
@_json_option
@click.pass_context
@_friendly
def people_split(ctx: click.Context, person_id: int, faces: tuple[str, ...], as_json: bool) -> None:
    """Split the given faces off person ID into a new person (a video appearance moves whole)."""
    person = _engine(ctx).people.split(person_id, _face_ids(faces))
    _emit_person(person, as_json, f"Split off as new {_label(person)}.")


@people.command("forget")
@click.argument("person_id", type=click.IntRange(min=1))
@_json_option
@click.pass_context
@_friendly
def people_forget(ctx: click.Context, person_id: int, as_json: bool) -> None:
    """Drop person ID's grouping and name; its faces stay, never grouped automatically again."""
    done = _engine(ctx).people.forget(person_id)
    if as_json:
        click.echo(json.dumps(done, indent=2))
        return
    click.echo(f"Forgot person {done['forgotten']} of source {done['source']!r}; its {done['faces']} face(s) stay "
               "in the gallery and will not be grouped automatically again.")
