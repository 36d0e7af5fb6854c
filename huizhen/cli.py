"""The ``huizhen`` command."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys
from pathlib import Path
from typing import Any

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

    configure_logging(settings.log_level, patient_data=settings.log_patient_data)
    ctx.obj = {"settings": settings}


@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the server: GraphQL/health over HTTP (and the other listeners when enabled)."""
    from huizhen.server import run
    from huizhen.settings import production_problems

    settings = _settings(ctx)
    problems = production_problems(settings)
    if problems:
        click.echo(f"huizhen: refusing to start with HUIZHEN_ENV=production: {'; '.join(problems)}", err=True)
        sys.exit(2)
    try:
        asyncio.run(run(settings))
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


@main.group()
def keys() -> None:
    """Data-key maintenance (patient data encrypted at rest)."""


@keys.command("rotate")
@click.option("--grace", type=click.FloatRange(min=0), default=3.0, show_default=True,
              help="Seconds to wait after adding the key, so running servers start encrypting with it.")
@click.option("--batch", type=click.IntRange(min=1), default=200, show_default=True, help="Rows per transaction.")
@click.option("--retire", is_flag=True, help="Afterwards drop the older keys from keys.json (backups under "
              "them become unreadable).")
@click.pass_context
def keys_rotate(ctx: click.Context, grace: float, batch: int, retire: bool) -> None:
    """Add a new data key and re-encrypt every encrypted value with it, while servers keep running.

    With HUIZHEN_DATA_KEY no key is generated: put the new key first in the
    list (keeping the old ones after it) on every instance, then run this to
    re-encrypt under it.
    """
    import json
    import time

    from huizhen.app import prepare_data_dir, secret_value
    from huizhen.integration import crypto
    from huizhen.integration.rekey import reencrypt_all, values_by_key_id
    from huizhen.integration.store import Store

    settings = _settings(ctx)
    data = prepare_data_dir(settings)
    from_env = settings.data_key is not None
    try:
        if from_env:
            if retire:
                raise ConfigurationError("--retire: with HUIZHEN_DATA_KEY, drop the old keys from the variable")
        else:
            crypto.load_or_create_keyring(data)
            crypto.rotate_key_file(data)
            time.sleep(grace)
        ring = crypto.load_keyring(data, secret_value(settings.data_key), secret_value(settings.index_key))
    except ConfigurationError as exc:
        click.echo(f"huizhen: {exc}", err=True)
        sys.exit(2)

    async def go() -> tuple[dict[str, int], dict[str, int]]:
        store = Store(settings.resolved_database_url, ring)
        try:
            report = await reencrypt_all(store, batch=batch)
            return report.reencrypted, await values_by_key_id(store)
        finally:
            await store.close()

    done, left = asyncio.run(go())
    old = {kid: n for kid, n in left.items() if kid != ring.active}
    retired = crypto.retire_old_keys(data) if retire and not old else []
    click.echo(json.dumps({"active": ring.active, "reencrypted": done, "values_by_key": left,
                           "retired": retired}, ensure_ascii=False))
    sys.exit(1 if old else 0)


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


async def _with_policy(settings: Settings, job: Any) -> Any:
    """Run ``job(PolicyService)`` against the configured database and bus (seeded like a first start)."""
    from huizhen.app import open_store
    from huizhen.integration.events import create_bus
    from huizhen.rbac.enforcer import Authorizer
    from huizhen.rbac.service import PolicyService

    store = await open_store(settings)
    bus = await create_bus(settings.broker_url)
    rbac = settings.resolved_rbac_dir
    service = PolicyService(store, bus, Authorizer(rbac / "model.conf"), rbac / "policy.csv")
    try:
        await service.seed_once()
        return await job(service)
    finally:
        await bus.close()
        await store.close()


@main.group()
def policy() -> None:
    """The RBAC policy as a CSV file (p and g lines, see config/rbac/policy.csv)."""


@policy.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def policy_export(ctx: click.Context, file: Path) -> None:
    """Write the live policy to FILE (``-`` for standard output)."""
    from huizhen.rbac.policy import to_csv
    from huizhen.rbac.service import PolicyService

    async def job(service: PolicyService) -> str:
        return to_csv(await service.rules())

    text = asyncio.run(_with_policy(_settings(ctx), job))
    if str(file) == "-":
        click.echo(text, nl=False)
    else:
        file.write_text(text, encoding="utf-8")
        click.echo(f"exported {text.count(chr(10)) - 1} rule(s) to {file}", err=True)


@policy.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def policy_import(ctx: click.Context, file: Path) -> None:
    """Replace the live policy with FILE; any bad line rejects the whole file, naming its line."""
    from huizhen.integration.model import Actor
    from huizhen.rbac.policy import PolicyError, parse_csv
    from huizhen.rbac.service import PolicyService

    try:
        rules = parse_csv(file.read_text(encoding="utf-8"))
    except PolicyError as exc:
        click.echo(f"huizhen: {file}: {exc}; nothing imported", err=True)
        sys.exit(1)
    except UnicodeDecodeError as exc:
        click.echo(f"huizhen: {file}: not UTF-8 text ({exc}); nothing imported", err=True)
        sys.exit(1)
    actor = Actor(id=f"cli:{getpass.getuser()}", roles=("security_officer",), source="cli")

    async def job(service: PolicyService) -> None:
        await service.replace(rules, actor)

    asyncio.run(_with_policy(_settings(ctx), job))
    click.echo(f"imported {len(rules)} rule(s) from {file}")


@main.group()
def audit() -> None:
    """The audit trail: verify its hash chain, export it."""


async def _with_store(settings: Settings, job: Any) -> Any:
    from huizhen.app import open_store

    store = await open_store(settings)
    try:
        return await job(store)
    finally:
        await store.close()


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Check the hash chain; exit 1 naming the first broken link."""
    from huizhen.rbac.audit import verify

    result = asyncio.run(_with_store(_settings(ctx), verify))
    if result.ok:
        click.echo(f"audit chain intact: {result.checked} event(s)")
        return
    click.echo(f"audit chain broken at event #{result.broken_at} (id {result.event_id}): {result.reason}", err=True)
    sys.exit(1)


@audit.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def audit_export(ctx: click.Context, file: Path) -> None:
    """Write the audit trail to FILE as JSON lines, one FHIR-shaped AuditEvent a line."""
    from huizhen.integration.store import Store
    from huizhen.rbac.audit import export_jsonl

    async def job(store: Store) -> int:
        with file.open("w", encoding="utf-8") as out:
            return await export_jsonl(store, out)

    n = asyncio.run(_with_store(_settings(ctx), job))
    click.echo(f"exported {n} audit event(s) to {file}", err=True)


@main.group()
def dicom() -> None:
    """DICOM objects in the data folder."""


@dicom.command("export")
@click.argument("study_uid")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--deidentify", is_flag=True, help="PS3.15 basic profile: pseudonym, shifted dates, remapped UIDs.")
@click.pass_context
def dicom_export(ctx: click.Context, study_uid: str, directory: Path, deidentify: bool) -> None:
    """Write a stored study's instances to DIRECTORY as Part-10 files."""
    from huizhen.adapters.dicom_export import export_from_settings
    from huizhen.integration.errors import NotFound

    try:
        result = asyncio.run(export_from_settings(_settings(ctx), study_uid, directory, deidentify=deidentify))
    except NotFound as exc:
        click.echo(f"huizhen: {exc}", err=True)
        sys.exit(1)
    click.echo(f"exported {len(result.files)} instance(s) of study {result.study_instance_uid} to {directory}")
    if result.pseudonym:
        click.echo(f"patient pseudonym {result.pseudonym}")
    if result.burned_in:
        click.echo(f"warning: {result.burned_in} instance(s) declare burned-in annotation; review the pixels", err=True)


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


# -- operations (huizhen/ops/) -------------------------------------------------------------------------


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"huizhen: {message}", err=True)
    sys.exit(code)


@main.command()
@click.option("--url", default=None, help="Server base URL (default: the configured host and http_port).")
@click.option("--token", default=None, help="Bearer token (default: $HUIZHEN_TOKEN, else one signed locally).")
@click.pass_context
def status(ctx: click.Context, url: str | None, token: str | None) -> None:
    """Channels, queues and last errors of a running server."""
    from huizhen.ops.remote import RemoteError, admin_token, fetch_status, server_url

    settings = _settings(ctx)
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


@main.group()
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

    settings = _settings(ctx)
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


@main.command()
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def backup(ctx: click.Context, target: Path) -> None:
    """Back up the embedded default (database, objects, keys) into TARGET while the server runs."""
    from huizhen.integration.errors import HuizhenError
    from huizhen.ops.backup import backup as run_backup

    progress = _steps("backing up")
    try:
        summary = run_backup(_settings(ctx), target, progress)
    except HuizhenError as exc:
        _fail(str(exc), 2)
        return
    finally:
        progress.finish()
    click.echo(f"backed up {summary.files} file(s), {summary.bytes:,} bytes "
               f"(database {summary.database_bytes:,}) into {target}")


@main.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Move existing data aside (to DATA_DIR.before-restore-…) first.")
@click.pass_context
def restore(ctx: click.Context, source: Path, force: bool) -> None:
    """Restore a backup into the data folder (stop the server first)."""
    from huizhen.integration.errors import HuizhenError
    from huizhen.ops.backup import restore as run_restore

    progress = _steps("restoring")
    try:
        summary = run_restore(_settings(ctx), source, force=force, progress=progress)
    except HuizhenError as exc:
        _fail(str(exc), 2)
        return
    finally:
        progress.finish()
    click.echo(f"restored {summary.files} file(s), {summary.bytes:,} bytes from {source}")


@main.group()
def mappings() -> None:
    """The code tables in config/mappings/."""


@mappings.command("reload")
@click.option("--url", default=None, help="Server base URL (default: the configured host and http_port).")
@click.option("--token", default=None, help="Bearer token (default: $HUIZHEN_TOKEN, else one signed locally).")
@click.pass_context
def mappings_reload(ctx: click.Context, url: str | None, token: str | None) -> None:
    """Tell a running server to reload its mapping tables (checked first; a bad row keeps the old ones)."""
    from huizhen.ops.remote import RemoteError, admin_token, request_reload, server_url

    settings = _settings(ctx)
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
        for run in dry_run(_settings(ctx), file, mappings_dir):
            click.echo(f"#{run.index} {run.type or '?'} {run.control_id or '?'}: {run.outcome}"
                       + (f" — {run.detail}" if run.detail else ""))
            for command in run.commands:
                click.echo("  " + json.dumps(command, ensure_ascii=False, default=str))
            failed += run.outcome.startswith("would fail") or run.outcome.startswith("would be rejected")
    except ConfigurationError as exc:
        _fail(str(exc), 2)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
