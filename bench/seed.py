"""Bench data, written straight in SQL (seconds, not minutes): users with carts, products with
their ledger, filled carts, and the access tokens the load generator uses.

Ids are computable, so that the pgbench replay of a checkout can name the same rows the HTTP
load uses: ``bench_id(kind, n)`` = ``KKKKKKKK-0000-4000-8000-NNNNNNNNNNNN`` (kind and n in hex),
both as a SQL function in the bench database and as :func:`bench_uuid` here.
User ``n`` has cart ``bench_id(CART, n)``; line ``j`` of its cart is product
``(n * PRODUCT_STRIDE + j) % products``, so a 1-line cart holds product ``n * PRODUCT_STRIDE % products``.
Paid order ``n`` (the shipments phase) is ``bench_id(ORDER, n)`` with payment ``bench_id(PAYMENT, n)``
and one line of 2 units of product ``n * PRODUCT_STRIDE % products``.
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

USER, CART, PRODUCT, SEED_MOVEMENT, ORDER, PAYMENT = 1, 2, 3, 4, 5, 6
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


def seed_paid_orders(conn: psycopg.Connection, first: int, count: int, users: int, products: int) -> None:
    """Orders ``first .. first+count-1``: PLACED, one line of 2 units, payment COMPLETED (charged
    through the gateway: it has a reference), nothing shipped; order ``n`` belongs to user
    ``n % users``. What an admin ships next."""
    params = {
        "okind": ORDER,
        "ukind": USER,
        "pkind": PRODUCT,
        "paykind": PAYMENT,
        "stride": PRODUCT_STRIDE,
        "products": products,
        "users": users,
        "first": first,
        "last": first + count - 1,
    }
    conn.execute(
        """
        INSERT INTO orders (id, user_id, status, order_date, total_amount, currency, version,
                            updated_at, shipping_address)
        SELECT bench_id(%(okind)s::int, g), bench_id(%(ukind)s::int, g %% %(users)s::bigint), 'PLACED',
               now(), 2 * p.price, 'USD', 1, now(),
               jsonb_build_object('line1', g || ' Bench Street', 'city', 'Benchville',
                                  'postalCode', '12345', 'country', 'US')
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
        JOIN products p ON p.id = bench_id(%(pkind)s::int, (g * %(stride)s::bigint) %% %(products)s::bigint)
        """,
        params,
    )
    conn.execute(
        """
        INSERT INTO order_items (order_id, product_id, product_name, quantity, unit_price, line_total,
                                 quantity_shipped, quantity_returned)
        SELECT o.id, p.id, p.name, 2, p.price, 2 * p.price, 0, 0
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
        JOIN orders o ON o.id = bench_id(%(okind)s::int, g)
        JOIN products p ON p.id = bench_id(%(pkind)s::int, (g * %(stride)s::bigint) %% %(products)s::bigint)
        """,
        params,
    )
    conn.execute(
        """
        INSERT INTO payments (id, order_id, amount, currency, status, method, payment_token,
                              gateway_reference, attempts, charge_round, created_at, updated_at)
        SELECT bench_id(%(paykind)s::int, g), o.id, o.total_amount, 'USD', 'COMPLETED', 'CREDIT_CARD',
               'pm_card_visa', 'pi_bench_' || g, 1, 1, now(), now()
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
        JOIN orders o ON o.id = bench_id(%(okind)s::int, g)
        """,
        params,
    )
    for table in ("orders", "order_items", "payments"):
        conn.execute(f"ANALYZE {table}")


def unship_paid_orders(conn: psycopg.Connection, first: int, count: int) -> None:
    """Orders ``first .. first+count-1`` back to paid and unshipped (their shipments, shipping
    history and outbox messages gone), for the next measurement."""
    span = {"lo": bench_uuid(ORDER, first), "hi": bench_uuid(ORDER, first + count - 1)}
    conn.execute("DELETE FROM shipments WHERE order_id BETWEEN %(lo)s AND %(hi)s", span)
    conn.execute("DELETE FROM order_status_history WHERE order_id BETWEEN %(lo)s AND %(hi)s", span)
    conn.execute(
        "UPDATE order_items SET quantity_shipped = 0 WHERE order_id BETWEEN %(lo)s AND %(hi)s "
        "AND quantity_shipped <> 0",
        span,
    )
    conn.execute(
        "UPDATE orders SET status = 'PLACED', version = 1 WHERE id BETWEEN %(lo)s AND %(hi)s "
        "AND version <> 1",
        span,
    )
    conn.execute("DELETE FROM outbox WHERE event_type = 'OrderShipped'")
    conn.execute("VACUUM (ANALYZE) orders, order_items, shipments, shipment_items, order_status_history")


def write_tokens(app: object, path: Path, first: int, count: int) -> Path:
    """One line per user: ``userId<TAB>cartId<TAB>accessToken`` (tokens signed by the app itself)."""
    from app.api.security import issue_token

    with app.app_context(), path.open("w") as out:  # type: ignore[attr-defined]
        for n in range(first, first + count):
            user = SimpleNamespace(id=bench_uuid(USER, n), role="customer", token_version=1)
            token, _ = issue_token(user)  # type: ignore[arg-type]
            out.write(f"{bench_uuid(USER, n)}\t{bench_uuid(CART, n)}\t{token}\n")
    return path
