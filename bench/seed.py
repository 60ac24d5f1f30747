"""Bench data, written straight in SQL (seconds, not minutes): users with carts, products with
their ledger, filled carts, and the access tokens the load generator uses.

Ids are computable, so that the pgbench replay of a checkout can name the same rows the HTTP
load uses: ``bench_id(kind, n)`` = ``KKKKKKKK-0000-4000-8000-NNNNNNNNNNNN`` (kind and n in hex),
both as a SQL function in the bench database and as :func:`bench_uuid` here.
User ``n`` has cart ``bench_id(CART, n)``; line ``j`` of its cart is product
``(n * PRODUCT_STRIDE + j) % products``, so a 1-line cart holds product ``n * PRODUCT_STRIDE % products``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import psycopg
from sqlalchemy.engine import make_url

USER, CART, PRODUCT, SEED_MOVEMENT = 1, 2, 3, 4
PRODUCT_STRIDE = 7919  # a prime: consecutive users land on scattered products
SEED_STOCK = 50_000_000  # never runs out during a bench; stock must stay < 2**31
BENCH_PASSWORD = "bench-password-1"  # noqa: S105 (a bench fixture)
_BENCH_ID = re.compile(r"^([0-9a-f]{8})-0000-4000-8000-([0-9a-f]{12})$")


def bench_uuid(kind: int, n: int) -> uuid.UUID:
    return uuid.UUID(f"{kind:08x}-0000-4000-8000-{n:012x}")


def parse_bench_uuid(value: uuid.UUID) -> tuple[int, int] | None:
    match = _BENCH_ID.match(str(value))
    return (int(match.group(1), 16), int(match.group(2), 16)) if match else None


def product_of(user_n: int, products: int, line: int = 0) -> int:
    return (user_n * PRODUCT_STRIDE + line) % products


def libpq_url(url: str) -> str:
    """A URL psycopg/libpq/pgbench accept (no SQLAlchemy driver suffix, no ``postgres://``)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    return make_url(libpq_url(url)).set(database=name).render_as_string(hide_password=False)


def recreate_database(base_url: str, name: str) -> str:
    """Drop and create ``name`` on the server of ``base_url``; returns its URL."""
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"bad database name {name!r}")
    with psycopg.connect(libpq_url(base_url), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return with_database(base_url, name)


def drop_database(base_url: str, name: str) -> None:
    with psycopg.connect(libpq_url(base_url), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def connect(url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        yield conn


def install_helpers(conn: psycopg.Connection) -> None:
    """``bench_id(kind, n)``, an inlinable SQL function, and outbox ids far above small integers
    (so that the SQL capture can tell an outbox id from a quantity)."""
    conn.execute(
        """
        CREATE OR REPLACE FUNCTION bench_id(kind integer, n bigint) RETURNS uuid
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
        $$ SELECT (lpad(to_hex(kind), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid $$
        """
    )
    conn.execute("SELECT setval(pg_get_serial_sequence('outbox', 'id'), 1000000000)")


def seed_products(
    conn: psycopg.Connection, count: int, stock: int = SEED_STOCK, drift_every: int = 0
) -> None:
    """``count`` products, each with a RESTOCK ledger row equal to its stock; with ``drift_every``,
    every such product's stock is off its ledger by one (work for the reconciliation)."""
    conn.execute(
        """
        INSERT INTO products (id, name, description, price, stock, created_at, updated_at)
        SELECT bench_id(%(kind)s::int, g), 'Bench product ' || g, 'A product made by the bench',
               (5 + g %% 95) + 0.99,
               %(stock)s::int + CASE WHEN %(drift)s::int > 0 AND g %% %(drift)s::int = 0 THEN 1 ELSE 0 END,
               now(), now()
        FROM generate_series(0, %(count)s::bigint - 1) AS g
        """,
        {"kind": PRODUCT, "stock": stock, "count": count, "drift": drift_every},
    )
    conn.execute(
        """
        INSERT INTO stock_movements (id, product_id, delta, reason, note, stock_after, created_at)
        SELECT bench_id(%(mkind)s::int, g), bench_id(%(pkind)s::int, g), %(stock)s::int, 'RESTOCK',
               'bench seed', %(stock)s::int, now()
        FROM generate_series(0, %(count)s::bigint - 1) AS g
        """,
        {"mkind": SEED_MOVEMENT, "pkind": PRODUCT, "stock": stock, "count": count},
    )
    conn.execute("ANALYZE products")
    conn.execute("ANALYZE stock_movements")


def seed_users(conn: psycopg.Connection, first: int, count: int, password_hash: str) -> None:
    """Customers ``first .. first+count-1``, each with an (empty) cart."""
    conn.execute(
        """
        INSERT INTO users
            (id, email, name, password_hash, address, role, token_version, created_at, updated_at)
        SELECT bench_id(%(ukind)s::int, g), 'bench' || g || '@bench.example.com', 'Bench customer ' || g,
               %(hash)s,
               jsonb_build_object('line1', g || ' Bench Street', 'city', 'Benchville',
                                  'postalCode', '12345', 'country', 'US'),
               'customer', 1, now(), now()
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
        """,
        {"ukind": USER, "hash": password_hash, "first": first, "last": first + count - 1},
    )
    conn.execute(
        """
        INSERT INTO carts (id, user_id, created_at, updated_at)
        SELECT bench_id(%(ckind)s::int, g), bench_id(%(ukind)s::int, g), now(), now()
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
        """,
        {"ckind": CART, "ukind": USER, "first": first, "last": first + count - 1},
    )
    conn.execute("ANALYZE users")
    conn.execute("ANALYZE carts")


def fill_carts(conn: psycopg.Connection, first: int, count: int, lines: int, products: int) -> int:
    """Give users ``first .. first+count-1`` their ``lines``-line cart again (quantity 1 each);
    lines still there are kept. Returns the number of lines added."""
    cur = conn.execute(
        """
        INSERT INTO cart_items (cart_id, product_id, quantity, added_at)
        SELECT bench_id(%(ckind)s::int, g),
               bench_id(%(pkind)s::int, (g * %(stride)s::bigint + j) %% %(products)s::bigint), 1, now()
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
             generate_series(0, %(lines)s::bigint - 1) AS j
        ON CONFLICT DO NOTHING
        """,
        {
            "ckind": CART,
            "pkind": PRODUCT,
            "stride": PRODUCT_STRIDE,
            "products": products,
            "first": first,
            "last": first + count - 1,
            "lines": lines,
        },
    )
    return cur.rowcount


def write_tokens(app: object, path: Path, first: int, count: int) -> Path:
    """One line per user: ``userId<TAB>cartId<TAB>accessToken`` (tokens signed by the app itself)."""
    from app.api.security import issue_token

    with app.app_context(), path.open("w") as out:  # type: ignore[attr-defined]
        for n in range(first, first + count):
            user = SimpleNamespace(id=bench_uuid(USER, n), role="customer", token_version=1)
            token, _ = issue_token(user)  # type: ignore[arg-type]
            out.write(f"{bench_uuid(USER, n)}\t{bench_uuid(CART, n)}\t{token}\n")
    return path
