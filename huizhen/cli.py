"""The ``huizhen`` command."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import click

from huizhen.integration.errors import ConfigurationError
from huizhen.settings import Settings, load_settings

log = logging.getLogger("huizhen")


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj["settings"]
    return settings


@click.group()
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="TOML config file (default: ./config/huizhen.toml).")
@click.pass_context
def main(ctx: click.Context, config_file: Path | None) -> None:
    """Huizhen (会诊): integration server for remote medical consultation."""
    os.umask(0o077)  # the database, objects and keys we create are ours alone
    try:
        settings = load_settings(config_file)
    except ConfigurationError as exc:
        click.echo(f"huizhen: {exc}", err=True)
        sys.exit(2)
    from huizhen.logs import configure_logging

    configure_logging(settings.log_level)
    ctx.obj = {"settings": settings}


@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the server: GraphQL/health over HTTP (and the other listeners when enabled)."""
    from huizhen.server import run

    try:
        asyncio.run(run(_settings(ctx)))
    except ConfigurationError as exc:
        click.echo(f"huizhen: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply the Alembic migrations to the configured database."""
    from huizhen.app import prepare_data_dir
    from huizhen.integration import migrate

    settings = _settings(ctx)
    prepare_data_dir(settings)
    migrate.upgrade(settings.resolved_database_url)
    click.echo(f"database at revision {migrate.current_head()}")


@main.command()
@click.option("--sub", required=True, help="The user's Huizhen id (Practitioner.id, Patient.id, or a staff id).")
@click.option("--role", "roles", multiple=True, required=True, help="A role; repeat for several.")
@click.option("--facility", default=None, help="Facility code the roles apply in.")
@click.option("--ttl", type=click.IntRange(min=1), default=None, help="Lifetime in seconds.")
@click.pass_context
def token(ctx: click.Context, sub: str, roles: tuple[str, ...], facility: str | None, ttl: int | None) -> None:
    """Print a signed token (development and tests)."""
    from huizhen.app import prepare_data_dir
    from huizhen.rbac.identity import TokenService, load_or_create_signing_key

    settings = _settings(ctx)
    key = load_or_create_signing_key(prepare_data_dir(settings))
    click.echo(TokenService(key, settings.token_ttl_seconds).issue(sub, list(roles), facility, ttl))


@main.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Load a small demo directory: facilities, experts, doctors and patients."""
    from huizhen.demo import load_demo

    summary = asyncio.run(load_demo(_settings(ctx)))
    click.echo(summary)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--host", default=None, help="MLLP host (default: the configured host).")
@click.option("--port", type=int, default=None, help="MLLP port (default: the configured mllp_port).")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for each ACK.")
@click.pass_context
def send(ctx: click.Context, files: tuple[Path, ...], host: str | None, port: int | None, timeout: float) -> None:
    """Send HL7 v2 files (one or many messages each) over MLLP and print each ACK code."""
    from huizhen.adapters.hl7_send import count_messages, send_files

    settings = _settings(ctx)
    total = count_messages(files)
    with click.progressbar(length=total, label="sending", file=sys.stderr) as bar:
        report = asyncio.run(send_files(files, host or settings.host, port or settings.mllp_port,
                                        timeout_s=timeout, progress=bar.update))
    for line in report.lines:
        click.echo(line)
    summary = ", ".join(f"{code} {n}" for code, n in sorted(report.codes.items()))
    click.echo(f"sent {report.sent} message(s): {summary}", err=True)
    sys.exit(0 if report.all_accepted else 1)


@main.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--sender", default="import", show_default=True,
              help="Who the submissions are journaled as coming from (FHIR; HL7 messages name their own MSH-4).")
@click.option("--facility", default=None, help="Facility code the FHIR resources belong to.")
@click.option("--verbose", is_flag=True, help="Also log each refused submission (the summary lists them anyway).")
@click.pass_context
def import_(ctx: click.Context, paths: tuple[Path, ...], sender: str, facility: str | None, verbose: bool) -> None:
    """Load FHIR JSON, ndjson, Bundles and HL7 v2 files (or folders of them) into the store.

    Each resource, Bundle or HL7 message goes through the same pipeline as on the
    network and is journaled on its channel (fhir, mllp) with peer import:<file>.
    Prints one line per rejected submission and a summary; exit status 1 when any
    was rejected.
    """
    from huizhen.adapters.fhir_import import collect_files, run_import

    if not verbose:  # the summary names every refusal; per-message warnings would bury the progress bar
        log.setLevel(logging.ERROR)
    files, skipped = collect_files(paths)
    total = sum(f.stat().st_size for f in files)
    with click.progressbar(length=total, label="importing", file=sys.stderr) as bar:
        report = asyncio.run(run_import(_settings(ctx), files, sender=sender, facility=facility,
                                        progress=bar.update))
    report.skipped = skipped
    for line in report.lines():
        click.echo(line)
    sys.exit(0 if report.ok else 1)


@main.command()
def schema() -> None:
    """Print the GraphQL SDL."""
    from huizhen.graphql.schema import build_schema

    click.echo(build_schema().as_str())


if __name__ == "__main__":
    main()
