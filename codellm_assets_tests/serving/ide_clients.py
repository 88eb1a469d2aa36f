"""Drivers for the IDE clients' own npm packages (installed into var/node by .ci/run, or the folder named by
CODELLM_IDE_NODE_DIR): ``tabby-agent`` over LSP (``--lsp --stdio``) and over its JSON-lines protocol (what
Tabby's Vim/IntelliJ plugins speak), and the Continue adapter script in node/continue_client.mjs."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_SCRIPTS = Path(__file__).resolve().parent / "node"
DOC = REPO / "docs" / "ide.md"
DOC_URL, DOC_KEY = "http://codellm.internal:8000", "cl-YOUR-TEAM-KEY"


def doc_config(name: str, url: str, key: str) -> str:
    """The config block ``<!-- ide-config: NAME -->`` of docs/ide.md, pointed at ``url`` with ``key``."""
    m = re.search(rf"<!-- ide-config: {re.escape(name)} -->\n```\w*\n(.*?)```", DOC.read_text(), re.S)
    assert m, f"docs/ide.md has no '<!-- ide-config: {name} -->' block"
    assert DOC_URL in m.group(1), f"the {name} block in docs/ide.md does not use {DOC_URL}"
    return m.group(1).replace(DOC_URL, url).replace(DOC_KEY, key)


def node_dir() -> Path:
    """The folder holding node_modules with the pinned clients; skipped (or failed, when CI sets
    CODELLM_REQUIRE_IDE_CLIENTS=1) if node or the packages are missing."""
    d = Path(os.environ.get("CODELLM_IDE_NODE_DIR") or REPO / "var" / "node")
    missing = [p for p in ("tabby-agent/dist/cli.js", "@continuedev/openai-adapters/package.json")
               if not (d / "node_modules" / p).is_file()]
    why = None
    if shutil.which("node") is None:
        why = "node is not installed"
    elif missing:
        why = (f"IDE client packages missing under {d}/node_modules ({', '.join(missing)}): run "
               f"`npm ci --prefix {d}` after copying {NODE_SCRIPTS}/package*.json there (.ci/run does it)")
    if why:
        if os.environ.get("CODELLM_REQUIRE_IDE_CLIENTS") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return d


def write_tabby_config(home: Path, endpoint: str, token: str) -> Path:
    """The agent's config from docs/ide.md (usage tracking off there: it would post outside)."""
    cfg = home / ".tabby-client" / "agent" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    text = doc_config("tabby-agent", endpoint, token)
    assert "[anonymousUsageTracking]\ndisable = true" in text
    cfg.write_text(text)
    return cfg


class RecordingProxy:
    """A pass-through HTTP proxy in front of the gateway that records every exchange (method, path, status,
    response headers and body), so a test sees what the client was answered - version header included."""

    def __init__(self, target: str) -> None:
        self.target, self.seen = target.rstrip("/"), []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hop = {"host", "connection", "content-length", "accept-encoding", "transfer-encoding"}
                req = urllib.request.Request(proxy.target + self.path, data=body or None, method=self.command,
                                             headers={k: v for k, v in self.headers.items() if k.lower() not in hop})
                try:
                    with urllib.request.urlopen(req, timeout=120) as r:
                        status, headers, data = r.status, dict(r.headers), r.read()
                except urllib.error.HTTPError as e:
                    status, headers, data = e.code, dict(e.headers), e.read()
                proxy.seen.append({"method": self.command, "path": self.path, "status": status,
                                   "headers": {k.lower(): v for k, v in headers.items()}, "body": data})
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in hop:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Proc:
    def __init__(self, args: list[str], home: Path, log: Path) -> None:
        env = {**os.environ, "HOME": str(home), "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1"}
        self.stderr = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        self.waiting: dict[int, queue.Queue[Any]] = {}
        self.n = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()           # our own child, by its handle
        self.p.wait(10)
        self.stderr.close()


class TabbyLsp(_Proc):
    """``tabby-agent --lsp --stdio``: JSON-RPC with Content-Length framing."""

    def __init__(self, agent_js: Path, home: Path, log: Path) -> None:
        super().__init__(["node", str(agent_js), "--lsp", "--stdio"], home, log)
        self.server_requests: list[str] = []

    def _send(self, obj: dict[str, Any]) -> None:
        b = json.dumps(obj).encode()
        self.p.stdin.write(b"Content-Length: %d\r\n\r\n" % len(b) + b)
        self.p.stdin.flush()

    def _read(self) -> None:
        out = self.p.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                if not line.strip():
                    break
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            msg = json.loads(out.read(length or 0))
            if "id" in msg and "method" in msg:          # the server asks us something: answer plainly
                self.server_requests.append(msg["method"])
                items = (msg.get("params") or {}).get("items", [])
                result = [None] * len(items) if msg["method"] == "workspace/configuration" else None
                self._send({"jsonrpc": "2.0", "id": msg["id"], "result": result})
            elif "id" in msg and msg["id"] in self.waiting:
                self.waiting[msg["id"]].put(msg)

    def request(self, method: str, params: Any, timeout: float = 60) -> Any:
        self.n += 1
        q: queue.Queue[Any] = queue.Queue()
        self.waiting[self.n] = q
        self._send({"jsonrpc": "2.0", "id": self.n, "method": method, "params": params})
        msg = q.get(timeout=timeout)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg.get("result")

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})


class TabbyJsonLines(_Proc):
    """``tabby-agent`` without arguments: ``[id, {func, args}]`` lines in, ``[id, result]`` lines out."""

    def __init__(self, agent_js: Path, home: Path, log: Path) -> None:
        super().__init__(["node", str(agent_js)], home, log)

    def _read(self) -> None:
        for line in self.p.stdout:
            try:
                rid, payload = json.loads(line)
            except ValueError:
                continue
            if rid in self.waiting:
                self.waiting[rid].put(payload)

    def call(self, func: str, *args: Any, timeout: float = 60) -> Any:
        self.n += 1
        q: queue.Queue[Any] = queue.Queue()
        self.waiting[self.n] = q
        self.p.stdin.write((json.dumps([self.n, {"func": func, "args": list(args)}]) + "\n").encode())
        self.p.stdin.flush()
        return q.get(timeout=timeout)


def continue_models(url: str, key: str) -> dict[str, dict[str, Any]]:
    """Continue's config.yaml from docs/ide.md: the model of each role (autocomplete, chat)."""
    import yaml

    cfg = yaml.safe_load(doc_config("continue", url, key))
    return {role: m for m in cfg["models"] for role in m["roles"] if role in ("autocomplete", "chat")}


def run_continue(node: Path, url: str, key: str) -> dict[str, Any]:
    models = json.dumps(continue_models(url, key))
    r = subprocess.run(["node", str(NODE_SCRIPTS / "continue_client.mjs"), str(node), models],
                       capture_output=True, text=True, timeout=180,
                       env={**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1"})
    assert r.returncode == 0, f"continue_client.mjs rc={r.returncode}: {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])
