"""Jinja templates of the notification e-mails (``app/templates/email/``).

Each event has a plain-text template, ``<event_in_snake_case>.txt``, that sets ``subject`` and
renders the body; the body is stored on the notification. The HTML alternative is the stored body
laid out by ``message.html`` at delivery time, so both parts always say the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("app", "templates/email"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def template_name(event_name: str) -> str:
    """``OrderPlaced`` → ``order_placed.txt``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", event_name).lower() + ".txt"


def has_template(event_name: str) -> bool:
    return template_name(event_name) in _environment().list_templates()


def render_email(event_name: str, context: dict[str, Any]) -> RenderedEmail:
    module = _environment().get_template(template_name(event_name)).make_module(context)
    subject = " ".join(str(getattr(module, "subject", event_name)).split())
    text = re.sub(r"\n{3,}", "\n\n", str(module).strip()) + "\n"
    return RenderedEmail(subject=subject[:255], text=text)


def render_html(subject: str, text: str, notification_id: str) -> str:
    """The HTML alternative of a stored plain-text body (escaped; blank lines split paragraphs)."""
    paragraphs = [block.splitlines() for block in re.split(r"\n\s*\n", text.strip()) if block.strip()]
    return (
        _environment()
        .get_template("message.html")
        .render(subject=subject, paragraphs=paragraphs, notification_id=notification_id)
    )
