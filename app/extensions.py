"""Extensions, created unbound here and bound to an app by ``create_app``."""

from __future__ import annotations

from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from app.api.openapi import OmsApi
from app.domain import models as _models  # noqa: F401  (registers every table)
from app.domain.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
api = OmsApi()
jwt = JWTManager()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
