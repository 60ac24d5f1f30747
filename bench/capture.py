"""What SQL does one request really issue? Record it, then replay it without the application.

:class:`SqlRecorder` listens on the application's engine (``before_cursor_execute`` plus the
transaction events) while a request runs through the Flask test client — the same app, the same
views and services as under gunicorn. :func:`pgbench_script` turns a checkout's recording into a
pgbench custom script: the same transactions with the same statements, where the values that
belong to one checkout (user, cart, product, the new order's ids, the Idempotency-Key, timestamps,
the outbox id) become per-transaction pgbench expressions, so that every replayed transaction
places a different user's order. :func:`floor_queries` turns a read's recording into the SQL the
framework-floor app runs.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from bench.seed import CART, ORDER, PAYMENT, PRODUCT, USER, parse_bench_uuid

_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s|%s")
_OUTBOX_INSERT = re.compile(r"^INSERT INTO outbox .* RETURNING outbox\.id$", re.IGNORECASE)


@dataclass
class Step:
    kind: str  # "sql", "begin", "commit", "rollback"
    statement: str = ""
    parameters: Any = None
    executemany: bool = False
    autocommit: bool = False  # the driver ran it outside a transaction (the app's reads)


@dataclass
class SqlRecorder:
    engine: Engine
    steps: list[Step] = field(default_factory=list)
    recording: bool = False

    def __enter__(self) -> SqlRecorder:
        event.listen(self.engine, "before_cursor_execute", self._sql)
        for name in ("begin", "commit", "rollback"):
            event.listen(self.engine, name, getattr(self, f"_{name}"))
        self.recording = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.recording = False
        event.remove(self.engine, "before_cursor_execute", self._sql)
        for name in ("begin", "commit", "rollback"):
            event.remove(self.engine, name, getattr(self, f"_{name}"))

    def _sql(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if self.recording:
            autocommit = bool(getattr(getattr(cursor, "connection", None), "autocommit", False))
            self.steps.append(Step("sql", statement, parameters, many, autocommit))

    def _begin(self, conn: Any) -> None:
        if self.recording:
            self.steps.append(Step("begin"))

    def _commit(self, conn: Any) -> None:
        if self.recording:
            self.steps.append(Step("commit"))

    def _rollback(self, conn: Any) -> None:
        if self.recording:
            self.steps.append(Step("rollback"))

    def clear(self) -> None:
        self.steps.clear()


def transactions(steps: list[Step]) -> list[tuple[list[Step], str]]:
    """Group statements into the transactions the driver ran: (statements, "commit"|"rollback"),
    or "autocommit" for statements run outside any transaction (no BEGIN, no end was sent).
    psycopg opens a transaction with the first statement, so a begin without statements never
    reached the server and is dropped."""
    groups: list[tuple[list[Step], str]] = []
    current: list[Step] = []
    for step in steps:
        if step.kind == "sql":
            current.append(step)
        elif step.kind in ("commit", "rollback"):
            if current:
                groups.append((current, step.kind))
            current = []
    if current:
        groups.append((current, "rollback"))  # the session closes it at teardown
    return [(group, "autocommit" if all(s.autocommit for s in group) else end) for group, end in groups]


def statement_count(steps: list[Step]) -> dict[str, int]:
    """Statements as the driver sent them (an executemany counts once: psycopg pipelines it), and
    the statements the server ran (an executemany runs once per parameter set)."""
    sent = [s for group, _ in transactions(steps) for s in group]
    return {
        "statements": len(sent),
        "executed": sum(len(s.parameters) if s.executemany else 1 for s in sent),
        "transactions": len(transactions(steps)),
    }


# ---- SQL literal rendering ------------------------------------------------------------------------


def sql_string(text: str) -> str:
    """An E'' literal with no ``:`` in it (pgbench would take ``:name`` for a variable)."""
    escaped = text.replace("\\", "\\\\").replace("'", "''").replace(":", "\\x3a")
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f"E'{escaped}'"


@dataclass
class Renderer:
    """Renders Python parameter values as SQL; ``uuid_expr`` may map an id to an expression."""

    uuid_expr: Callable[[uuid.UUID], str | None]
    str_expr: Callable[[str], str | None] = lambda _s: None
    int_expr: Callable[[int], str | None] = lambda _i: None
    now: datetime | None = None

    def text_with_ids(self, text: str) -> str:
        """A text expression: known ids inside the text become concatenated expressions."""
        parts: list[str] = []
        pos = 0
        for match in re.finditer(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text):
            expr = self.uuid_expr(uuid.UUID(match.group(0)))
            if expr is None:
                continue
            if match.start() > pos:
                parts.append(sql_string(text[pos : match.start()]))
            parts.append(f"({expr})::text")
            pos = match.end()
        if pos < len(text) or not parts:
            parts.append(sql_string(text[pos:]))
        return parts[0] if len(parts) == 1 else "(" + " || ".join(parts) + ")"

    def value(self, v: Any) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return self.int_expr(v) or str(v)
        if isinstance(v, float | Decimal):
            return str(v)
        if isinstance(v, uuid.UUID):
            expr = self.uuid_expr(v)
            return f"({expr})" if expr else f"'{v}'::uuid"
        if isinstance(v, datetime):
            if self.now is not None and v.tzinfo is not None:
                seconds = round((v - self.now).total_seconds())
                return f"(now() + interval '{seconds} seconds')" if seconds else "now()"
            return sql_string(v.isoformat()) + "::timestamptz"
        if isinstance(v, date):
            return sql_string(v.isoformat()) + "::date"
        if isinstance(v, timedelta):
            return f"interval '{v.total_seconds()} seconds'"
        if isinstance(v, str):
            return self.str_expr(v) or self.text_with_ids(v)
        if isinstance(v, bytes):
            return f"'\\x{v.hex()}'::bytea"
        if hasattr(v, "obj"):  # psycopg Json/Jsonb wrappers
            return self.text_with_ids(json.dumps(v.obj, default=str)) + "::jsonb"
        if isinstance(v, list | tuple):
            if all(isinstance(x, uuid.UUID | int | str) and not isinstance(x, bool) for x in v):
                return "ARRAY[" + ", ".join(self.value(x) for x in v) + "]"
            return self.text_with_ids(json.dumps(v, default=str)) + "::jsonb"
        if isinstance(v, dict):
            return self.text_with_ids(json.dumps(v, default=str)) + "::jsonb"
        raise TypeError(f"cannot render parameter of type {type(v).__name__}")

    def statement(self, statement: str, parameters: Any) -> str:
        positional = iter(parameters) if isinstance(parameters, list | tuple) else None

        def substitute(match: re.Match[str]) -> str:
            if match.group(1) is not None:
                return self.value(parameters[match.group(1)])
            assert positional is not None
            return self.value(next(positional))

        rendered = _PLACEHOLDER.sub(substitute, statement) if parameters else statement
        rendered = rendered.replace("%%", "%")
        return " ".join(rendered.split())


# ---- the checkout as a pgbench script ---------------------------------------------------------------


@dataclass
class CheckoutCapture:
    steps: list[Step]
    user_n: int
    products: int  # how many bench products exist (the cart's product is a function of user_n)
    idempotency_key: str
    started_at: datetime
    outbox_ids: list[int]


PGBENCH_PREAMBLE = """\
-- Generated by bench/capture.py from the SQL that one POST /orders issued; do not edit.
-- Per transaction: user :n takes the next pre-filled cart of this client; :txn is unique.
\\set k :k + 1
\\set n :first + (:client_id + :nc * :k) % :pool
\\set p (:n * 7919) % :nprod
\\set txn (:run * 1000 + :client_id) * 10000000 + :k
"""


def pgbench_script(capture: CheckoutCapture) -> tuple[str, dict[str, Any]]:
    """The checkout's transactions as a pgbench script, and facts about it (statement counts...)."""

    def known(kind: int, n: int) -> str | None:
        if kind in (USER, CART) and n == capture.user_n:
            return f"bench_id({kind}, :n)"
        if kind == PRODUCT and n == (capture.user_n * 7919) % capture.products:
            return f"bench_id({kind}, :p)"
        return None

    return replay_script(
        capture.steps,
        PGBENCH_PREAMBLE,
        known,
        idempotency_key=capture.idempotency_key,
        started_at=capture.started_at,
        outbox_ids=capture.outbox_ids,
    )


# ---- a shipment as a pgbench script ----------------------------------------------------------------


@dataclass
class ShipmentCapture:
    steps: list[Step]
    order_n: int  # the paid order shipped (bench/seed.py seed_paid_orders)
    users: int  # order n belongs to user n % users
    products: int
    admin_n: int  # the admin who ships: the same for every request
    idempotency_key: str
    started_at: datetime
    outbox_ids: list[int]


SHIPMENT_PREAMBLE = """\
-- Generated by bench/capture.py from the SQL that one POST /orders/{id}/shipments issued; do not edit.
-- Per transaction: paid order :n takes the next unshipped order of this client; :txn is unique.
\\set k :k + 1
\\set n :first + (:client_id + :nc * :k) % :pool
\\set p (:n * 7919) % :nprod
\\set u :n % :users
\\set txn (:run * 1000 + :client_id) * 10000000 + :k
"""


def shipment_script(capture: ShipmentCapture) -> tuple[str, dict[str, Any]]:
    """A shipment's transactions as a pgbench script: each replayed transaction ships another order."""

    def known(kind: int, n: int) -> str | None:
        if kind in (ORDER, PAYMENT) and n == capture.order_n:
            return f"bench_id({kind}, :n)"
        if kind == PRODUCT and n == (capture.order_n * 7919) % capture.products:
            return f"bench_id({kind}, :p)"
        if kind == USER and n == capture.admin_n:
            return f"bench_id({kind}, {n})"
        if kind == USER and n == capture.order_n % capture.users:
            return f"bench_id({kind}, :u)"
        return None

    return replay_script(
        capture.steps,
        SHIPMENT_PREAMBLE,
        known,
        idempotency_key=capture.idempotency_key,
        started_at=capture.started_at,
        outbox_ids=capture.outbox_ids,
    )


def replay_script(
    steps: list[Step],
    preamble: str,
    known: Callable[[int, int], str | None],
    *,
    idempotency_key: str,
    started_at: datetime,
    outbox_ids: list[int],
) -> tuple[str, dict[str, Any]]:
    """Recorded transactions as a pgbench script: bench ids that ``known`` maps become its
    per-transaction expressions, ids made by the request become fresh ones per transaction, the
    Idempotency-Key and the outbox ids become variables, timestamps are relative to now()."""
    fresh: dict[uuid.UUID, int] = {}
    unknown: list[str] = []

    def uuid_expr(value: uuid.UUID) -> str | None:
        parsed = parse_bench_uuid(value)
        if parsed is not None:
            expr = known(*parsed)
            if expr is None:
                unknown.append(str(value))
            return expr
        slot = fresh.setdefault(value, len(fresh))
        return f"bench_id({100 + slot}, :txn)"

    def str_expr(value: str) -> str | None:
        if value == idempotency_key:
            return "('bench-' || :txn)"
        return None

    # The k-th outbox INSERT ... RETURNING id stores its id in :obk_id (pgbench \gset), and the
    # k-th smallest captured outbox id becomes that variable. (Not currval(): it is volatile, so
    # `id IN (currval(...))` cannot use the primary key and the replay would scan the outbox.)
    outbox_vars = {value: f":ob{k}_id" for k, value in enumerate(sorted(outbox_ids), start=1)}

    def int_expr(value: int) -> str | None:
        return outbox_vars.get(value)

    renderer = Renderer(uuid_expr, str_expr, int_expr, now=started_at)
    lines = [preamble]
    groups = transactions(steps)
    per_txn: list[int] = []
    outbox_inserts = 0
    for statements, end in groups:
        if end != "autocommit":
            lines.append("BEGIN;")
        count = 0
        for step in statements:
            param_sets = step.parameters if step.executemany else [step.parameters]
            if step.executemany:
                lines.append("\\startpipeline")  # psycopg sends an executemany as one pipeline
            for params in param_sets:
                sql = renderer.statement(step.statement, params)
                if _OUTBOX_INSERT.match(sql) and not step.executemany:
                    outbox_inserts += 1
                    lines.append(f"{sql} \\gset ob{outbox_inserts}_")
                else:
                    lines.append(sql + ";")
                count += 1
            if step.executemany:
                lines.append("\\endpipeline")
        if end != "autocommit":
            lines.append("COMMIT;" if end == "commit" else "ROLLBACK;")
        per_txn.append(count)
    facts = {
        "transactions": len(groups),
        "executed": sum(per_txn),
        "executed_per_transaction": per_txn,
        "fresh_ids": len(fresh),
        "outbox_ids": len(outbox_ids),
        "outbox_ids_mapped": outbox_inserts == len(outbox_ids),
        "unmapped_bench_ids": sorted(set(unknown)),
    }
    return "\n".join(lines) + "\n", facts


# ---- reads for the framework floor ------------------------------------------------------------------


def floor_queries(steps: list[Step], path_id: uuid.UUID) -> list[dict[str, Any]]:
    """The read's transactions with the path's id as ``%(id)s`` and every other value inlined."""

    def uuid_expr(value: uuid.UUID) -> str | None:
        return "%(id)s" if value == path_id else None

    renderer = Renderer(uuid_expr)
    out = []
    for statements, end in transactions(steps):
        sqls = []
        for step in statements:
            for params in step.parameters if step.executemany else [step.parameters]:
                sql = renderer.statement(step.statement, params)
                # psycopg's own placeholders: escape the percent signs the SQL itself holds.
                sql = sql.replace("%", "%%").replace("%%(id)s", "%(id)s")
                sqls.append(sql)
        out.append({"statements": sqls, "end": end})
    return out
