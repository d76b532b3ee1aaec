"""`vultus migrate`: move the deployment into another store and index (PostgreSQL and Milvus, say)."""

from __future__ import annotations

import json
import sys

import click

from ..migration import SAMPLE
from .base import _engine, _friendly, _json_option, _table, cli

#: What each step of a move is called on its progress bar.
_STEPS = {"index": "Building the index", "verify": "Checking"}


class _Bars:
    """One progress bar on stderr per step of the move (a table, the index, the checks)."""

    def __init__(self, enabled: bool | None):
        self.enabled = enabled
        self.step: str | None = None
        self.bar = None

    def __call__(self, step: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if step != self.step:
            self.close()
            self.step = step
            unit = "face" if step == "index" else "step" if step == "verify" else "row"
            self.bar = tqdm(total=total, unit=unit, desc=_STEPS.get(step, f"Copying {step}"), file=sys.stderr,
                            disable=(not self.enabled) if self.enabled is not None else None, leave=False)
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@cli.command()
@click.option("--to-store", required=True, metavar="URL",
              help="The store to copy the deployment into, e.g. postgresql+psycopg://USER@HOST/DB or sqlite:///PATH; "
              "it must be empty.")
@click.option("--to-index", required=True, metavar="URL",
              help="The index to build from the copied templates, e.g. milvus://HOST:PORT or faiss:///FOLDER; it must "
              "be empty (see --replace-index).")
@click.option("--replace-index", is_flag=True,
              help="Replace what the target index holds (what an interrupted move left there) instead of refusing.")
@click.option("--sample", type=click.IntRange(min=0), default=SAMPLE, show_default=True,
              help="Stored faces whose own templates are searched in both indexes to compare their top 10.")
@click.option("--progress/--no-progress", default=None, help="Show progress on stderr (default: when on a terminal).")
@_json_option
@click.pass_context
@_friendly
def migrate(ctx: click.Context, to_store: str, to_index: str, replace_index: bool, sample: int, progress: bool | None,
            as_json: bool) -> None:
    """Copy the deployment into another store and index, check the copy, and audit the move.

    Every table of the store is copied as stored (ids, sealed templates, the audit log with
    its hashes), the target index is built from the copied templates, and the copy is
    checked: rows and their content per table, the audit chain, the index, and a sample of
    searches. The move runs in one transaction of the target: if it stops part-way, the
    target is left empty and the deployment as it was. Stop `vultus serve` first. The key
    file and the blobs stay in the data directory; afterwards point the deployment at the
    target with VULTUS_STORE__URL and VULTUS_INDEX__URL.
    """
    engine = _engine(ctx)
    bars = _Bars(progress)
    try:
        report = engine.migrate(to_store=to_store, to_index=to_index, replace_index=replace_index, sample=sample,
                                progress=bars)
    finally:
        bars.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    rows = [[c.name, c.source, c.target, "ok" if c.ok else "FAILED"] for c in report.checks]
    click.echo(_table(["check", "source", "target", "result"], rows))
    click.echo(f"\nMoved {sum(report.rows.values()):,} rows and built {report.index_vectors:,} index templates in "
               f"{report.seconds:.1f} s; audited as entry {report.audit['source']} here and {report.audit['target']} "
               "on the target.")
    click.echo("Switch the deployment to the target (same --data: it keeps the key file and the blobs):\n"
               f"  export VULTUS_STORE__URL='{report.target_store}'\n  export VULTUS_INDEX__URL='{report.target_index}'")
    if "***" in report.target_store:
        click.echo("(with the password in place of ***)")
