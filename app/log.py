"""JSON log lines on stdout (structlog), each carrying the request id of its request or task."""

from __future__ import annotations

import logging
import re
import sys
import uuid
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars, get_contextvars

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_configured = False


def configure_logging(level: str = "INFO") -> None:
    """Route stdlib logging and structlog through one JSON renderer on stdout."""
    global _configured
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if not _configured:
        structlog.configure(
            processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=True,
        )
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=shared,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(),
                ],
            )
        )
        root = logging.getLogger()
        root.handlers[:] = [handler]
        _configured = True
    logging.getLogger().setLevel(level)
    # Werkzeug's own access lines duplicate ours.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)


def clean_request_id(candidate: str | None) -> str:
    """Use the caller's X-Request-ID when it is sane, else make one."""
    if candidate and _REQUEST_ID.match(candidate):
        return candidate
    return uuid.uuid4().hex


def bind_request_id(request_id: str | None) -> None:
    clear_contextvars()
    if request_id:
        bind_contextvars(request_id=request_id)


def current_request_id() -> str | None:
    value = get_contextvars().get("request_id")
    return str(value) if value else None
