"""Response schemas compiled once per process into plain functions, for the hot reads.

flask-smorest renders a view's result with its response schema's ``dump``, which walks every
field through several layers of calls on every request (a visible share of a ``GET /orders/{id}``:
docs/bench/README.md). ``compiled(schema)`` turns the schema, once, into a function that builds the
same dict: the same keys (``data_key``), the same values, a missing attribute or key left out as
``dump`` leaves it out. The schema stays the one definition of the body and of the OpenAPI
document; a schema this cannot render exactly as ``dump`` (dump hooks, ``dump_default``, a field
type not listed here) is refused when the view module is imported, never rendered differently.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import marshmallow as ma
from marshmallow.utils import ensure_text_type, missing

from app.api.schemas import Money

Render = Callable[[Any], dict[str, Any]]
Convert = Callable[[Any], Any]


class NotCompilable(TypeError):
    """The schema holds something ``compiled`` cannot render exactly as ``dump`` does."""


def compiled(schema: ma.Schema) -> Render:
    """A function rendering an object (or a mapping) exactly as ``schema.dump`` does."""
    if any(tag.startswith(("pre_dump", "post_dump")) for tag, hooks in schema._hooks.items() if hooks):
        raise NotCompilable(f"{type(schema).__name__} has dump hooks")
    plain: list[tuple[str, str, Convert]] = []
    methods: list[tuple[str, Callable[[Any], Any]]] = []
    for name, field in schema.dump_fields.items():
        key = field.data_key or name
        if isinstance(field, ma.fields.Method):
            method = getattr(schema, field.serialize_method_name or "", None)
            if method is None:
                raise NotCompilable(f"{type(schema).__name__}.{name}: a Method field without a method")
            methods.append((key, method))
            continue
        if field.dump_default is not missing:
            raise NotCompilable(f"{type(schema).__name__}.{name} has a dump_default")
        attribute = field.attribute or name
        if "." in attribute:
            raise NotCompilable(f"{type(schema).__name__}.{name}: a dotted attribute")
        plain.append((key, attribute, _converter(field, f"{type(schema).__name__}.{name}")))

    def render(obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if isinstance(obj, Mapping):
            for key, attribute, convert in plain:
                value = obj.get(attribute, missing)
                if value is not missing:
                    out[key] = None if value is None else convert(value)
        else:
            for key, attribute, convert in plain:
                value = getattr(obj, attribute, missing)
                if value is not missing:
                    out[key] = None if value is None else convert(value)
        for key, method in methods:
            out[key] = method(obj)
        return out

    return render


def _as_is(value: Any) -> Any:
    return value


def _isoformat(value: dt.datetime) -> str:
    return value.isoformat()


def _converter(field: ma.fields.Field, where: str) -> Convert:
    """What ``field._serialize`` does with a value that is not None."""
    if isinstance(field, ma.fields.Nested):
        if getattr(field, "many", False):
            raise NotCompilable(f"{where}: Nested(many=True)")
        return compiled(field.schema)
    if isinstance(field, ma.fields.List):
        inner = _converter(field.inner, where)
        return lambda values: [None if value is None else inner(value) for value in values]
    if isinstance(field, ma.fields.UUID):
        return str
    if type(field) is ma.fields.String:
        return ensure_text_type
    if isinstance(field, ma.fields.Integer) and not field.as_string:
        return int
    if isinstance(field, Money):
        return lambda value: field._serialize(value, None, None)
    # datetime.isoformat, naive or aware: what the iso formats are
    is_iso = isinstance(field, ma.fields.DateTime) and field.format in (None, "iso", "iso8601")
    if is_iso and type(field) is ma.fields.DateTime:
        return _isoformat
    if type(field) is ma.fields.Boolean:
        return _as_is
    raise NotCompilable(f"{where}: {type(field).__name__} is not compiled")
