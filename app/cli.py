"""Flask CLI commands (``flask --app app <command>``), registered from the factory."""

from __future__ import annotations

import contextlib

import click
from flask import Flask
from flask.cli import with_appcontext

from app.extensions import db


@click.command("relay-outbox")
@with_appcontext
def relay_outbox_command() -> None:
    """Publish undelivered outbox messages to the queue now."""
    from app.services.outbox import relay_outbox

    click.echo(f"relayed {relay_outbox(db.session)} message(s)")


@click.command("payments-sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=12111, show_default=True, type=int, help="Port to listen on.")
def payments_sandbox_command(host: str, port: int) -> None:
    """Serve the Stripe-compatible payment sandbox (development and tests only; state in memory)."""
    from app.payments_sandbox import SandboxServer

    server = SandboxServer(host, port)
    click.echo(f"payment sandbox listening on {server.url}", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def register_cli(app: Flask) -> None:
    for command in (relay_outbox_command, payments_sandbox_command):
        app.cli.add_command(command)
