"""A minimal standard-library client for a sumi server: raw JSON posts and server-sent events.

For tests and benchmarks that need what a full client hides (bytes that are not JSON, a status
and its headers, closing a stream half-way). Applications should use any OpenAI client.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit


class Connection:
    """One HTTP/1.1 connection to `url` ("http://host:port"); `with Connection(url) as c:`."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 120.0):
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def request(
        self, method: str, path: str, body: bytes | dict | None = None, headers: dict | None = None
    ) -> http.client.HTTPResponse:
        """Send a request; a dict body is sent as JSON. Returns the response, body unread."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        all_headers = dict(self.headers, **({"Content-Type": "application/json"} if data is not None else {}))
        all_headers.update(headers or {})
        self.conn.request(method, path, body=data, headers=all_headers)
        return self.conn.getresponse()

    def json(
        self, method: str, path: str, body: bytes | dict | None = None, headers: dict | None = None
    ) -> tuple[int, dict, Any]:
        """(status, response headers, parsed JSON body or the text when it is not JSON)."""
        resp = self.request(method, path, body, headers)
        raw = resp.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed

    def events(self, path: str, body: dict, headers: dict | None = None) -> Iterator[Any]:
        """POST `body` and yield each server-sent event's data (parsed JSON; "[DONE]" as the string).
        Raises RuntimeError with the error body for a non-200 answer. Closing the generator
        early leaves the connection to be closed by the caller (`close()` hangs up)."""
        resp = self.request("POST", path, body, headers)
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {resp.read().decode('utf-8', 'replace')}")
        for line in resp:
            line = line.rstrip(b"\r\n")
            if not line.startswith(b"data: "):
                continue
            data = line[len(b"data: ") :].decode("utf-8")
            yield data if data == "[DONE]" else json.loads(data)
            if data == "[DONE]":
                return


def post(url: str, path: str, body: dict, *, api_key: str | None = None, timeout: float = 300.0) -> tuple[int, Any]:
    """One JSON POST on a fresh connection: (status, parsed body)."""
    with Connection(url, api_key=api_key, timeout=timeout) as c:
        status, _, parsed = c.json("POST", path, body)
    return status, parsed


def get_text(url: str, path: str, *, api_key: str | None = None, timeout: float = 30.0) -> str:
    """One GET on a fresh connection: the body as text (whatever the status)."""
    with Connection(url, api_key=api_key, timeout=timeout) as c:
        resp = c.request("GET", path)
        return resp.read().decode("utf-8")
