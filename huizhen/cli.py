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
from huizhen.ops import commands as ops_commands
from huizhen.ops.commands import settings_of
from huizhen.settings import Settings, load_settings

log = logging.getLogger("huizhen")


def _settings(ctx: click.Context) -> Settings:
    return settings_of(ctx)


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
    """Add a new data key and re-encrypt every encrypted value and DICOM object with it, while servers keep running.

    With HUIZHEN_DATA_KEY no key is generated: put the new key first in the
    list (keeping the old ones after it) on every instance, then run this to
    re-encrypt under it.
    """
    import json
    import time

    from huizhen.adapters.objects import ObjectStore
    from huizhen.app import prepare_data_dir, secret_value
    from huizhen.integration import crypto
    from huizhen.integration.rekey import plaintext_left, reencrypt_all, values_by_key_id
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

    async def go() -> tuple[dict[str, int], dict[str, int], dict[str, int], dict[str, int]]:
        store = Store(settings.resolved_database_url, ring)
        try:
            report = await reencrypt_all(store, batch=batch)
            return report.reencrypted, report.sealed, await values_by_key_id(store), await plaintext_left(store)
        finally:
            await store.close()

    done, sealed, left, plaintext = asyncio.run(go())
    # the DICOM objects too: sealed under the active key (files from before encryption included)
    objects = ObjectStore(data / "dicom", ring)
    resealed = objects.reseal()
    objects_left = objects.key_ids()
    old = {kid: n for kid, n in left.items() if kid != ring.active}
    old.update({kid: n for kid, n in objects_left.items() if kid != ring.active})
    old.update({name: n for name, n in plaintext.items() if n})
    retired = crypto.retire_old_keys(data) if retire and not old else []
    click.echo(json.dumps({"active": ring.active, "reencrypted": done, "sealed": sealed, "values_by_key": left,
                           "objects_resealed": resealed, "objects_by_key": objects_left,
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
        if result.unsigned:
            click.echo("note: the chain's anchor is not signed yet (the next audit event signs it)", err=True)
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


# the integration admins' commands: status, messages prune, backup/restore, mappings (huizhen/ops/commands.py)
for _command in (ops_commands.status, ops_commands.messages, ops_commands.backup, ops_commands.restore,
                 ops_commands.mappings):
    main.add_command(_command)


if __name__ == "__main__":
    main()
