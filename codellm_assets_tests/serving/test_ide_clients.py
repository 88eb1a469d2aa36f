"""The IDE clients' own npm packages against a real gateway (uvicorn on a free loopback port, the tiny model):
Tabby's agent (``tabby-agent`` 1.5.0, behind Tabby's IDE extensions) over LSP and over its JSON-lines
protocol, and Continue's OpenAI adapter (``@continuedev/openai-adapters`` 1.37.0) driven by a Node script.
The configs are docs/ide.md's."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from codellm_assets.core.serving.app import create_app
from codellm_assets.core.serving.backends.transformers_backend import TransformersBackend
from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import Store
from codellm_assets.core.serving.store_schema import feedback_t, requests_t
from codellm_assets_tests.serving.conftest import TinyModel, make_gateway, serve_app, wait_ready
from codellm_assets_tests.serving.ide_clients import (
    RecordingProxy,
    TabbyJsonLines,
    TabbyLsp,
    node_dir,
    run_continue,
    write_tabby_config,
)


class Served:
    def __init__(self, url: str, store: Store, key: str) -> None:
        self.url, self.store, self.key = url, store, key

    def rows(self, protocol: str) -> list[dict[str, Any]]:
        self.store.flush()
        with self.store.engine.connect() as c:
            q = sa.select(requests_t).where(requests_t.c.protocol == protocol).order_by(requests_t.c.time)
            return [dict(r) for r in c.execute(q).mappings().all()]

    def feedback(self, cid: str) -> list[str]:
        self.store.flush()
        with self.store.engine.connect() as c:
            q = sa.select(feedback_t.c.event).where(feedback_t.c.completion_id == cid).order_by(feedback_t.c.id)
            return [r[0] for r in c.execute(q).all()]


@pytest.fixture(scope="module")
def node() -> Path:
    return node_dir()


@pytest.fixture(scope="module")
def served(node: Path, tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('clients') / 'store.db'}")
    key = store.create_api_key("bars")
    gw = make_gateway(store, TransformersBackend(micro_batch_ms=0),
                      [Route("production", "base", str(tiny_model.base), None, 100)])
    with serve_app(create_app(gw)) as url:
        wait_ready(url)
        yield Served(url, store, key)
    store.close()


# (file, text with | at the cursor): a few places, as the tiny model's answer may be dropped by the agent's
# post-processing (blank, repetitive) at one of them
DOCS = [("add.py", "def add(a, b):\n    return |\n\n\nprint(add(1, 2))\n"),
        ("files.py", "import os\n\n\ndef read_file(path):\n    with open(path) as f:\n        |\n"),
        ("stack.py", "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
                     "        |\n")]


def _cursor(marked: str) -> tuple[str, int, dict[str, int]]:
    i = marked.index("|")
    before = marked[:i]
    return marked.replace("|", "", 1), i, {"line": before.count("\n"), "character": len(before.split("\n")[-1])}


def _item_text(item: dict[str, Any]) -> str:
    return ((item.get("textEdit") or {}).get("newText") or item.get("insertText") or item.get("label") or "")


def test_tabby_agent_lsp_completion_comes_from_the_gateway(served: Served, node: Path, tmp_path: Path) -> None:
    agent = node / "node_modules" / "tabby-agent" / "dist" / "cli.js"
    proxy = RecordingProxy(served.url)
    write_tabby_config(tmp_path / "home", proxy.url, served.key)
    proj = tmp_path / "proj"
    proj.mkdir()
    lsp = TabbyLsp(agent, tmp_path / "home", tmp_path / "lsp.log")
    try:
        init = lsp.request("initialize", {
            "processId": None, "rootUri": proj.as_uri(), "workspaceFolders": [{"uri": proj.as_uri(), "name": "p"}],
            "clientInfo": {"name": "codellm-test", "version": "1"},
            "capabilities": {"textDocument": {"completion": {"completionItem": {"snippetSupport": False}}},
                             "workspace": {"configuration": False}}})
        assert "completionProvider" in init["capabilities"], init["capabilities"]
        lsp.notify("initialized", {})
        found = []
        for name, marked in DOCS:
            text, _, pos = _cursor(marked)
            uri = (proj / name).as_uri()
            lsp.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                                 "text": text}})
            res = lsp.request("textDocument/completion", {"textDocument": {"uri": uri}, "position": pos,
                                                          "context": {"triggerKind": 1}}, timeout=90)
            items = res.get("items", []) if isinstance(res, dict) else (res or [])
            found += [(name, _item_text(i)) for i in items if _item_text(i).strip()]
            if found:
                break
    finally:
        lsp.close()
        proxy.close()
    time.sleep(0.5)
    calls = [(x["method"], x["path"].split("?")[0], x["status"]) for x in proxy.seen]
    assert ("GET", "/v1/health", 200) in calls and ("GET", "/v1beta/server_setting", 200) in calls, calls
    answers = [x for x in proxy.seen if x["path"] == "/v1/completions" and x["status"] == 200]
    assert answers, calls
    assert all(a["headers"]["x-codellm-version"] == "base" for a in answers)
    answered = {json.loads(a["body"])["id"]: json.loads(a["body"])["choices"][0]["text"] for a in answers}
    rows = served.rows("tabby")
    assert rows, f"the gateway logged no Tabby request; agent log: {(tmp_path / 'lsp.log').read_text()[-1500:]}"
    assert all(r["status"] == "ok" and r["version"] == "base" and r["team"] == "bars" for r in rows)
    assert found, f"no completion item; the gateway answered {[r['completion'] for r in rows]}"
    name, item = found[0]
    # the agent may trim the answer (to the line / indentation scope): the item is a piece of what we sent
    assert any(item.strip() in r["completion"] for r in rows), (item, [r["completion"] for r in rows])
    assert {r["id"]: r["completion"] for r in rows} == answered    # the log holds what the agent was answered
    assert any(r["prompt"].startswith("<fim_prefix>") for r in rows)


def test_tabby_agent_json_lines_events_land_in_feedback(served: Served, node: Path, tmp_path: Path) -> None:
    agent = node / "node_modules" / "tabby-agent" / "dist" / "cli.js"
    write_tabby_config(tmp_path / "home", served.url, served.key)
    jl = TabbyJsonLines(agent, tmp_path / "home", tmp_path / "jsonl.log")
    try:
        jl.call("initialize", {"clientProperties": {"session": {"client": "codellm-test"}}})
        comp: dict[str, Any] = {}
        for name, marked in DOCS:
            text, offset, _ = _cursor(marked)
            comp = jl.call("provideCompletions", {"filepath": str(tmp_path / name), "language": "python",
                                                  "text": text, "position": offset, "manually": True}, timeout=90)
            if comp.get("choices"):
                break
        cid = comp.get("id")
        assert cid and cid.startswith("cmpl-") and comp["choices"], comp
        assert jl.call("postEvent", {"type": "view", "completion_id": cid, "choice_index": 0}) is True
        assert jl.call("postEvent", {"type": "select", "completion_id": cid, "choice_index": 0,
                                     "select_kind": "line"}) is True
    finally:
        jl.close()
    assert served.feedback(cid) == ["view", "accept"]


def test_continue_adapter_completion_stream_chat_and_fim(served: Served, node: Path) -> None:
    out = run_continue(node, served.url, served.key)
    assert out["models"][:2] == [{"id": "codellm", "max_model_len": 512},
                                 {"id": "codellm-starcoder", "max_model_len": 512}], out["models"]
    for name in ("completion", "stream", "chat", "fim", "vllm"):
        assert "error" not in out[name], (name, out[name])
        assert out[name]["id"], (name, out[name])
    assert out["completion"]["text"] == out["stream"]["text"] == out["vllm"]["text"]
    assert "error" not in out["vllm"] and out["vllm"]["max_model_len"] == 512, out["vllm"]
    # Continue's FIM template in `prompt` is the same prompt as our rendering of prefix + suffix
    assert out["completion"]["text"] == out["fim"]["text"]
    logged = {p: served.rows(p) for p in ("openai", "fim")}
    by_id = {r["id"]: r for rows in logged.values() for r in rows}
    for name in ("completion", "stream", "chat", "fim"):
        row = by_id[out[name]["id"]]
        assert row["status"] == "ok" and row["version"] == "base"
        assert row["completion"] == out[name]["text"]
    assert by_id[out["fim"]["id"]]["protocol"] == "fim"
    assert by_id[out["completion"]["id"]]["prompt"] == by_id[out["fim"]["id"]]["prompt"]
