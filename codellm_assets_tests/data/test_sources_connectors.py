"""Each connector against a loopback server replaying recorded-shape fixtures: three pages, the documents they
make, and an updated-since re-run that fetches only the changed item."""

from __future__ import annotations

from pathlib import Path

import pytest

from codellm_assets.core.data.scrub.scrubber import scrub_text
from codellm_assets.core.data.sources import SourceFormatError, fetch_source
from codellm_assets.core.data.sources.documents import FetchResult, known_versions, merge_documents
from codellm_assets.settings import ScrubSettings, SourceSettings
from codellm_assets.testing.replay_servers import ReplayServer, Reply, Route

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
ENV = {"SRC_TOKEN": "good"}
KINDS = {  # kind: (fixture, settings, expected auth header, API prefix)
    "github_reviews": ("github", {"repo": "acme/app"}, ("Authorization", "Bearer good"), ""),
    "gitlab_reviews": ("gitlab", {"project": "acme/app"}, ("PRIVATE-TOKEN", "good"), "/api/v4"),
    "confluence": ("confluence", {"space": "ENG"}, ("Authorization", "Bearer good"), "/wiki"),
    "jira": ("jira", {"projects": ["ABC"]}, ("Authorization", "Bearer good"), ""),
}


def serve(kind: str) -> tuple[ReplayServer, SourceSettings]:
    fixture, extra, auth, prefix = KINDS[kind]
    server = ReplayServer.from_fixture(FIXTURES / f"{fixture}.json", auth=auth)
    cfg = SourceSettings(name=f"{fixture}-src", kind=kind, base_url=server.url + prefix, token_env="SRC_TOKEN",
                         page_size=1, **extra)
    return server, cfg


def run(cfg, cursor=None, previous=()) -> tuple[FetchResult, list[dict]]:
    result, _ = fetch_source(cfg, cursor=cursor, known=known_versions(previous), environ=ENV)
    return result, merge_documents(previous, result, cfg.kind, snapshot=result.cursor or "")


def by_doc(rows: list[dict]) -> dict[str, dict]:
    return {r["doc"]: r for r in rows}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_three_pages_are_all_read(kind):
    server, cfg = serve(kind)
    with server:
        result, rows = run(cfg)
    assert result.listed == 3 and len(result.items) == 3 and result.cursor == "2026-03-03T10:00:00Z"
    assert all(r["path"] == f"source://{cfg.name}/{r['doc']}" and r["language"] == "markdown" for r in rows)
    assert all(r["doc_key"] == f"{cfg.name}:{r['doc']}:{r['version']}" for r in rows)


def test_github_review_examples_and_commented_diff():
    server, cfg = serve("github_reviews")
    with server:
        _, rows = run(cfg)
    docs = by_doc(rows)
    applied = docs["pull/3/comment/301"]
    assert applied["kind"] == "review_example"
    assert '## Revised code\n\n```python\n    conn = engine.connect()\n    rows = conn.execute(query)\n' \
           '    for row in rows:\n        log.info("row %s", row)\n```' in applied["content"]
    later = docs["pull/1/comment/101"]     # no suggestion: the later commit rewrote the commented line
    assert later["kind"] == "review_example" and "time.sleep(2 ** attempt)" in later["content"]
    plain = docs["pull/2/comment/201"]     # not applied: the diff and the discussion, no revision
    assert plain["kind"] == "review_comment" and "```diff\n@@ -1,4 +1,6 @@" in plain["content"]
    assert "**Reply** (dev):\n\n> Good point, in a follow-up." in plain["content"]
    assert "Revised code" not in plain["content"]
    assert len(rows) == 3       # the reply is part of its thread, not a document


def test_github_resolved_only_asks_graphql():
    server, cfg = serve("github_reviews")
    cfg.resolved_only = True
    with server:
        _, rows = run(cfg)
    assert sorted(by_doc(rows)) == ["pull/1/comment/101", "pull/3/comment/301"]
    assert len(server.requests_to("/graphql", method="POST")) == 3


def test_github_rerun_fetches_only_the_changed_pull():
    server, cfg = serve("github_reviews")
    with server:
        first, rows = run(cfg)
        server.load(FIXTURES / "github_update.json")
        server.log.clear()
        second, rows2 = run(cfg, cursor=first.cursor, previous=rows)
    fetched = {r.path for r in server.log if "/pulls/" in r.path}
    assert fetched == {"/repos/acme/app/pulls/2/comments", "/repos/acme/app/pulls/2/files",
                       "/repos/acme/app/pulls/2/commits"}
    assert list(second.items) == ["pull/2"] and second.unchanged == 1
    assert second.cursor == "2026-03-05T08:00:00Z"
    docs = by_doc(rows2)
    assert len(rows2) == 3 and "must reject non-dict input" in docs["pull/2/comment/201"]["content"]
    assert docs["pull/2/comment/201"]["doc_id"] == by_doc(rows)["pull/2/comment/201"]["doc_id"]   # replaced
    assert docs["pull/3/comment/301"] == by_doc(rows)["pull/3/comment/301"]


def test_gitlab_suggestion_applied_and_general_notes_skipped():
    server, cfg = serve("gitlab_reviews")
    with server:
        result, rows = run(cfg)
    docs = by_doc(rows)
    assert sorted(docs) == ["mr/6/discussion/d6a", "mr/7/discussion/d7a"]
    assert docs["mr/7/discussion/d7a"]["kind"] == "review_example"
    revised = '## Revised code\n\n```python\ndef read(path):\n    """Read a file."""\n    with open(path) as fh:\n```'
    assert revised in docs["mr/7/discussion/d7a"]["content"]
    assert docs["mr/6/discussion/d6a"]["kind"] == "review_comment"
    assert "Kept for compatibility." in docs["mr/6/discussion/d6a"]["content"]
    lists = server.requests_to("/api/v4/projects/acme%2Fapp/merge_requests")
    assert [r.query.get("page") for r in lists if r.path.endswith("merge_requests")] == [None, "2", "3"]


def test_gitlab_rerun_sends_updated_after():
    server, cfg = serve("gitlab_reviews")
    with server:
        first, rows = run(cfg)
        server.log.clear()
        second, _ = run(cfg, cursor=first.cursor, previous=rows)
    assert server.log[0].query["updated_after"] == "2026-03-03T10:00:00Z"
    assert second.items == {} and second.unchanged == 1          # mr/7 listed at the cursor, same version
    assert not [r for r in server.log if "/discussions" in r.path]


def test_confluence_pages_to_markdown_and_incremental_search():
    server, cfg = serve("confluence")
    with server:
        first, rows = run(cfg)
        docs = by_doc(rows)
        assert "```bash\nmake deploy ENV=staging\n```" in docs["page/11"]["content"]
        assert docs["page/12"]["content"].startswith("# On-call\n\nSee Deploy guide first.")
        assert "| Type hints | Readers |" in docs["page/13"]["content"]
        assert docs["page/11"]["url"] == f"{server.url}/wiki/spaces/ENG/pages/11"
        server.load(FIXTURES / "confluence_update.json")
        server.log.clear()
        second, rows2 = run(cfg, cursor=first.cursor, previous=rows)
    (search,) = server.log
    assert search.path == "/wiki/rest/api/content/search"
    assert 'lastmodified >= "2026/03/03 10:00"' in search.query["cql"] and 'space = "ENG"' in search.query["cql"]
    assert second.items == {"page/12": "6"} and second.unchanged == 1
    assert "ten minutes" in by_doc(rows2)["page/12"]["content"] and len(rows2) == 3


def test_jira_issue_comments_commits_and_rerun():
    server, cfg = serve("jira")
    with server:
        first, rows = run(cfg)
        issue = by_doc(rows)["issue/ABC-1"]
        assert issue["content"].startswith("# ABC-1: Login fails with SSO")
        assert "## Linked commits\n\n- 0a1b2c3d4e5f Fix SSO redirect loop" in issue["content"]
        assert "Runbook" not in issue["content"]        # a remote link that is not a commit
        jql = server.log[0].query["jql"]
        assert jql == 'project in ("ABC") ORDER BY updated ASC'
        server.load(FIXTURES / "jira_update.json")
        server.log.clear()
        second, rows2 = run(cfg, cursor=first.cursor, previous=rows)
    assert server.log[0].query["jql"] == 'project in ("ABC") AND updated >= "2026/03/03 10:00" ORDER BY updated ASC'
    assert list(second.items) == ["issue/ABC-2"] and second.unchanged == 1
    assert [r.path for r in server.log if "remotelink" in r.path] == ["/rest/api/2/issue/ABC-2/remotelink"]
    assert "query now takes 40 ms" in by_doc(rows2)["issue/ABC-2"]["content"] and len(rows2) == 3


def test_secrets_in_a_jira_comment_are_scrubbed():
    server, cfg = serve("jira")
    with server:
        _, rows = run(cfg)
    raw = by_doc(rows)["issue/ABC-1"]["content"]
    assert "AKIAQ3EGRQ7XJH2L5M4N" in raw
    scrubbed = scrub_text(raw, ScrubSettings()).text
    assert "AKIAQ3EGRQ7XJH2L5M4N" not in scrubbed and "wJalrXUtnFEMI" not in scrubbed
    assert "ann.lee@acme.io" not in scrubbed
    assert "<SECRET:aws_access_key>" in scrubbed and "<EMAIL>" in scrubbed


def test_an_item_without_a_documented_field_is_a_format_error_naming_the_url():
    route = Route("GET", "/rest/api/2/search", [Reply(200, json={"startAt": 0, "total": 1, "issues": [{"id": "1"}]})])
    with ReplayServer([route]) as server:
        cfg = SourceSettings(name="tickets", kind="jira", base_url=server.url, token_env="SRC_TOKEN", projects=["A"])
        with pytest.raises(SourceFormatError, match=r"source 'tickets'.*unexpected reply shape.*rest/api/2/search"):
            fetch_source(cfg, cursor=None, known={}, environ=ENV)


def test_max_items_keeps_the_cursor_so_the_rest_comes_next_run():
    server, cfg = serve("jira")
    cfg.max_items = 2
    with server:
        first, rows = run(cfg)
        assert first.truncated and len(first.items) == 2
        cfg.max_items = None
        second, rows2 = run(cfg, cursor=None, previous=rows)    # the stored cursor did not move
    assert list(second.items) == ["issue/ABC-3"] and second.unchanged == 2 and len(rows2) == 3


def _adf(*blocks) -> dict:
    return {"type": "doc", "version": 1, "content": list(blocks)}


def _para(text: str) -> dict:
    return {"type": "paragraph", "content": [{"type": "text", "text": text}]}


def test_jira_cloud_v3_search_jql_with_rich_text_bodies():
    def issue(n, updated, description, comments=()):
        return {"id": str(n), "key": f"OPS-{n}", "fields": {
            "summary": f"Issue {n}", "updated": updated, "status": {"name": "Open"}, "issuetype": {"name": "Task"},
            "description": description, "comment": {"comments": list(comments)}}}

    code = {"type": "codeBlock", "attrs": {"language": "sql"}, "content": [{"type": "text", "text": "VACUUM FULL;"}]}
    first = issue(1, "2026-03-01T10:00:00.000+0000", _adf(_para("The disk fills up."), code),
                  [{"id": "9", "author": {"displayName": "Bo"}, "created": "2026-03-01T09:00:00.000+0000",
                    "body": _adf(_para("Rotated the logs."))}])
    routes = [Route("GET", "/rest/api/3/search/jql", [Reply(json={"issues": [first], "nextPageToken": "p2"})]),
              Route("GET", "/rest/api/3/search/jql", [Reply(json={"issues": [issue(2, "2026-03-02T10:00:00.000+0000",
                                                                               None)], "isLast": True})],
                    {"nextPageToken": "p2"}),
              Route("GET", "/rest/api/3/issue/OPS-1/remotelink", [Reply(json=[])]),
              Route("GET", "/rest/api/3/issue/OPS-2/remotelink", [Reply(json=[])])]
    with ReplayServer(routes, auth=("Authorization", "Basic Ym90QGFjbWUuaW86Z29vZA==")) as server:
        cfg = SourceSettings(name="ops", kind="jira", base_url=server.url, projects=["OPS"], jira_api="v3",
                             token_env="SRC_TOKEN", user_env="SRC_USER")
        result, _ = fetch_source(cfg, cursor=None, known={}, environ={**ENV, "SRC_USER": "bot@acme.io"})
    assert list(result.items) == ["issue/OPS-1", "issue/OPS-2"]
    text = result.documents[0].content
    assert "The disk fills up.\n\n```sql\nVACUUM FULL;\n```" in text and "Rotated the logs." in text
    searches = server.requests_to("/rest/api/3/search/jql")
    assert "startAt" not in searches[0].query and searches[1].query["nextPageToken"] == "p2"
