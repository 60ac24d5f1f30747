"""The framework floor: bare Flask + psycopg running the same SQL as the real reads.

``GET /products/<id>`` and ``GET /orders/<id>`` replay, transaction by transaction, the statements
that the application issued for the same request (recorded by the bench into the JSON file named
by ``FLOOR_QUERIES``), with the path's id as the only parameter, and answer the rows as JSON. No
auth, no schemas, no ORM, no logging: what is left is Flask routing, psycopg and the database, under
the same gunicorn settings as the application (``gunicorn 'bench.floor_app:create_app()' --config
gunicorn.conf.py``). One connection per gunicorn thread, as the app's pool gives each thread one.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Any

import psycopg
from flask import Flask, Response

_local = threading.local()


def _connection(url: str) -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(url)
        _local.conn = conn
    return conn


def create_app() -> Flask:
    url = os.environ["FLOOR_DATABASE_URL"]
    with open(os.environ["FLOOR_QUERIES"]) as f:
        queries: dict[str, list[dict[str, Any]]] = json.load(f)
    app = Flask(__name__)

    def replay(name: str, ident: uuid.UUID) -> Response:
        conn = _connection(url)
        rows: list[Any] = []
        for txn in queries[name]:
            # Statements the app ran outside a transaction run so here too (no BEGIN/ROLLBACK).
            conn.autocommit = txn["end"] == "autocommit"
            with conn.cursor() as cur:
                for sql in txn["statements"]:
                    cur.execute(sql, {"id": ident})
                    if cur.description is not None:
                        rows.extend(cur.fetchall())
            if txn["end"] == "commit":
                conn.commit()
            elif txn["end"] == "rollback":
                conn.rollback()
        if not rows:
            return Response('{"status": 404}', status=404, mimetype="application/json")
        return Response(json.dumps(rows, default=str), mimetype="application/json")

    @app.get("/products/<uuid:product_id>")
    def product(product_id: uuid.UUID) -> Response:
        return replay("product", product_id)

    @app.get("/orders/<uuid:order_id>")
    def order(order_id: uuid.UUID) -> Response:
        return replay("order", order_id)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("{}", mimetype="application/json")

    return app
