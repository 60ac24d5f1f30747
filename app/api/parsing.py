"""The request parser every blueprint uses: JSON Python cannot decode is malformed JSON (400), not a 500.

``json.loads`` raises ``RecursionError`` for nesting deeper than the interpreter's limit and a plain
``ValueError`` for an integer longer than 4300 digits; webargs only turns ``JSONDecodeError`` into
its 400, so without this both would reach the catch-all handler as a 500.
"""

from __future__ import annotations

import json
from typing import Any

import flask
from webargs.flaskparser import FlaskParser


class OmsParser(FlaskParser):
    def _raw_load_json(self, req: flask.Request) -> Any:
        try:
            return super()._raw_load_json(req)
        except json.JSONDecodeError:
            raise
        except (RecursionError, ValueError) as exc:
            raise json.JSONDecodeError(f"Undecodable JSON: {type(exc).__name__}", "<body>", 0) from exc
