"""Flask CLI commands (``flask --app app <command>``), registered from the factory."""

from __future__ import annotations

import contextlib

import click
from flask import Flask
from flask.cli import with_appcontext


@click.command("relay-outbox")
@with_appcontext
def relay_outbox_command() -> None:
    """Publish undelivered outbox messages to the queue now."""
    from app.services.dispatch import relay_outbox

    click.echo(f"relayed {relay_outbox()} message(s)")


@click.command("create-admin")
@click.option("--email", required=True, help="The admin's email (an existing account is promoted).")
@click.option("--password", required=True, help="Its password (at least 8 characters).")
@click.option("--name", default="Administrator", show_default=True, help="The name of a new account.")
@with_appcontext
def create_admin_command(email: str, password: str, name: str) -> None:
    """Create an admin account, or promote an existing one (and set its password); prints its id."""
    from app.domain.errors import DomainError
    from app.services.users import create_admin

    try:
        user, created = create_admin(email, password, name)
    except DomainError as exc:
        errors = exc.extra.get("errors") or {}
        details = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        raise click.ClickException(f"{exc.detail}{': ' + details if details else ''}") from exc
    click.echo(f"{'created' if created else 'promoted'} admin {user.email}", err=True)
    click.echo(str(user.id))


@click.command("seed-demo")
@with_appcontext
def seed_demo_command() -> None:
    """Load the demo customer and products unless they are already there (safe to run again)."""
    from app.services.demo import seed_demo

    done = seed_demo()
    for line in done:
        click.echo(line)
    click.echo(f"demo data: {len(done)} item(s) created" if done else "demo data already present")


@click.command("payments-sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=12111, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--webhook-url",
    default=None,
    help="Send every state change as a Stripe-signed event here "
    "(e.g. http://127.0.0.1:5000/webhooks/stripe); "
    "signed with SANDBOX_WEBHOOK_SECRET [whsec_sandbox].",
)
def payments_sandbox_command(host: str, port: int, webhook_url: str | None) -> None:
    """Serve the Stripe-compatible payment sandbox (development and tests only; state in memory)."""
    from app.config import Settings
    from app.payments_sandbox import SandboxServer

    secret = Settings.from_env().SANDBOX_WEBHOOK_SECRET
    server = SandboxServer(host, port, webhook_url=webhook_url, webhook_secret=secret)
    click.echo(f"payment sandbox listening on {server.url}", err=True)
    if webhook_url:
        click.echo(f"payment sandbox sends its events to {webhook_url}", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


@click.command("reconcile-stock")
@with_appcontext
def reconcile_stock_command() -> None:
    """Expire unpaid orders and correct stock to the ledger now, with a progress bar."""
    from typing import Any

    from flask import current_app

    from app.services.reconciliation import run_reconciliation

    bars: dict[str, Any] = {}  # the bar of the current phase

    def progress(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            for previous in bars.values():
                previous.__exit__(None, None, None)
            bars.clear()
            bar = bars[phase] = click.progressbar(length=max(total, 1), label=phase, show_pos=True)
            bar.__enter__()
        bar.update(max(0, min(done, total) - bar.pos))

    try:
        run = run_reconciliation(
            payment_timeout_seconds=int(current_app.config["PAYMENT_PENDING_TIMEOUT_SECONDS"]),
            progress=progress,
        )
    finally:
        for bar in bars.values():
            bar.__exit__(None, None, None)
    if run is None:
        raise click.ClickException("another reconciliation is running; try again later")
    click.echo(
        f"reconciliation {run.id}: {run.status}, {run.products_checked} product(s) checked, "
        f"{run.orders_expired} order(s) expired, {len(run.discrepancies)} discrepancy(ies) corrected"
    )
    for d in run.discrepancies:
        click.echo(f"  {d['productId']}: stock {d['stockBefore']} -> {d['stockAfter']}")


def register_cli(app: Flask) -> None:
    for command in (relay_outbox_command, create_admin_command, seed_demo_command, payments_sandbox_command):
        app.cli.add_command(command)
    app.cli.add_command(reconcile_stock_command)
