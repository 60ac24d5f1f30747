"""What every request runs besides its view, decided once per process rather than per request.

- No cookie session: the API authenticates with bearer tokens and never uses ``flask.session``,
  yet Flask's default session interface built a signing serializer and parsed the cookies of
  every request to open an empty one.
- Flask-Limiter's ``before_request`` hook evaluates only application, default, blueprint and meta
  limits; every limit here is declared on its view (``@limiter.limit``), whose decorator checks it
  when the view runs. With none of the others declared, the hook resolved an empty set of limits
  on every request (6 % of a ``GET /products/{id}``: docs/bench/README.md), so it is unhooked.
  Should such a limit ever be declared, the hook stays.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface
from flask_limiter import Limiter


class NoCookieSession(SessionInterface):
    """Every request gets Flask's null session (reading it is empty, writing to it fails)."""

    def open_session(self, app: Flask, request: Request) -> None:
        return None

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        return None


def limiter_hook_needed(limiter: Limiter) -> bool:
    """Whether any limit exists that only the limiter's ``before_request`` hook would check."""
    manager = limiter.limit_manager
    return bool(
        manager.application_limits
        or manager.default_limits
        or any(manager._blueprint_limits.values())
        or limiter._meta_limits
    )


def init_middleware(app: Flask, limiter: Limiter) -> None:
    """Call once every blueprint (and so every limit) is registered."""
    app.session_interface = NoCookieSession()
    if not limiter_hook_needed(limiter):
        hooks = app.before_request_funcs.get(None, [])
        if limiter._check_request_limit in hooks:
            hooks.remove(limiter._check_request_limit)
