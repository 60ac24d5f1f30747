"""Swagger UI's assets, served by the app itself (PyPI's swagger-ui-bundle), so /docs works offline."""

from __future__ import annotations

from flask import Blueprint, Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from app.api.security import public

ASSETS_URL = "/docs/assets/"  # OPENAPI_SWAGGER_UI_URL: the page loads its CSS and JS from here

blp = Blueprint("docs-assets", __name__)


@blp.route(ASSETS_URL + "<path:filename>")
@public
def asset(filename: str) -> Response:
    """One file of the bundled Swagger UI (versioned with the lock: cacheable for a day)."""
    return send_from_directory(str(swagger_ui_path), filename, max_age=86400)
