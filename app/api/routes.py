"""Every blueprint the API serves, registered in one place."""

from __future__ import annotations

from flask_smorest import Api


def register_blueprints(api: Api) -> None:
    from app.api import ops

    for blueprint in (ops.blp,):
        api.register_blueprint(blueprint)
