"""The ``parley`` command: run the server, migrate, and manage applications and keys.

Every command goes through the same services as the API, so a key revoked here is
refused by every running node within a second (at once where Redis carries the news).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from parley.config import Settings
from parley.services.container import Services
from parley.services.errors import ParleyError
from parley.services.usage import usage_report
from parley.storage.db import current_revision, head_revision, run_migrations

T = TypeVar("T")


def _settings(ctx: click.Context) -> Settings:
    overrides = {k: v for k, v in ctx.find_root().params.items() if v is not None}
    return Settings(**overrides)


def _call(ctx: click.Context, action: Callable[[Services], Awaitable[T]]) -> T:
    """Run one action against the services, mapping service errors to a clean exit."""

    async def go() -> T:
        svc = Services(_settings(ctx))
        try:
            return await action(svc)
        finally:
            await svc.broker.close()
            await svc.db.close()

    try:
        return asyncio.run(go())
    except ParleyError as exc:
        click.echo(f"error: {exc.code}: {exc.message}", err=True)
        sys.exit(1)


def _emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text)


@click.group()
@click.option(
    "--data-dir", type=click.Path(path_type=Path), help="Data directory [PARLEY_DATA_DIR]"
)
@click.option("--database-url", help="SQLAlchemy URL [PARLEY_DATABASE_URL]")
@click.option("--redis-url", help="Redis URL for clusters [PARLEY_REDIS_URL]")
def main(**_: Any) -> None:
    """Parley: a self-hostable chat server that speaks the IMKIT Platform API."""


# -- server --------------------------------------------------------------------------


@main.command()
@click.option("--host", help="Address to listen on [PARLEY_HOST, 127.0.0.1]")
@click.option("--port", type=int, help="Port [PARLEY_PORT, 3100]")
@click.pass_context
def run(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the server (REST on one port). Migrates the embedded SQLite database itself."""
    import uvicorn

    from parley.app import create_app

    settings = _settings(ctx)
    if host:
        settings.host = host
    if port:
        settings.port = port
    _prepare_database(settings)
    _first_run_app(ctx, settings)
    click.echo(f"Parley is listening on http://{settings.host}:{settings.port}")
    app = create_app(settings)
    _tune_garbage_collector()
    _log_to_stderr(settings.log_level)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        proxy_headers=settings.trust_proxy,
        server_header=False,
        **websocket_options(settings),
    )


def websocket_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves the gateway's WebSockets (the tests' servers use the same)."""
    from parley.gateway.transport import GatewayWebSocketProtocol

    return {
        # A frame larger than a request body is refused by the server itself, before it
        # is buffered (the gateway allows the same size).
        "ws_max_size": settings.max_body_bytes,
        # No permessage-deflate: it would compress every frame once per socket (the
        # gateway encodes a frame once for all of them) and keep a compressor of tens of
        # kilobytes per socket. Chat frames are small; the SDKs work without it.
        "ws_per_message_deflate": False,
        # The gateway's Engine.IO pings already find dead sockets (socket_ping_*).
        "ws_ping_interval": None,
        # uvicorn's own protocol, letting the gateway write each broadcast frame, encoded
        # once, straight to every transport (see parley.gateway.transport).
        "ws": GatewayWebSocketProtocol,
    }


def _log_to_stderr(level: str) -> None:
    """Parley's own log lines (outages, replays, closed sockets) at the configured level;
    uvicorn configures only its own loggers."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("parley")
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def _tune_garbage_collector() -> None:
    """A server allocates many short-lived objects per request; with the default
    thresholds full collections walk every long-lived object (modules, the ORM's
    registries) several times a second under load, pausing every request for 100 ms and
    more (measured with bench/ingest.py). Freeze what exists at start, and collect the
    young generation less often."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


def _prepare_database(settings: Settings) -> None:
    if settings.is_sqlite:
        run_migrations(settings.effective_database_url)
        return

    async def revision() -> str | None:
        svc = Services(settings)
        try:
            return await current_revision(svc.db)
        finally:
            await svc.db.close()

    if asyncio.run(revision()) != head_revision():
        click.echo(
            "error: the database schema is not current; run `parley migrate` first", err=True
        )
        sys.exit(1)


def _first_run_app(ctx: click.Context, settings: Settings) -> None:
    async def create_if_empty(svc: Services) -> Any:
        if await svc.apps.count():
            return None
        return await svc.apps.create("default", ["localhost", "127.0.0.1"])

    new = _call(ctx, create_if_empty)
    if new is None:
        return
    click.echo(
        f'Created the application "{new.app.name}" ({new.app.id}), '
        f"served on {', '.join(new.app.domains)}.\n"
        f"  API Key (shown only now; keep it secret): {new.api_key}\n"
        f"  Client Key (public, for your apps):       {new.client_key}"
    )


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Bring the database schema to the newest version."""
    settings = _settings(ctx)
    run_migrations(settings.effective_database_url)
    click.echo(f"Database at revision {head_revision()}")


# -- applications -------------------------------------------------------------------


@main.group()
def app() -> None:
    """Applications: create, list, show, update, delete, usage."""


def _app_text(view: dict[str, Any]) -> str:
    lines = [
        f"{view['name']}  ({view['id']})",
        f"  domains:         {', '.join(view['domains']) or '-'}",
        f"  allowed origins: {', '.join(view['allowedOrigins']) or 'any'}",
        f"  API Keys:        {', '.join(view['apiKeys']) or 'none'}",
        f"  Client Key:      {view['clientKey'] or 'none (revoked)'}",
    ]
    return "\n".join(lines)


@app.command("create")
@click.argument("name")
@click.option("--domain", "domains", multiple=True, help="Host name the app is served on")
@click.option("--origin", "origins", multiple=True, help="Allowed browser Origin")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def app_create(
    ctx: click.Context, name: str, domains: tuple[str, ...], origins: tuple[str, ...], as_json: bool
) -> None:
    """Create an application and print its keys (the API Key is shown only now)."""
    new = _call(ctx, lambda svc: svc.apps.create(name, list(domains), list(origins)))
    data = {
        "id": new.app.id,
        "name": new.app.name,
        "domains": new.app.domains,
        "allowedOrigins": new.app.allowed_origins,
        "apiKey": new.api_key,
        "clientKey": new.client_key,
    }
    _emit(
        data, as_json, _app_text(new.app.as_dict()) + f"\n  API Key (shown only now): {new.api_key}"
    )


@app.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def app_list(ctx: click.Context, as_json: bool) -> None:
    """List applications."""
    views = [v.as_dict() for v in _call(ctx, lambda svc: svc.apps.list_all())]
    _emit(
        views,
        as_json,
        "\n".join(f"{v['id']}  {v['name']}  {', '.join(v['domains'])}" for v in views)
        or "no applications",
    )


@app.command("show")
@click.argument("ref", metavar="APP")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def app_show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show an application (by id or name)."""

    async def show(svc: Services) -> dict[str, Any]:
        return (await svc.apps.show(await svc.apps.resolve(ref))).as_dict()

    view = _call(ctx, show)
    _emit(view, as_json, _app_text(view))


@app.command("update")
@click.argument("ref", metavar="APP")
@click.option("--name")
@click.option("--domain", "domains", multiple=True, help="Replaces the domains")
@click.option("--origin", "origins", multiple=True, help="Replaces the allowed Origins")
@click.option("--clear-origins", is_flag=True, help="Allow any Origin")
@click.option("--rate-limit", type=int, help="API Key requests per minute")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def app_update(
    ctx: click.Context,
    ref: str,
    name: str | None,
    domains: tuple[str, ...],
    origins: tuple[str, ...],
    clear_origins: bool,
    rate_limit: int | None,
    as_json: bool,
) -> None:
    """Change an application's name, domains, allowed Origins or rate limit."""

    async def update(svc: Services) -> dict[str, Any]:
        app_id = await svc.apps.resolve(ref)
        view = await svc.apps.update(
            app_id,
            name=name,
            domains=list(domains) if domains else None,
            origins=[] if clear_origins else (list(origins) if origins else None),
            rate_limit_per_minute=rate_limit,
        )
        return view.as_dict()

    view = _call(ctx, update)
    _emit(view, as_json, _app_text(view))


@app.command("delete")
@click.argument("ref", metavar="APP")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
@click.pass_context
def app_delete(ctx: click.Context, ref: str, yes: bool) -> None:
    """Delete an application with all its users and data."""
    if not yes:
        click.confirm(f"Delete application {ref!r} and all its data?", abort=True)

    async def delete(svc: Services) -> str:
        app_id = await svc.apps.resolve(ref)
        await svc.apps.delete(app_id)
        return app_id

    click.echo(f"Deleted {_call(ctx, delete)}")


@app.command("usage")
@click.argument("ref", metavar="APP")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def app_usage(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Requests and rejections per key and day (flushed by the server every few seconds)."""

    async def report(svc: Services) -> list[dict[str, Any]]:
        return await usage_report(svc.db, await svc.apps.resolve(ref))

    rows = _call(ctx, report)
    lines = [f"{'day':10}  {'key':6} {'key id':32}  {'requests':>8}  rejections / origins"]
    for r in rows:
        rejected = ", ".join(f"{k}={v}" for k, v in sorted(r["rejections"].items())) or "-"
        lines.append(
            f"{r['day']:10}  {r['keyKind']:6} {r['keyId']:32}  {r['requests']:>8}  "
            f"{rejected}  {' '.join(r['origins'])}"
        )
    _emit(rows, as_json, "\n".join(lines) if rows else "no usage recorded yet")


# -- keys ------------------------------------------------------------------------------


@main.group("client-key")
def client_key() -> None:
    """The application's Client Key (public, one live key per app)."""


def _key_command(
    group: click.Group,
    name: str,
    help_text: str,
    with_seconds: str | None,
    action: Callable[[Services, str, int], Awaitable[Any]],
    field: str,
) -> None:
    @click.argument("ref", metavar="APP")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def command(ctx: click.Context, ref: str, as_json: bool, **kw: Any) -> None:
        seconds = int(kw.get("seconds") or 0)
        if seconds < 0:
            raise click.BadParameter("must not be negative")

        async def go(svc: Services) -> Any:
            app_id = await svc.apps.resolve(ref)
            return app_id, await action(svc, app_id, seconds)

        app_id, value = _call(ctx, go)
        data = {"app": app_id, field: value}
        _emit(data, as_json, str(value) if value is not None else f"{name}: done")

    if with_seconds:
        command = click.option(
            f"--{with_seconds}",
            "seconds",
            type=int,
            default=0,
            help="Seconds the old key keeps working",
        )(command)
    group.command(name, help=help_text)(command)


_key_command(
    client_key,
    "show",
    "Print the live Client Key.",
    None,
    lambda svc, app_id, _s: svc.keys.client_key(app_id),
    "clientKey",
)
_key_command(
    client_key,
    "revoke",
    "Revoke the Client Key at once (or after --grace), and end any rotation grace.",
    "grace",
    lambda svc, app_id, s: svc.keys.revoke_client_key(app_id, s),
    "revokedKeyIds",
)
_key_command(
    client_key,
    "end-grace",
    "End at once the grace of keys rotated out; the live key keeps working.",
    None,
    lambda svc, app_id, _s: svc.keys.revoke_client_key(app_id, rotated_only=True),
    "revokedKeyIds",
)
_key_command(
    client_key,
    "generate",
    "Issue a new Client Key (revoke the old one first).",
    None,
    lambda svc, app_id, _s: svc.keys.generate_client_key(app_id),
    "clientKey",
)
_key_command(
    client_key,
    "rotate",
    "Revoke + generate; the old key works --grace seconds.",
    "grace",
    lambda svc, app_id, s: svc.keys.rotate_client_key(app_id, s),
    "clientKey",
)


@main.group("api-key")
def api_key() -> None:
    """The application's secret API Key."""


_key_command(
    api_key,
    "rotate",
    "Issue a new API Key; the old one stops (or after --overlap).",
    "overlap",
    lambda svc, app_id, s: svc.keys.rotate_api_key(app_id, s),
    "apiKey",
)
_key_command(
    api_key,
    "revoke",
    "Revoke every API Key of the app at once.",
    None,
    lambda svc, app_id, _s: svc.keys.revoke_api_keys(app_id),
    "revokedCount",
)


# -- dashboard operators ----------------------------------------------------------------


@main.group()
def operator() -> None:
    """Dashboard accounts (the dashboard is at /dashboard)."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@operator.command("create")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input")
@click.option(
    "--owns-all", is_flag=True, help="Also make it the owner of every app that has no owner"
)
@click.pass_context
def operator_create(ctx: click.Context, email: str, password_stdin: bool, owns_all: bool) -> None:
    """Create a dashboard account (the password is prompted for)."""
    password = _read_password(password_stdin)

    async def create(svc: Services) -> tuple[str, int]:
        account = await svc.operators.create(email, password)
        adopted = await svc.operators.adopt_unowned(account.id) if owns_all else 0
        return account.email, adopted

    created, adopted = _call(ctx, create)
    click.echo(f"Created the dashboard account {created}")
    if owns_all:
        click.echo(f"  it now owns {adopted} application(s) that had no owner")


@operator.command("grant")
@click.argument("email")
@click.argument("ref", metavar="APP")
@click.pass_context
def operator_grant(ctx: click.Context, email: str, ref: str) -> None:
    """Make an account the owner of an application (by id or name)."""

    async def grant(svc: Services) -> str:
        account = await svc.operators.find(email)
        app_id = await svc.apps.resolve(ref)
        await svc.operators.assign(account.id, app_id)
        return app_id

    click.echo(f"{email} now owns {_call(ctx, grant)}")


@operator.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input")
@click.pass_context
def operator_set_password(ctx: click.Context, email: str, password_stdin: bool) -> None:
    """Set an account's password (a forgotten one); its sessions end."""
    password = _read_password(password_stdin)

    async def reset(svc: Services) -> None:
        await svc.operators.set_password((await svc.operators.find(email)).id, password)

    _call(ctx, reset)
    click.echo(f"Password set for {email}; its sessions have ended")
