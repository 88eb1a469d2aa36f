"""What the IDE protocols share: the app's auth/parse steps, answer headers, server-sent events, the
bounded block of context snippets put before a prefix, and a stream collected into one answer."""

from __future__ import annotations

import json
import posixpath
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from codellm_assets.core.serving.gateway import Gateway
from codellm_assets.core.serving.store import ApiKey
from codellm_assets.core.serving.streaming import StreamSession


@dataclass
class Deps:
    """The app's request steps the protocol routers reuse: the same keys, rate limit and body validation."""

    gw: Gateway
    authenticate: Callable[[Request], Awaitable[ApiKey]]
    parse: Callable[[Request, type], Awaitable[Any]]


REPO_HEADER = "x-codellm-repo"


def repo_names(request: Request, *more: str | None) -> tuple[str, ...]:
    """How a request names its repo, first wins: the ``x-codellm-repo`` header, then ``more`` (a body
    field, Tabby's git_url); empty ones left out."""
    return tuple(n for n in (request.headers.get(REPO_HEADER), *more) if n and n.strip())


def headers(cid: str, slot: str, version: str) -> dict[str, str]:
    return {"x-codellm-version": version, "x-codellm-slot": slot, "x-request-id": cid}


class SessionStream(StreamingResponse):
    """Server-sent events of a StreamSession; however the response ends (the client left before the first
    byte, or mid-stream: the server's next send failed), the session is settled: the backend stream is
    closed, so generation stops, and the request is recorded as cancelled with the text sent so far."""

    def __init__(self, session: StreamSession, content: AsyncIterator[str]) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers=headers(session.id, session.slot, session.version))
        self.session = session

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.session.abandon()


def sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"


# ---- context snippets -----------------------------------------------------------------------------------

_HASH = ("python", "shellscript", "shell", "bash", "sh", "ruby", "perl", "r", "yaml", "toml", "dockerfile",
         "makefile", "powershell", "elixir", "julia", "nim", "coffeescript")
_DASHES = ("sql", "lua", "haskell", "ada", "elm")
_EXT_LANG = {".py": "python", ".sh": "bash", ".rb": "ruby", ".pl": "perl", ".r": "r", ".yaml": "yaml",
             ".yml": "yaml", ".toml": "toml", ".sql": "sql", ".lua": "lua", ".hs": "haskell", ".jl": "julia"}


def line_comment(language: str | None) -> str:
    lang = (language or "python").lower()
    return "#" if lang in _HASH else "--" if lang in _DASHES else "//"


def language_of(filename: str | None) -> str | None:
    ext = posixpath.splitext(filename or "")[1].lower()
    return _EXT_LANG.get(ext) if ext else None


def snippet_block(language: str | None, snippets: Iterable[tuple[str, str]], budget: int, *,
                  most_relevant_last: bool = False) -> str:
    """Snippets (``(filepath, body)``, most relevant first) as line comments to put before the prefix, the
    way Tabby's server does (``# Path: a.py`` then the body, commented). Taken in order while their bodies
    fit ``budget`` characters; a snippet that does not fit is skipped (a smaller later one may still fit).
    ``most_relevant_last``: written in reverse, the best one nearest the code."""
    comment = line_comment(language)
    chosen, used = [], 0
    for filepath, body in snippets:
        body = body.strip("\n")
        if not body.strip() or used + len(body) > budget:
            continue
        chosen.append((filepath, body))
        used += len(body)
    if not chosen:
        return ""
    if most_relevant_last:
        chosen.reverse()
    lines: list[str] = []
    for i, (filepath, body) in enumerate(chosen):
        lines.append(f"Path: {filepath}" if filepath else "Snippet:")
        lines.extend(body.split("\n"))
        if i < len(chosen) - 1:
            lines.append("")
    return "\n".join(f"{comment} {line}".rstrip() if line else comment for line in lines) + "\n"


# ---- a stream collected into one answer -----------------------------------------------------------------

async def collect(session: StreamSession, *, deadline_s: float | None = None,
                  newline_needed: bool = False) -> str:
    """The whole text of an opened stream; with ``deadline_s`` (seconds after the first piece) the answer
    ends at the first piece past it (once it holds a newline, if ``newline_needed``: llama.cpp's
    t_max_predict_ms). The session is settled however this ends."""
    t_first: float | None = None
    try:
        async for _delta in session.deltas():
            now = time.monotonic()
            t_first = t_first or now
            if deadline_s is not None and now - t_first >= deadline_s and \
                    (not newline_needed or "\n" in "".join(session.parts)):
                session.stop()
        return "".join(session.parts)
    finally:
        await session.abandon()
