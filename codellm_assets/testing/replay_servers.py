"""Real HTTP servers on 127.0.0.1 that replay recorded-shape JSON fixtures (GitHub, GitLab, Confluence, Jira).

A fixture file is ``{"routes": [{"method", "path", "query"?, "json_match"?, "replies": [{"status", "headers",
"json" | "body", "delay_s"?}]}]}``. A route answers a request with its method and path whose query (and JSON
body) contains the route's ``query`` (``json_match``); the most specific route wins. Its replies are served in
order, the last one repeating (a 429 then a 200). ``{base}`` in any string becomes the server's URL, so Link
headers and ``_links.next`` point back at it. Requests without the expected credentials get a 401. Every
request is logged (``server.log``) for tests to assert what was fetched.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Route:
    method: str
    path: str
    replies: list[Reply]
    query: dict[str, str] = field(default_factory=dict)
    json_match: dict | None = None
    served: int = 0

    def key(self) -> tuple:
        return self.method, self.path, tuple(sorted(self.query.items())), json.dumps(self.json_match, sort_keys=True)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float


def _contains(whole: Any, part: Any) -> bool:
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and _contains(whole[k], v) for k, v in part.items())
    return whole == part


def _substitute(value: Any, base: str) -> Any:
    if isinstance(value, str):
        return value.replace("{base}", base)
    if isinstance(value, list):
        return [_substitute(v, base) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, base) for k, v in value.items()}
    return value


def routes_from(fixture: dict) -> list[Route]:
    return [Route(method=r.get("method", "GET"), path=r["path"],
                  query={k: str(v) for k, v in r.get("query", {}).items()},
                  json_match=r.get("json_match"), replies=[Reply(**x) for x in r["replies"]])
            for r in fixture["routes"]]


class ReplayServer:
    """``with ReplayServer.from_fixture(path, auth=("Authorization", "Bearer good")) as server: server.url``."""

    def __init__(self, routes: list[Route], *, auth: tuple[str, str] | None = None):
        self.routes: list[Route] = []
        self.auth = auth
        self.log: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.add(routes)
        self._thread = threading.Thread(target=self._server.serve_forever, name="replay-server", daemon=True)
        self._thread.start()

    @classmethod
    def from_fixture(cls, path: str | Path, *, auth: tuple[str, str] | None = None) -> ReplayServer:
        return cls(routes_from(json.loads(Path(path).read_text())), auth=auth)

    def add(self, routes: list[Route]) -> None:
        """Add routes; one with the same method, path, query and JSON match replaces the old one."""
        with self._lock:
            for route in routes:
                route.replies = [Reply(
                    r.status, _substitute(r.json, self.url), _substitute(r.body, self.url),
                    _substitute(r.headers, self.url), r.delay_s) for r in route.replies]
                self.routes = [r for r in self.routes if r.key() != route.key()] + [route]

    def load(self, path: str | Path) -> None:
        self.add(routes_from(json.loads(Path(path).read_text())))

    def requests_to(self, path_prefix: str, method: str = "GET") -> list[Request]:
        return [r for r in self.log if r.method == method and r.path.startswith(path_prefix)]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> ReplayServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _match(self, method: str, path: str, query: dict, body: Any) -> Route | None:
        with self._lock:
            candidates = [r for r in self.routes if r.method == method and r.path == path
                          and all(query.get(k) == v for k, v in r.query.items())
                          and (r.json_match is None or _contains(body, r.json_match))]
            if not candidates:
                return None
            return max(candidates, key=lambda r: (len(r.query), r.json_match is not None))

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:   # quiet: tests read server.log
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                query = dict(parse_qsl(parts.query, keep_blank_values=True))
                server.log.append(Request(self.command, parts.path, query, dict(self.headers), body, time.monotonic()))
                if server.auth and self.headers.get(server.auth[0]) != server.auth[1]:
                    return self._send(Reply(401, json={"message": "Bad credentials"}))
                route = server._match(self.command, parts.path, query, body)
                if route is None:
                    return self._send(Reply(404, json={"message": "Not Found", "path": parts.path}))
                with server._lock:
                    reply = route.replies[min(route.served, len(route.replies) - 1)]
                    route.served += 1
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                data = (reply.body if reply.body is not None else json.dumps(reply.json)).encode()
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json" if reply.body is None else "text/html", **reply.headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):   # the client timed out and went away
                    pass

            do_GET = do_POST = _serve

        return Handler
