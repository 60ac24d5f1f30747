"""JSON log lines on stdout (structlog), each carrying the request id of its request or task.

Our own log calls take structlog's native path: a filtering bound logger (a call below the level
is a no-op method), cached on first use, whose processors render the JSON line and write it
straight to stdout. No stdlib ``LogRecord``, handler or formatter per line: going through the
stdlib bridge was most of what one access-log line cost (docs/bench/README.md). Libraries that log
through the stdlib (gunicorn, Celery, SQLAlchemy …) are rendered to the same JSON shape by one
stdlib handler.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars, get_contextvars

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_configured_level: int | None = None
_stdlib_handler: logging.Handler | None = None


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's line writer (one locked write per line), with the name it was asked for."""

    def __init__(self, file: Any, name: str | None) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    def __init__(self, file: Any) -> None:
        self.file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        return _NamedWriteLogger(self.file, str(args[0]) if args and args[0] else None)


def _add_logger_name(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    name = getattr(logger, "name", None)
    if name:
        event_dict["logger"] = name
    return event_dict


def configure_logging(level: str = "INFO") -> None:
    """Our loggers on structlog's native path and stdlib logging through one JSON formatter, both
    on stdout. Idempotent; a new level applies to the loggers not yet used (they are cached on
    first use, and every process configures once, at start-up)."""
    global _configured_level, _stdlib_handler
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.INFO
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    if numeric != _configured_level:
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                _add_logger_name,
                timestamper,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(numeric),
            # The stream now, explicitly: Celery later swaps sys.stdout for a logging proxy.
            logger_factory=_NamedWriteLoggerFactory(sys.stdout),
            cache_logger_on_first_use=True,
        )
        _configured_level = numeric
    if _stdlib_handler is None:
        _stdlib_handler = logging.StreamHandler(sys.stdout)
        _stdlib_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[
                    structlog.contextvars.merge_contextvars,
                    structlog.stdlib.add_log_level,
                    structlog.stdlib.add_logger_name,
                    timestamper,
                ],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(),
                ],
            )
        )
        logging.getLogger().handlers[:] = [_stdlib_handler]
    logging.getLogger().setLevel(numeric)
    # Werkzeug's own access lines duplicate ours.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # stripe-python logs every request and response at INFO (four lines per payment in the worker,
    # each through the JSON handler: a visible share of its CPU, docs/bench); our own lines name
    # the gateway call already. Its warnings and errors still show.
    logging.getLogger("stripe").setLevel(max(numeric, logging.WARNING))


def get_logger(name: str | None = None) -> Any:
    """A logger whose lines carry ``"logger": name``, as the stdlib's carry their logger's name."""
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
