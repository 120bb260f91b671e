"""The ``tidings`` command line."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from tidings.core.errors import AppError, ConfigurationError
from tidings.settings import Settings, get_settings

app = typer.Typer(
    help="Tidings: a self-hostable backend for social sharing.",
    no_args_is_help=True,
    add_completion=False,
)
users_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage token-signing keys.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        console.print(f"[red]Invalid configuration:[/red]\n{exc}")
        raise typer.Exit(2) from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    ssl_certfile: Annotated[str | None, typer.Option(help="TLS certificate (PEM).")] = None,
    ssl_keyfile: Annotated[str | None, typer.Option(help="TLS private key (PEM).")] = None,
) -> None:
    """Serve the HTTP API with uvicorn (migrates first when TIDINGS_AUTO_MIGRATE allows)."""
    import uvicorn

    from tidings.core.keys import load_key_material
    from tidings.core.migrate import upgrade

    settings = _settings()
    try:
        load_key_material(settings)  # fail fast on missing secrets, before forking workers
    except ConfigurationError as exc:
        console.print(f"[red]Refusing to start:[/red] {exc}")
        raise typer.Exit(2) from exc
    if settings.should_auto_migrate:
        upgrade(settings.effective_database_url)
    console.print(f"Tidings on http://{host}:{port} — database {settings.effective_database_url}")
    uvicorn.run(
        "tidings.app:create_app", factory=True, host=host, port=port, workers=workers,
        ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, proxy_headers=False,
        server_header=False, log_config=None,
    )


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations (Alembic) up to REVISION."""
    from tidings.core.migrate import upgrade

    settings = _settings()
    upgrade(settings.effective_database_url, revision)
    console.print(f"[green]Migrated[/green] {settings.effective_database_url} to {revision}")


@users_app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Option(help="Username (3-30 letters, digits, _).")],
    email: Annotated[str, typer.Option(help="Email address.")],
    password: Annotated[
        str | None, typer.Option(help="Password; prompted for (hidden) when omitted.")
    ] = None,
) -> None:
    """Create an administrator account."""
    from tidings.accounts.schemas import RegisterRequest

    if password is None:
        if not sys.stdin.isatty() and os.environ.get("CI"):
            console.print("[red]--password is required without a terminal[/red]")
            raise typer.Exit(2)
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        cmd = RegisterRequest(username=username, email=email, password=password)
    except ValidationError as exc:
        for err in exc.errors():
            console.print(f"[red]{'.'.join(map(str, err['loc']))}: {err['msg']}[/red]")
        raise typer.Exit(2) from exc
    try:
        user_id = asyncio.run(_create_admin(_settings(), cmd))
    except AppError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"[green]Created admin[/green] {username} (id {user_id})")


async def _create_admin(settings: Settings, cmd: object) -> int:
    from tidings.accounts.schemas import RegisterRequest
    from tidings.accounts.service import create_admin as create
    from tidings.core.db import Database
    from tidings.core.security import PasswordHasher

    assert isinstance(cmd, RegisterRequest)
    db = Database(settings.effective_database_url, pool_size=1)
    try:
        async with db.unit_of_work(write=True) as session:
            user = await create(session, PasswordHasher(), cmd)
            return user.id
    finally:
        await db.dispose()


@keys_app.command("rotate")
def rotate_keys(
    keep: Annotated[int, typer.Option(min=2, help="Keys kept for verification.")] = 3,
) -> None:
    """Start signing with a new key; older ones keep verifying until dropped."""
    from tidings.core.keys import rotate_signing_keys

    kid = rotate_signing_keys(_settings(), keep=keep)
    console.print(f"[green]New signing key[/green] {kid}; restart the API to use it.")


@keys_app.command("generate")
def generate_keys() -> None:
    """Print a fresh private JWK set for TIDINGS_SIGNING_KEYS (production)."""
    import json

    from joserfc.jwk import KeySet

    from tidings.core.keys import new_signing_key

    typer.echo(json.dumps(KeySet([new_signing_key()]).as_dict(private=True)))


def main() -> None:
    app()
