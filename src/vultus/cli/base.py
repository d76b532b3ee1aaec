"""The `vultus` command group, its global options, and what every command shares: the engine, errors, tables.

Library errors become ``click.ClickException`` here, so a user sees one clear message
and exit status 1, never a traceback.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import click

from ..config import Settings, env_name, environment_variables
from ..errors import VultusError, storage_error
from ..policy import LegalBasis, SearchCategory

BASIS_CHOICES = [b.value for b in LegalBasis]
CATEGORY_CHOICES = [c.value for c in SearchCategory]


def _engine(ctx: click.Context):
    """The engine for this invocation, opened on first use and closed at exit."""
    obj = ctx.find_root().obj
    if obj.get("engine") is None:
        from ..engine import Engine

        obj["engine"] = ctx.with_resource(Engine(obj["settings"]))
        for notice in obj["engine"].notices:
            click.echo(f"Note: {notice}", err=True)
    return obj["engine"]


def _as_click(exc: BaseException) -> click.ClickException | None:
    """The one-message error for a Vultus error, or a disk, permission or database failure."""
    if isinstance(exc, VultusError):
        return click.ClickException(str(exc))
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, (OSError, DBAPIError)):
        ctx = click.get_current_context(silent=True)
        settings = ctx.find_root().obj.get("settings") if ctx is not None and ctx.find_root().obj else None
        known = storage_error(exc, settings.data_dir if settings is not None else "the data directory")
        if known is not None:
            return click.ClickException(str(known))
    return None


def _friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn Vultus errors into click errors: a message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            friendly = _as_click(exc)
            if friendly is None:
                raise
            raise friendly from exc

    return wrapper


def _json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except Exception as exc:  # raised while opening or closing the engine
            friendly = _as_click(exc)
            if friendly is None:
                raise
            raise friendly from exc


def _default(name: str) -> Any:
    """A setting's default, as :class:`Settings` declares it (the one place defaults live)."""
    return Settings.model_fields[name].default


def _environment_epilog() -> str:
    """The --help text listing every setting's variable and default, from the Settings fields."""
    width = max(len(variable) for variable, _name, _default in environment_variables())
    rows = [f"  {variable:<{width}}  default: {'none' if default is None else default}"
            for variable, _name, default in environment_variables()]
    # \b keeps click from rewrapping the list into one paragraph.
    return ("Environment: every setting can be given as a variable; an option on the command line wins. "
            "An empty variable counts as unset. See the README for what each one does.\n\n\b\n" + "\n".join(rows))


# The options have no default and no envvar of their own: an option left out is None, and
# Settings.from_env then takes the variable, else the default, so both are declared once.
@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=_environment_epilog())
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory holding the database, photo copies and index "
    f"(env {env_name('data_dir')}; default: {_default('data_dir')}).",
)
@click.option(
    "--detector",
    help="Face detector: yunet (libfacedetection's CNN: turned and small faces, fast), hog (dlib's HOG: "
    "frontal faces), cnn (dlib's MMOD CNN, slower) or the path of an SCRFD-style .onnx file. "
    f"Env {env_name('detector')}; default: {_default('detector')}.",
)
@click.option(
    "--embedder",
    help=f"Face embedder: dlib-resnet-v1 or the path of an ArcFace-style .onnx file (env {env_name('embedder')}; "
    "default: the one the gallery was built with). Change a gallery's with `vultus reindex --model`.",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Key file with the encryption and signing keys (env {env_name('key_file')}; default: DATA/keys.json).",
)
@click.option(
    "--actor",
    help=f"Who is acting, recorded in the audit log (env {env_name('actor')}; default: your login name).",
)
@click.option(
    "--store-url",
    help=f"Where the metadata store is, as a URL (env {env_name('store.url')}; default: SQLite in the data "
    "directory, DATA/vultus.db). Known: sqlite:///PATH, postgresql+psycopg://USER@HOST:PORT/DATABASE.",
)
@click.option(
    "--index-url",
    help=f"Where the vector index is, as a URL (env {env_name('index.url')}; default: FAISS files in the data "
    "directory, DATA/index/faces.faiss). Known: faiss:///FOLDER (the file faces.faiss inside), "
    "milvus://[USER:PASSWORD@]HOST:PORT[/PREFIX][?ef=N] (a Milvus server).",
)
@click.version_option(package_name="vultus")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, detector: str | None, embedder: str | None, key_file: Path | None,
        actor: str | None, store_url: str | None, index_url: str | None) -> None:
    """Vultus: find every photo of a person in a collection you lawfully hold, from one photo.

    Local files only, no crawler; every face has a registered source with a legal basis.
    Start with `vultus source add`, then `vultus ingest`, then `vultus search`.
    """
    try:
        settings = Settings.from_env(data_dir=data_dir, detector=detector, embedder=embedder, key_file=key_file,
                                     actor=actor)
        settings = settings.with_(store={"url": store_url}, index={"url": index_url})
    except VultusError as exc:
        raise click.ClickException(str(exc)) from exc
    ctx.obj = {"settings": settings, "engine": None}


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
