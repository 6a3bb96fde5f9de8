"""OpenAI-style error bodies: `{"error": {"message", "type", "param", "code"}}` with a status.

Every failure a client can cause becomes an `APIError` (or is mapped to one by the handlers in
`app.py`), so a bad request never reaches the client as a 500 or a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from fastapi.responses import JSONResponse

# The `type` OpenAI's API gives each status.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


class APIError(Exception):
    """A request that cannot be served, with what the client needs to fix it."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": ERROR_TYPES.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """A 400: the request is well-formed but a value is not acceptable."""
    return APIError(400, message, param=param, code=code)


def param_from_message(message: str, names: Mapping[str, str]) -> str | None:
    """The API parameter a validation message is about: the earliest of `names` (internal option
    name -> API name) that occurs in `message` as a whole word. The model's own checks
    (`prepare_generation`) name the option first, e.g. "unknown sampler 'x'; choose one of ...";
    a message naming none gives None."""
    best: tuple[int, str] | None = None
    for name, api_name in names.items():
        hit = re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message)
        if hit and (best is None or hit.start() < best[0]):
            best = (hit.start(), api_name)
    return None if best is None else best[1]
