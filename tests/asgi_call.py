"""Call an ASGI app with exactly the request given (any Host, none, or two), for the server tests.

    status, headers, body = call(app, "POST", "/client/v4/...", headers=[("host", "127.0.0.1")], body=b"{}")

`headers` are sent as given (no Host is added); `headers` in the result are lower-cased into a dict
(the last of a repeated name wins); `body` is parsed as JSON when it is not empty.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

LOCAL = [("host", "127.0.0.1:8788")]


async def acall(app: Any, method: str, path: str, *, headers: list[tuple[str, str]] | None = None,
                body: bytes = b"", receive: Any = None) -> tuple[int, dict[str, str], Any]:
    path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
             "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8788),
             "headers": [(k.lower().encode(), v.encode()) for k, v in (LOCAL if headers is None else headers)]}
    sent = False

    async def default_receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # nothing more: like a client waiting for its answer
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    out: dict[str, Any] = {"body": b""}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    await app(scope, receive or default_receive, send)
    data = out["body"]
    return out.get("status", 0), out.get("headers", {}), json.loads(data) if data else None


def call(app: Any, method: str, path: str, **kw: Any) -> tuple[int, dict[str, str], Any]:
    return asyncio.run(acall(app, method, path, **kw))
