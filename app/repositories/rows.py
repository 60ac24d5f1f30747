"""Core INSERTs and UPDATEs of entities the domain built, for the hot paths.

The ORM's unit of work (flush) was the largest single cost of a checkout for six new objects and
one dirty product; plain ``INSERT``s of the same rows cost a fraction of that (docs/bench/README.md,
fix 5). Entities written this way are not added to the session: the caller keeps them as the
values they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Insert, Table, TextClause, insert, inspect, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from app.domain.base import Base


def table_of(cls: type[Base]) -> Table:
    """The entity's table, for Core statements built once at import: a statement over the ORM's
    attributes goes through the ORM's compile and result layers on every execution (about 0.1 ms
    more per statement than the same statement over the table's columns, docs/bench)."""
    return _columns(cls)[0]


@cache
def _columns(cls: type[Base]) -> tuple[Table, tuple[tuple[str, str], ...]]:
    mapper = inspect(cls)
    table = mapper.local_table
    assert isinstance(table, Table)
    return table, tuple((prop.key, prop.columns[0].key) for prop in mapper.column_attrs)


def row_of(entity: Base) -> dict[str, Any]:
    """The column values the entity was given; columns it was not given get their defaults."""
    _, columns = _columns(type(entity))
    given = entity.__dict__
    return {column: given[attr] for attr, column in columns if attr in given}


def insert_rows(session: Session, entities: Sequence[Base]) -> None:
    """One ``INSERT`` of entities of one class, as one statement however many there are.

    Several rows go as ``INSERT … SELECT * FROM unnest(<one array per column>)``: one cached
    statement for any number of rows (an executemany sent one statement per row, and a
    multi-row ``VALUES`` is compiled again on every call: both made 50 lines cost 2× one line).
    """
    if not entities:
        return
    table, _ = _columns(type(entities[0]))
    rows = [row_of(entity) for entity in entities]
    if len(rows) == 1:
        session.execute(_insert_one(table), rows[0])
        return
    columns = tuple(rows[0])
    session.execute(_unnest_insert(table, columns), {c: [row[c] for row in rows] for c in columns})


@cache
def _insert_one(table: Table) -> Insert:
    """Built once per table, so its cache key is computed once (a checkout runs four of these)."""
    return insert(table)


@cache
def _unnest_insert(table: Table, columns: tuple[str, ...]) -> TextClause:
    dialect = postgresql.dialect()
    arrays = ", ".join(f"CAST(:{c} AS {table.c[c].type.compile(dialect=dialect)}[])" for c in columns)
    return text(f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})")
