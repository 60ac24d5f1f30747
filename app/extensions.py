"""Extensions, created unbound here and bound to an app by ``create_app``.

The API object (``OmsApi``) lives with the API, in ``app.api.routes``: this module is below every
room that uses it and imports none of them."""

from __future__ import annotations

from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from app.domain import models as _models  # noqa: F401  (registers every table)
from app.domain.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
jwt = JWTManager()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
