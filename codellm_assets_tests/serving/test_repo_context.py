"""Repository context at serving time, with real parts: a real git repo (with an origin remote) -> its corpus
records -> a real code index on disk (code_index_store) -> a real gateway on 127.0.0.1 with the tiny model.
The request row's ``prompt`` (what the model was given) shows what was injected; every way of naming the repo
(Tabby git_url in scp and https form, the x-codellm-repo header, a ``repo`` field on /v1/completions,
/v1/fim/completions and /infill) gets the defining file's snippet within the token budget; an unknown repo
and a request naming none get nothing; a long prompt shrinks the context to what the window leaves; a new
current.json is picked up while serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from codellm_assets.core.data.code_index_store import build_repo_indexes
from codellm_assets.core.data.git_scan import scan_branch
from codellm_assets.core.serving.app import create_app
from codellm_assets.core.serving.backends.transformers_backend import TransformersBackend
from codellm_assets.core.serving.context_injection import with_context
from codellm_assets.core.serving.repo_context import RepoContext, RepoRef, normalize_remote
from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import Store
from codellm_assets.settings import RepoSettings
from codellm_assets_tests.conftest import commit_files, git
from codellm_assets_tests.data.test_code_index import LEDGER, NOISE, USER
from codellm_assets_tests.serving.conftest import TinyModel, make_gateway, serve_app, wait_ready

BUDGET = 300           # serving.repo_context_tokens here (the tiny tokenizer: ~2 characters per token)
HEADER = "# Here are some relevant code fragments from other files of the repo:\n"
CURSOR = ("from billing.ledger import reconcile_ledger\n\n\ndef close_quarter(client, entries):\n"
          "    totals = reconcile_ledger(")


@pytest.mark.parametrize(("url", "expected"), [
    ("git@git.acme.io:fin/acme.git", "git.acme.io/fin/acme"),
    ("https://git.acme.io/fin/acme.git", "git.acme.io/fin/acme"),
    ("https://git.acme.io/fin/acme", "git.acme.io/fin/acme"),
    ("https://ci:s3cret@Git.Acme.io/fin/acme.git/", "git.acme.io/fin/acme"),
    ("ssh://git@git.acme.io:2222/fin/acme.git", "git.acme.io/fin/acme"),
    ("git://git.acme.io/fin/acme", "git.acme.io/fin/acme"),
    ("acme", None),                        # a name, not a URL
    ("/home/dev/acme", None),              # a local path
    ("file:///home/dev/acme", None),
    ("./acme:x", None),
    ("https://git.acme.io/", None),        # a host without a repo
    ("", None),
])
def test_normalize_remote(url: str, expected: str | None) -> None:
    assert normalize_remote(url) == expected


@pytest.mark.parametrize(("prompt", "suffix", "expected"), [
    ("def f(", "\n", "CTXdef f("),                                            # we render the FIM template
    ("<fim_prefix>def f(<fim_suffix>\n<fim_middle>", None, "<fim_prefix>CTXdef f(<fim_suffix>\n<fim_middle>"),
    ("<PRE> def f( <SUF>\n <MID>", None, "<PRE> CTXdef f( <SUF>\n <MID>"),    # CodeLlama's spaces stay
    ("def f(", None, "CTXdef f("),                                            # a plain prefix completion
])
def test_context_goes_before_the_code(prompt: str, suffix: str | None, expected: str) -> None:
    assert with_context(prompt, suffix, "CTX") == expected


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the git repo, the index root): acme with an origin remote, its index built by the store."""
    tmp = tmp_path_factory.mktemp("repo-context")
    repo = tmp / "acme"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit_files(repo, {"billing/ledger.py": LEDGER, "app/close.py": USER, **NOISE}, "initial")
    git(repo, "remote", "add", "origin", "git@git.acme.io:fin/acme.git")
    root = tmp / "code_index"
    build_repo_indexes(scan_branch(repo, "HEAD", repo_name="acme").records, root)
    return repo, root


def test_resolve_names_urls_and_paths(company: tuple[Path, Path]) -> None:
    repo, root = company
    refs = [RepoRef.from_settings(RepoSettings(name="acme", path=str(repo)), Path),       # origin read from git
            RepoRef.from_settings(RepoSettings(name="tools", url="https://git.acme.io/fin/tools.git",
                                               remotes=["git@mirror.acme.io:fin/tools.git"]), Path)]
    rc = RepoContext(root, refs)
    for name, want in [("acme", "acme"), ("git@git.acme.io:fin/acme.git", "acme"),
                       ("https://git.acme.io/fin/acme", "acme"), (str(repo), "acme"),
                       (f"file://{repo}/app", "acme"), ("https://git.acme.io/fin/tools", "tools"),
                       ("git@mirror.acme.io:fin/tools.git", "tools"), ("git@github.com:other/acme.git", None),
                       ("ACME", None), ("", None), (str(repo.parent), None)]:
        assert rc.resolve(name) == want, name
    assert rc.resolve("nope", "tools") == "tools"        # the first name that matches wins
    assert rc.index("acme") is not None and rc.index("tools") is None
    assert rc.repo_path("acme", str(repo / "app" / "close.py")) == "app/close.py"
    assert rc.repo_path("acme", "/elsewhere/checkout/app/close.py") == "app/close.py"


class Gw:
    def __init__(self, url: str, store: Store, key: str, tokenizer: Any) -> None:
        self.url, self.store, self.key, self.tokenizer = url, store, key, tokenizer

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        r = httpx.post(f"{self.url}{path}", json=body, timeout=60,
                       headers={"Authorization": f"Bearer {self.key}", **(headers or {})})
        assert r.status_code == 200, r.text
        return r.json()

    def row(self, cid: str) -> dict[str, Any]:
        self.store.flush()
        row = self.store.request(cid)
        assert row is not None
        return row

    def metric(self, name: str) -> dict[str, float]:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith(name)}

    def injected(self, prompt: str) -> str:
        """The repository-context block of a rendered prompt ("" when there is none)."""
        body = prompt.removeprefix("<fim_prefix>")
        if not body.startswith(HEADER):
            return ""
        end = body.rindex("# " + "-" * 50 + "\n") + 53
        return body[:end]

    def tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])


@pytest.fixture(scope="module")
def gw(tiny_model: TinyModel, company: tuple[Path, Path],
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    from transformers import AutoTokenizer

    repo, root = company
    tmp = tmp_path_factory.mktemp("repo-context-gw")
    store = Store(f"sqlite:///{tmp / 'store.db'}")
    key = store.create_api_key("fin")
    rc = RepoContext(root, [RepoRef.from_settings(RepoSettings(name="acme", path=str(repo)), Path)], check_s=0.1)
    gateway = make_gateway(store, TransformersBackend(micro_batch_ms=0),
                           [Route("production", "base", str(tiny_model.base), None, 100)],
                           repo_context=rc, repo_context_tokens=BUDGET, ide_context_chars=200)
    with serve_app(create_app(gateway)) as url:
        wait_ready(url)
        yield Gw(url, store, key, AutoTokenizer.from_pretrained(tiny_model.base))
    store.close()


def _tabby(git_url: str | None, prefix: str = CURSOR, **segments: Any) -> dict[str, Any]:
    seg = {"prefix": prefix, "suffix": ")\n    return sum(totals)\n", "filepath": "app/close.py", **segments}
    if git_url is not None:
        seg["git_url"] = git_url
    return {"language": "python", "segments": seg, "temperature": 0}


def _assert_context(gw: Gw, cid: str) -> str:
    row = gw.row(cid)
    block = gw.injected(row["prompt"])
    assert block, row["prompt"][:300]
    assert "# the below code fragment can be found in:\n# billing/ledger.py\n" in block
    assert "# def reconcile_ledger(client, entries):" in block
    assert "# app/close.py\n" not in block                       # never the cursor's own file
    assert row["repo"] == "acme" and row["context_chunks"] == block.count("code fragment can be found in")
    assert row["context_tokens"] == gw.tokens(block) <= BUDGET
    assert row["raw_prefix"].endswith(CURSOR) and HEADER not in row["raw_prefix"]   # the IDE's own text
    return row["prompt"]


@pytest.mark.parametrize("git_url", ["git@git.acme.io:fin/acme.git", "https://git.acme.io/fin/acme"])
def test_tabby_git_url_gets_the_defining_snippet(gw: Gw, git_url: str) -> None:
    before = gw.metric("codellm_repo_context_total").get('codellm_repo_context_total{outcome="added"}', 0)
    body = _tabby(git_url, declarations=[{"filepath": "misc/util0.py", "body": "def helper_0_0(x):\n    ..."}])
    prompt = _assert_context(gw, gw.post("/v1/completions", body)["id"])
    # CrossCodeEval layout, then the IDE's own snippets nearest the code, then the code.
    assert prompt.index("billing/ledger.py") < prompt.index("# Path: misc/util0.py") < prompt.index(CURSOR)
    after = gw.metric("codellm_repo_context_total")['codellm_repo_context_total{outcome="added"}']
    assert after == before + 1


def test_header_and_repo_fields_get_the_defining_snippet(gw: Gw) -> None:
    openai = {"prompt": CURSOR, "suffix": ")\n", "max_tokens": 4, "temperature": 0, "filepath": "app/close.py"}
    _assert_context(gw, gw.post("/v1/completions", openai, headers={"x-codellm-repo": "acme"})["id"])
    _assert_context(gw, gw.post("/v1/completions", {**openai, "repo": "git@git.acme.io:fin/acme.git"})["id"])
    _assert_context(gw, gw.post("/v1/fim/completions", {**openai, "repo": "acme"})["id"])
    # Continue renders the template itself: the context goes inside it, after the prefix token.
    marked = {"prompt": f"<fim_prefix>{CURSOR}<fim_suffix>)\n<fim_middle>", "max_tokens": 4, "temperature": 0}
    prompt = _assert_context(gw, gw.post("/v1/completions", marked, headers={"x-codellm-repo": "acme"})["id"])
    assert prompt.startswith("<fim_prefix>" + HEADER) and prompt.count("<fim_prefix>") == 1
    infill = {"input_prefix": CURSOR, "input_suffix": ")\n", "prompt": "", "n_predict": 4, "temperature": 0,
              "repo": "acme", "filepath": "app/close.py"}
    _assert_context(gw, gw.post("/infill", infill)["id"])


def test_unknown_or_unnamed_repo_gets_no_context(gw: Gw) -> None:
    metric = "codellm_repo_context_total"
    before = gw.metric(metric)
    for body, headers in [(_tabby("git@github.com:someone/else.git"), {}), (_tabby(None), {}),
                          (_tabby(None), {"x-codellm-repo": "payments"})]:
        row = gw.row(gw.post("/v1/completions", body, headers=headers)["id"])
        assert HEADER not in row["prompt"] and row["repo"] is None and not row["context_chunks"]
    after = gw.metric(metric)
    unknown, none = f'{metric}{{outcome="unknown_repo"}}', f'{metric}{{outcome="no_repo"}}'
    assert after[unknown] - before.get(unknown, 0) == 2 and after[none] - before.get(none, 0) == 1


def _values(n: int) -> str:
    return "".join(f"value_{i} = compute_{i}(ledger)\n" for i in range(n)) + CURSOR


def test_long_prompt_leaves_less_room_and_is_never_rejected(gw: Gw) -> None:
    # The tiny model's window is 512 tokens: this prefix leaves less room than the whole ledger snippet needs,
    # so the snippet's first lines are added (cut to the room left) and the request is answered, not rejected.
    short = {"prompt": CURSOR, "suffix": ")\n", "max_tokens": 16, "temperature": 0, "repo": "acme"}
    snippet_tokens = gw.row(gw.post("/v1/completions", short)["id"])["context_tokens"]
    long_prefix = _values(14)
    answer = gw.post("/v1/completions", {**short, "prompt": long_prefix})
    row = gw.row(answer["id"])
    no_context = gw.tokens(f"<fim_prefix>{long_prefix}<fim_suffix>)\n<fim_middle>")
    assert no_context + 16 < 512 < no_context + snippet_tokens + 16       # it fits, with the snippet it would not
    assert row["context_chunks"] == 1 and HEADER in row["prompt"] and row["repo"] == "acme"
    assert 0 < row["context_tokens"] < snippet_tokens
    assert answer["usage"]["prompt_tokens"] + 16 <= 512
    n = 14
    while gw.tokens(f"<fim_prefix>{_values(n + 1)}<fim_suffix>)\n<fim_middle>") + 16 <= 512:
        n += 1                                     # the longest prefix that still fits: no room for 3 lines
    row = gw.row(gw.post("/v1/completions", {**short, "prompt": _values(n)})["id"])
    assert row["context_chunks"] == 0 and HEADER not in row["prompt"]        # no room for three lines: none


def test_new_index_is_picked_up_while_serving(gw: Gw, company: tuple[Path, Path]) -> None:
    import time

    repo, root = company
    commit_files(repo, {"billing/refunds.py": "def issue_refund_voucher(entry, reason):\n"
                        "    return {'entry': entry, 'reason': reason}\n"})
    summary = build_repo_indexes(scan_branch(repo, "HEAD", repo_name="acme").records, root)
    assert summary.rebuilt == 1
    body = {"prompt": "from billing.refunds import issue_refund_voucher\n\n\ndef refund(e):\n"
                      "    return issue_refund_voucher(", "suffix": ")\n", "max_tokens": 4, "repo": "acme"}
    deadline = time.monotonic() + 10
    while True:
        prompt = gw.row(gw.post("/v1/completions", body)["id"])["prompt"]
        if "# billing/refunds.py\n" in prompt or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "# def issue_refund_voucher(entry, reason):" in gw.injected(prompt)
    seconds = gw.metric("codellm_repo_context_seconds")
    total, count = seconds["codellm_repo_context_seconds_sum"], seconds["codellm_repo_context_seconds_count"]
    print(f"\nrepository context added per request: {1000 * total / count:.2f} ms mean over {count:.0f}")


@pytest.mark.parametrize("budget", [120, 250, 300, 420, 700, 1500])
def test_context_never_exceeds_the_token_budget(tiny_model: TinyModel, company: tuple[Path, Path],
                                                budget: int) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model.base)

    def count(text: str) -> int:
        return len(tok(text)["input_ids"])

    repo, root = company
    rc = RepoContext(root, [RepoRef("acme", repo)])
    res = rc.context("acme", CURSOR, ")\n", filepath="app/close.py", language="python", budget=budget,
                     count=count)
    assert res.tokens == (count(res.text) if res.text else 0) <= budget
    assert (res.outcome == "added") == (budget >= 250)          # the ledger snippet alone is ~243 tokens
    if res.text:
        assert res.chunks == res.text.count("code fragment can be found in") >= 1
