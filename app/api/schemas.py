"""Shared schema pieces: money, ids, pagination. Unknown fields are rejected everywhere."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import marshmallow as ma

NUL = "\x00"
MAX_DEPTH = 32


def unstorable_text_problem(value: str) -> str | None:
    """Why Postgres cannot store this text, or None: U+0000, or a lone surrogate (``"\\ud800"`` in
    JSON decodes to a str that has no UTF-8 form, so psycopg cannot send it)."""
    if NUL in value:
        return "Must not contain NUL characters."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Must be valid Unicode text (no lone surrogates)."
    return None


def _unstorable(value: Any, depth: int = 0) -> Any:
    """The messages for ``value`` (nested as the value is), or None when every text in it is storable."""
    if isinstance(value, str):
        problem = unstorable_text_problem(value)
        return [problem] if problem else None
    if depth > MAX_DEPTH:
        return None  # the JSON depth limit answers such bodies before they get here
    if isinstance(value, Mapping):
        found = {}
        for key, item in value.items():
            key_problem = unstorable_text_problem(key) if isinstance(key, str) else None
            inner = [key_problem] if key_problem else _unstorable(item, depth + 1)
            if inner:
                found[key if not key_problem else repr(key)] = inner
        return found or None
    if isinstance(value, list | tuple):
        found_items = {i: inner for i, item in enumerate(value) if (inner := _unstorable(item, depth + 1))}
        return found_items or None
    return None


def reject_unstorable_text(data: Any) -> None:
    """Text Postgres cannot hold is a 422 naming the field, never a 500 at the database."""
    if not isinstance(data, Mapping):
        return
    errors = _unstorable(data)
    if errors:
        raise ma.ValidationError(errors)


class StrictSchema(ma.Schema):
    """Request bodies: an unknown field is a 422, never silently ignored."""

    class Meta:
        unknown = ma.RAISE

    @ma.pre_load
    def _only_storable_text(self, data: Any, **kwargs: Any) -> Any:
        reject_unstorable_text(data)
        return data


class Money(ma.fields.Decimal):
    """Exact money: a JSON number with at most two decimals, ``Decimal`` in Python."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("places", 2)
        kwargs.setdefault("rounding", ROUND_HALF_UP)
        kwargs.setdefault("as_string", False)
        kwargs.setdefault("allow_nan", False)
        super().__init__(**kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        # JSON number: float of a two-decimal Decimal prints exactly as written (e.g. 19.99).
        return float(Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        result = super()._deserialize(value, attr, data, **kwargs)
        if result is None:
            raise self.make_error("invalid")
        if Decimal(str(value)).as_tuple().exponent < -2:  # type: ignore[operator]
            raise ma.ValidationError("At most two decimals.")
        return Decimal(result)


MAX_MONEY = Decimal("9999999999.99")


class PageArgsSchema(ma.Schema):
    """``page`` from 1, ``pageSize`` 1–100 (default 20)."""

    class Meta:
        unknown = ma.EXCLUDE

    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    pageSize = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))

    @ma.pre_load
    def _only_storable_text(self, data: Any, **kwargs: Any) -> Any:
        reject_unstorable_text(data)
        return data


class PageMetaSchema(ma.Schema):
    page = ma.fields.Integer(required=True)
    pageSize = ma.fields.Integer(required=True)
    totalItems = ma.fields.Integer(required=True)
    totalPages = ma.fields.Integer(required=True)


_PAGE_SCHEMAS: dict[str, type[ma.Schema]] = {}


def page_of(item_schema: type[ma.Schema]) -> type[ma.Schema]:
    """A ``{items, page, pageSize, totalItems, totalPages}`` schema for ``item_schema``."""
    name = item_schema.__name__.removesuffix("Schema") + "PageSchema"
    if name not in _PAGE_SCHEMAS:
        _PAGE_SCHEMAS[name] = type(
            name, (PageMetaSchema,), {"items": ma.fields.List(ma.fields.Nested(item_schema), required=True)}
        )
    return _PAGE_SCHEMAS[name]


def page_body(items: list[Any], total: int, page: int, page_size: int) -> dict[str, Any]:
    return {
        "items": items,
        "page": page,
        "pageSize": page_size,
        "totalItems": total,
        "totalPages": math.ceil(total / page_size) if total else 0,
    }
