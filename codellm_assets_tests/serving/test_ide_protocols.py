"""The IDE clients' wire shapes on a real gateway (uvicorn on a free loopback port, the tiny model on the
transformers backend), over plain HTTP: Tabby's API (health, server setting, segments completions on the
OpenAI path, events -> feedback), llama.cpp's /infill (llama.vscode), Continue's /v1/fim/completions and
/v1/models fields, literal FIM markup in a prompt, and every protocol in the one request log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from codellm_assets.core.serving.store import Store
from codellm_assets.core.serving.store_schema import feedback_t
from codellm_assets_tests.serving.conftest import TinyModel, tiny_gateway
from codellm_assets_tests.serving.ide_clients import doc_config


class Gw:
    def __init__(self, url: str, store: Store, gw: Any, key: str) -> None:
        self.url, self.store, self.gw, self.key = url, store, gw, key

    def post(self, path: str, body: Any, key: str | None = None, **kw: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {key or self.key}"}, **kw)

    def get(self, path: str, key: str | None = None) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {key or self.key}"}, timeout=30)

    def row(self, cid: str) -> dict[str, Any]:
        self.store.flush()
        row = self.store.request(cid)
        assert row is not None, f"no request row for {cid}"
        return row

    def feedback(self, cid: str) -> list[tuple[str, str | None, int | None]]:
        self.store.flush()
        with self.store.engine.connect() as c:
            q = sa.select(feedback_t.c.event, feedback_t.c.reason, feedback_t.c.elapsed_ms) \
                .where(feedback_t.c.completion_id == cid).order_by(feedback_t.c.id)
            return [tuple(r) for r in c.execute(q).all()]

    def requests_total(self) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("codellm_requests_total{"))


@pytest.fixture(scope="module")
def gw(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    with tiny_gateway(tiny_model.base, tmp_path_factory.mktemp("ide"), ide_context_chars=120) as (
            url, store, gateway, key):
        yield Gw(url, store, gateway, key)


def test_tabby_health_and_server_setting_need_a_key(gw: Gw) -> None:
    for method in ("GET", "POST"):
        r = httpx.request(method, f"{gw.url}/v1/health", headers={"Authorization": f"Bearer {gw.key}"})
        h = r.json()
        assert r.status_code == 200 and h["model"] == "codellm" and h["device"] == "cpu"
        assert h["version"]["git_describe"].startswith("v0.") and tuple(
            int(x) for x in h["version"]["git_describe"][1:].split("-")[0].split(".")) >= (0, 9, 0)
    assert httpx.get(f"{gw.url}/v1/health").status_code == 401
    assert httpx.get(f"{gw.url}/v1/health", headers={"Authorization": "Bearer cl-wrong"}).status_code == 401
    assert gw.get("/v1beta/server_setting").json() == {"disable_client_side_telemetry": True}


def _segments(**extra: Any) -> dict[str, Any]:
    return {"language": "python", "segments": {"prefix": "def add(a, b):\n    return ", "suffix": "\n", **extra}}


def test_tabby_segments_and_openai_shape_share_the_completions_path(gw: Gw) -> None:
    r = gw.post("/v1/completions", {**_segments(), "temperature": 0, "user": "ann"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "choices"} and body["id"].startswith("cmpl-")
    assert body["choices"][0]["index"] == 0 and isinstance(body["choices"][0]["text"], str)
    assert r.headers["x-codellm-version"] == "base"
    row = gw.row(body["id"])
    assert row["protocol"] == "tabby" and row["user"] == "ann" and row["status"] == "ok"
    assert row["prompt"] == "<fim_prefix>def add(a, b):\n    return<fim_suffix>\n<fim_middle>"   # healed
    assert row["completion"] == body["choices"][0]["text"]
    o = gw.post("/v1/completions", {"prompt": "def add(a, b):\n    return ", "suffix": "\n", "max_tokens": 64,
                                    "temperature": 0})
    assert o.status_code == 200 and o.json()["object"] == "text_completion"
    assert o.json()["choices"][0]["text"] == body["choices"][0]["text"]      # same prompt, same model
    assert gw.row(o.json()["id"])["protocol"] == "openai"
    bad = gw.post("/v1/completions", {"language": "python", "segments": {"suffix": "x"}})
    assert bad.status_code == 400 and "segments.prefix" in bad.json()["error"]["message"]


def test_tabby_declarations_and_snippets_fill_a_bounded_budget_most_relevant_first(gw: Gw) -> None:
    decl = {"filepath": "calc.py", "body": "def mul(a, b):\n    return a * b"}             # 31 chars
    good = {"filepath": "util.py", "body": "TOTAL = 0", "score": 0.9}
    low = {"filepath": "old.py", "body": "x = 1", "score": 0.1}
    big = {"filepath": "big.py", "body": "y = 2\n" * 40, "score": 0.95}              # over the 120 budget
    r = gw.post("/v1/completions", _segments(declarations=[decl], relevant_snippets_from_changed_files=[low, good, big],
                                             relevant_snippets_from_recently_opened_files=[{"filepath": "r.py",
                                                                                          "body": "z" * 80}]))
    prompt = gw.row(r.json()["id"])["prompt"]
    head = prompt.split("def add")[0]
    assert head == ("<fim_prefix># Path: calc.py\n# def mul(a, b):\n#     return a * b\n#\n# Path: util.py\n"
                    "# TOTAL = 0\n#\n# Path: old.py\n# x = 1\n")
    assert "big.py" not in prompt and "r.py" not in prompt     # 31+9+5 used: neither 240 nor 80 more fit 120


def test_tabby_events_land_in_the_feedback_table(gw: Gw) -> None:
    cid = gw.post("/v1/completions", _segments()).json()["id"]
    for body, query in (({"type": "view", "completion_id": cid, "choice_index": 0, "view_id": "v1"}, ""),
                        ({"type": "select", "completion_id": cid, "choice_index": 0, "elapsed": 420},
                         "?select_kind=line"),
                        ({"type": "dismiss", "completion_id": cid, "choice_index": 0}, "")):
        r = gw.post(f"/v1/events{query}", body)
        assert r.status_code == 200, r.text
    assert gw.feedback(cid) == [("view", "tabby view", None), ("accept", "tabby select select_kind=line", 420),
                                ("reject", "tabby dismiss", None)]
    assert gw.post("/v1/events", {"type": "view", "completion_id": "cmpl-nope", "choice_index": 0}).status_code == 404
    other = gw.store.create_api_key("other-team")
    assert gw.post("/v1/events", {"type": "view", "completion_id": cid}, key=other).status_code == 404
    assert gw.post("/v1/events", {"type": "share", "completion_id": cid}).status_code == 400
    assert httpx.post(f"{gw.url}/v1/events", json={"type": "view", "completion_id": cid}).status_code == 401


def test_llamacpp_infill_plain_streamed_and_warm_up(gw: Gw) -> None:
    # llama.vscode's own payloads (its createRequestPayload) with docs/ide.md's settings; temperature 0 added
    # so the streamed answer can be compared with the plain one
    cfg = json.loads(doc_config("llama-vscode", gw.url, gw.key))
    url, auth = cfg["llama-vscode.endpoint"] + "/infill", {"Authorization": f"Bearer {cfg['llama-vscode.api_key']}"}
    chunks = [{"filename": "a.py", "text": "OLD = 1", "time": 1}, {"filename": "b.py", "text": "NEW = 2", "time": 2}]
    body = {"input_prefix": "import os\n\ndef read(path):\n", "input_suffix": "\n", "input_extra": chunks,
            "prompt": "    with ", "n_predict": cfg["llama-vscode.n_predict"], "top_k": 40, "top_p": 0.99,
            "stream": False, "samplers": ["top_k", "top_p", "infill"], "cache_prompt": True,
            "t_max_prompt_ms": cfg["llama-vscode.t_max_prompt_ms"],
            "t_max_predict_ms": cfg["llama-vscode.t_max_predict_ms"], "temperature": 0}
    r = httpx.post(url, json=body, headers=auth, timeout=60)
    assert r.status_code == 200, r.text
    plain = r.json()
    assert isinstance(plain["content"], str) and plain["stop"] is True and plain["tokens_predicted"] <= 64
    row = gw.row(plain["id"])
    assert row["protocol"] == "llamacpp" and row["completion"] == plain["content"]
    # the newest chunk (last sent) nearest the code; the current line continues the prefix
    assert row["prompt"].startswith("<fim_prefix># Path: a.py\n# OLD = 1\n#\n# Path: b.py\n# NEW = 2\nimport os")
    assert "def read(path):\n    with<fim_suffix>" in row["prompt"]            # healed: the space is the model's
    with httpx.stream("POST", f"{gw.url}/infill", json={**body, "stream": True}, timeout=60,
                      headers={"Authorization": f"Bearer {gw.key}"}) as s:
        events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
    assert events[-1]["stop"] is True and all(e["stop"] is False for e in events[:-1])
    assert "".join(e["content"] for e in events) == plain["content"]
    before, rows_before = gw.requests_total(), _count_rows(gw)
    t0 = time.perf_counter()
    warm = httpx.post(url, headers=auth, json={"input_prefix": "", "input_suffix": "", "input_extra": chunks,
                                               "prompt": "", "n_predict": 0, "samplers": [], "cache_prompt": True,
                                               "t_max_prompt_ms": 500, "t_max_predict_ms": 1})
    assert warm.status_code == 200 and warm.json()["content"] == ""
    assert time.perf_counter() - t0 < 0.5
    assert gw.requests_total() == before and _count_rows(gw) == rows_before
    assert httpx.post(f"{gw.url}/infill", json=body).status_code == 401


def _count_rows(gw: Gw) -> int:
    gw.store.flush()
    with gw.store.engine.connect() as c:
        return int(c.execute(sa.text("select count(*) from requests")).scalar_one())


def test_llamacpp_time_limit_ends_the_answer_as_ok(gw: Gw) -> None:
    body = {"input_prefix": "def f():\n", "prompt": "", "input_suffix": "", "n_predict": 300, "temperature": 0,
            "t_max_predict_ms": 1}
    full = gw.post("/infill", {**body, "t_max_predict_ms": None}).json()
    cut = gw.post("/infill", body).json()
    assert full["content"].startswith(cut["content"]) and full["tokens_predicted"] == 300
    # llama.cpp's rule: the limit applies once a newline was generated (the tiny model writes some early)
    assert "\n" in full["content"][: len(full["content"]) // 2] and "\n" in cut["content"]
    assert 0 < cut["tokens_predicted"] < full["tokens_predicted"] / 2 and cut["stopped_limit"] is True
    assert gw.row(cut["id"])["status"] == "ok"


def test_continue_models_fields_fim_route_and_fim_markup_in_prompt(gw: Gw, tiny_model: TinyModel) -> None:
    from transformers import AutoTokenizer

    models = gw.get("/v1/models").json()["data"]
    ids = [m["id"] for m in models]
    assert ids == ["codellm", "codellm-starcoder", "base"]
    assert all(m["max_model_len"] == 512 for m in models)       # the tiny model's own 512 < 2048 configured
    # Continue renders its template itself and sends it as `prompt` (no suffix): the markup must become the
    # special tokens, i.e. the same prompt (token count) and answer as our own FIM rendering of the suffix.
    prompt = "<fim_prefix>def add(a, b):\n    return <fim_suffix>\n<fim_middle>"
    marked = gw.post("/v1/completions", {"model": "codellm-starcoder", "prompt": prompt, "max_tokens": 10,
                                         "temperature": 0, "stop": ["<fim_prefix>", "<|endoftext|>"]}).json()
    ours = gw.post("/v1/completions", {"prompt": "def add(a, b):\n    return ", "suffix": "\n", "max_tokens": 10,
                                       "temperature": 0}).json()
    assert marked["choices"][0]["text"] == ours["choices"][0]["text"]
    tok = AutoTokenizer.from_pretrained(tiny_model.base)
    as_text = len(tok(prompt, split_special_tokens=True)["input_ids"])
    healed = prompt.replace("return <fim_suffix>", "return<fim_suffix>")       # both healed alike
    assert marked["usage"]["prompt_tokens"] == ours["usage"]["prompt_tokens"] == len(tok(healed)["input_ids"])
    assert marked["usage"]["prompt_tokens"] < as_text - 6        # 3 markers as text: several tokens each
    fim_body = {"model": "codellm", "prompt": "def add(a, b):\n    return ", "suffix": "\n", "max_tokens": 10,
                "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{gw.url}/v1/fim/completions", json=fim_body, timeout=60,
                      headers={"Authorization": f"Bearer {gw.key}"}) as s:
        assert s.headers["x-codellm-version"] == "base"
        lines = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == ours["choices"][0]["text"]
    assert "".join(c["choices"][0]["text"] for c in chunks) == ours["choices"][0]["text"]
    assert gw.row(chunks[0]["id"])["protocol"] == "fim"
