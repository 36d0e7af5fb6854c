"""The integration admins' commands, added to ``huizhen`` by :mod:`huizhen.cli`: ``status``,
``messages prune``, ``backup``/``restore`` and ``mappings reload``/``test``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from huizhen.integration.errors import ConfigurationError
from huizhen.settings import Settings


def settings_of(ctx: click.Context) -> Settings:
    """The settings the ``huizhen`` group loaded (``--config``, environment)."""
    settings: Settings = ctx.find_root().obj["settings"]
    return settings



def _fail(message: str, code: int = 1) -> None:
    click.echo(f"huizhen: {message}", err=True)
    sys.exit(code)


@click.command()
@click.option("--url", default=None, help="Server base URL (default: the configured host and http_port).")
@click.option("--token", default=None, help="Bearer token (default: $HUIZHEN_TOKEN, else one signed locally).")
@click.pass_context
def status(ctx: click.Context, url: str | None, token: str | None) -> None:
    """Channels, queues and last errors of a running server."""
    from huizhen.ops.remote import RemoteError, admin_token, fetch_status, server_url

    settings = settings_of(ctx)
    base = server_url(settings, url)
    try:
        found = fetch_status(base, admin_token(settings, token))
    except RemoteError as exc:
        _fail(str(exc))
        return
    header = ("channel", "direction", "state", "received", "errors", "queued")
    click.echo("{:<10} {:<9} {:<10} {:>9} {:>7} {:>7}  last message".format(*header))
    for c in found.channels:
        click.echo(f"{c['name']:<10} {c['direction']:<9} {c['state']:<10} {c['received']:>9} {c['errors']:>7} "
                   f"{c['queued']:>7}  {c['lastMessageAt'] or '-'}")
    click.echo(f"\n{found.errors_total} message(s) in ERROR" + ("; the latest:" if found.last_errors else ""))
    for e in found.last_errors:
        click.echo(f"  {e['receivedAt']}  {e['channel']}  {e['type'] or '-'}  {e['controlId'] or '-'}  {e['error']}")
    sys.exit(1 if any(c["state"] == "stopped" for c in found.channels) else 0)


@click.group()
def messages() -> None:
    """The message journal."""


@messages.command("prune")
@click.option("--before", "before", required=True, type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="Delete messages received before this date (in the configured time zone).")
@click.option("--keep-errors", is_flag=True, help="Keep ERROR messages (they may still need reprocessing).")
@click.option("--full", is_flag=True, help="PostgreSQL: VACUUM FULL (gives space to the OS; locks the journal).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def messages_prune(ctx: click.Context, before: Any, keep_errors: bool, full: bool, yes: bool) -> None:
    """Journal retention: batched deletes, then space given back (VACUUM, per back end)."""
    from huizhen.app import open_store
    from huizhen.ops.retention import count_prunable, prune

    settings = settings_of(ctx)
    cutoff = before.replace(tzinfo=settings.tz)

    async def go() -> None:
        store = await open_store(settings, migrate_db=False)
        try:
            total = await count_prunable(store, cutoff, keep_errors=keep_errors)
            if total and not yes:
                click.confirm(f"delete {total} message(s) received before {cutoff.isoformat()}?", abort=True)
            with click.progressbar(length=total, label="pruning", file=sys.stderr) as bar:
                report = await prune(store, cutoff, keep_errors=keep_errors, full=full, progress=bar.update)
        finally:
            await store.close()
        click.echo(f"deleted {report.deleted} message(s); {report.reclaimed}")

    db_file = _sqlite_file(settings)
    size_before = db_file.stat().st_size if db_file else None
    asyncio.run(go())
    if db_file is not None and size_before is not None:
        click.echo(f"database file: {size_before:,} → {db_file.stat().st_size:,} bytes")


def _sqlite_file(settings: Settings) -> Path | None:
    from sqlalchemy.engine import make_url

    url = make_url(settings.resolved_database_url)
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


def _steps(label: str) -> Any:
    """A progress callback ``(done, total)`` drawing one bar per step."""
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None or bar.length != total:
            if bar is not None:
                bar.render_finish()
            bar = state["bar"] = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)
            bar.render_progress()
        bar.update(done - bar.pos)

    def finish() -> None:
        if state.get("bar") is not None:
            state["bar"].render_finish()

    update.finish = finish  # type: ignore[attr-defined]
    return update


@click.command()
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def backup(ctx: click.Context, target: Path) -> None:
    """Back up the embedded default (database, objects, keys) into TARGET while the server runs."""
    from huizhen.integration.errors import HuizhenError
    from huizhen.ops.backup import backup as run_backup

    progress = _steps("backing up")
    try:
        summary = run_backup(settings_of(ctx), target, progress)
    except HuizhenError as exc:
        _fail(str(exc), 2)
        return
    finally:
        progress.finish()
    click.echo(f"backed up {summary.files} file(s), {summary.bytes:,} bytes "
               f"(database {summary.database_bytes:,}) into {target}")


@click.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Move existing data aside (to DATA_DIR.before-restore-…) first.")
@click.pass_context
def restore(ctx: click.Context, source: Path, force: bool) -> None:
    """Restore a backup into the data folder (stop the server first)."""
    from huizhen.integration.errors import HuizhenError
    from huizhen.ops.backup import restore as run_restore

    progress = _steps("restoring")
    try:
        summary = run_restore(settings_of(ctx), source, force=force, progress=progress)
    except HuizhenError as exc:
        _fail(str(exc), 2)
        return
    finally:
        progress.finish()
    click.echo(f"restored {summary.files} file(s), {summary.bytes:,} bytes from {source}")


@click.group()
def mappings() -> None:
    """The code tables in config/mappings/."""


@mappings.command("reload")
@click.option("--url", default=None, help="Server base URL (default: the configured host and http_port).")
@click.option("--token", default=None, help="Bearer token (default: $HUIZHEN_TOKEN, else one signed locally).")
@click.pass_context
def mappings_reload(ctx: click.Context, url: str | None, token: str | None) -> None:
    """Tell a running server to reload its mapping tables (checked first; a bad row keeps the old ones)."""
    from huizhen.ops.remote import RemoteError, admin_token, request_reload, server_url

    settings = settings_of(ctx)
    try:
        ok, detail = request_reload(server_url(settings, url), admin_token(settings, token))
    except RemoteError as exc:
        _fail(str(exc))
        return
    if not ok:
        _fail(f"rejected, the previous tables stay in force: {detail}")
    click.echo(f"reloaded: {detail}")


@mappings.command("test")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mappings-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Tables to try (default: the configured mappings_dir).")
@click.pass_context
def mappings_test(ctx: click.Context, file: Path, mappings_dir: Path | None) -> None:
    """Show what each message of FILE would map to; nothing is stored or sent."""
    import json

    from huizhen.ops.dryrun import dry_run

    failed = 0
    try:
        for run in dry_run(settings_of(ctx), file, mappings_dir):
            click.echo(f"#{run.index} {run.type or '?'} {run.control_id or '?'}: {run.outcome}"
                       + (f" — {run.detail}" if run.detail else ""))
            for command in run.commands:
                click.echo("  " + json.dumps(command, ensure_ascii=False, default=str))
            failed += run.outcome.startswith("would fail") or run.outcome.startswith("would be rejected")
    except ConfigurationError as exc:
        _fail(str(exc), 2)
    sys.exit(1 if failed else 0)

