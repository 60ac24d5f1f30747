"""The error mapping of app/api/errors.py on a probe app with routes that fail on purpose."""

import marshmallow as ma
import pytest
from flask import Flask
from sqlalchemy import exc as sa_exc
from webargs.flaskparser import use_args

from app.api.errors import PROBLEM_JSON, register_error_handlers
from app.domain import errors as d
from app.observability import init_observability


class Address(ma.Schema):
    city = ma.fields.String(required=True)


class Probe(ma.Schema):
    quantity = ma.fields.Integer(required=True, validate=ma.validate.Range(1, 1000))
    address = ma.fields.Nested(Address, required=True)


@pytest.fixture
def probe():
    app = Flask("probe")
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    init_observability(app)
    register_error_handlers(app)

    @app.post("/echo")
    @use_args(Probe(), location="json")
    def echo(args):
        return {"ok": True}

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    @app.get("/stock")
    def stock():
        raise d.InsufficientStock([{"productId": "p", "requested": 3, "available": 1}])

    @app.get("/version")
    def version():
        raise d.VersionConflict(4)

    @app.get("/db-down")
    def db_down():
        raise sa_exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    @app.get("/feature")
    def feature():
        raise d.FeatureDisabled("checkout is switched off")

    return app.test_client()


def body_of(response, status):
    assert response.status_code == status
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]
    return body


def test_malformed_json_is_400(probe):
    body_of(probe.post("/echo", data="{not json", content_type="application/json"), 400)


def test_validation_errors_are_422_keyed_by_field_without_location(probe):
    body = body_of(probe.post("/echo", json={"quantity": 0, "address": {}, "extra": 1}), 422)
    assert set(body["errors"]) == {"quantity", "address", "extra"}
    assert "city" in body["errors"]["address"]
    assert "json" not in body["errors"]


def test_body_over_one_mebibyte_is_413(probe):
    body_of(probe.post("/echo", data=b"{" + b" " * (1024 * 1024), content_type="application/json"), 413)


def test_unexpected_exception_is_a_500_problem_without_internals(probe):
    response = probe.get("/boom")
    body = body_of(response, 500)
    assert "secret internals" not in response.get_data(as_text=True)
    assert body["detail"]


def test_insufficient_stock_lists_every_short_line(probe):
    body = body_of(probe.get("/stock"), 409)
    assert body["errors"] == [{"productId": "p", "requested": 3, "available": 1}]


def test_version_conflict_reports_the_current_version(probe):
    assert body_of(probe.get("/version"), 409)["currentVersion"] == 4


def test_database_down_is_503_with_retry_after(probe):
    response = probe.get("/db-down")
    body_of(response, 503)
    assert int(response.headers["Retry-After"]) > 0


def test_disabled_feature_is_503(probe):
    response = probe.get("/feature")
    assert body_of(response, 503)["detail"] == "checkout is switched off"
    assert response.headers["Retry-After"]
