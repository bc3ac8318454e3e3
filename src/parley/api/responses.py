"""JSON responses in the IMKIT envelope, rendered with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def ok(result: Any = None, rm: str = "OK") -> JSONResponse:
    """Success: ``{"RC": 0, "RM": "OK", "result": ...}``."""
    return JSONResponse({"RC": 0, "RM": rm, "result": {} if result is None else result})
