"""Flask CLI commands (``flask --app app <command>``), registered from the factory."""

from __future__ import annotations

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


def register_cli(app: Flask) -> None:
    for command in (relay_outbox_command,):
        app.cli.add_command(command)
