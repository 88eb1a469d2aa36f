"""Review suggestions (parsing, applied or not), Confluence storage -> Markdown, and the sources settings."""

from __future__ import annotations

import pytest

from codellm_assets.core.data.sources.reviews import (
    ReviewThread,
    added_lines,
    find_suggestion,
    render,
    revised_region,
    suggestion_applied,
)
from codellm_assets.core.data.sources.storage_markdown import storage_to_markdown
from codellm_assets.settings import Settings, SettingsError, load_settings


@pytest.mark.parametrize("body, lines, above, below", [
    ("Use this:\n```suggestion\n    return x\n```", ["    return x"], 0, 0),
    ("```suggestion\na\nb\n```\nthanks", ["a", "b"], 0, 0),
    ("```suggestion:-1+2\nnew\n```", ["new"], 1, 2),                  # GitLab's range
    ("```suggestion\n```", [], 0, 0),                                  # delete the line
    ("```python\nx = 1\n```", None, 0, 0),                             # a plain code block
    ("just a remark", None, 0, 0),
])
def test_find_suggestion(body, lines, above, below):
    found = find_suggestion(body)
    if lines is None:
        assert found is None
    else:
        assert (found.lines, found.above, found.below) == (lines, above, below)


FINAL = added_lines("@@ -1,3 +1,4 @@\n def f(rows):\n+    for row in rows:\n+        log.info(row)\n+    return None\n")


@pytest.mark.parametrize("original, suggestion, final, applied", [
    (["        print(row)"], ["        log.info(row)"], FINAL, True),
    (["        print(row)"], ["        log.warning(row)"], FINAL, False),           # something else merged
    (["        print(row)"], ["        log.info(row)"], FINAL | {"print(row)"}, False),  # old line still there
    (["    pass"], ["    for row in rows:", "        log.info(row)"], FINAL, True),  # multi-line
    (["        print(row)"], ["        log.info(row)"], set(), False),               # no patch: no evidence
    (["    x = 1"], ["    x = 1", "    return None"], FINAL - {"return None"}, False),
])
def test_suggestion_applied_table(original, suggestion, final, applied):
    assert suggestion_applied(original, suggestion, final) is applied


def test_revised_region_only_when_the_commented_line_is_gone():
    patch = "@@ -5,3 +5,6 @@\n def fetch(url):\n+    for attempt in range(3):\n+        return get(url)\n"
    assert revised_region(patch, 6, ["    time.sleep(5)"], width=1) == \
        ["def fetch(url):", "    for attempt in range(3):", "        return get(url)"]
    assert revised_region(patch, 6, ["    for attempt in range(3):"], width=1) is None   # still there
    assert revised_region(patch, 50, ["    time.sleep(5)"], width=1) is None              # another hunk
    assert revised_region(None, 6, ["x"], width=1) is None


def test_render_without_applied_change_is_the_commented_diff():
    thread = ReviewThread(path="a.go", code=["x := 1"], commented=1, comments=[("ann", "why 1?")],
                          diff="@@ -1 +1 @@\n+x := 1")
    kind, text = render(thread, "#9 tweak")
    assert kind == "review_comment" and "```diff\n@@ -1 +1 @@\n+x := 1\n```" in text and "> why 1?" in text


@pytest.mark.parametrize("storage, present, absent", [
    ("<h1>Title</h1><p>Body <strong>bold</strong></p>", ["# Title", "Body **bold**"], ["<p>"]),
    ('<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">sql</ac:parameter>'
     "<ac:plain-text-body><![CDATA[SELECT * FROM t WHERE a < 3]]></ac:plain-text-body></ac:structured-macro>",
     ["```sql\nSELECT * FROM t WHERE a < 3\n```"], ["CDATA", "ac:"]),
    ('<ac:structured-macro ac:name="warning"><ac:rich-text-body><p>Careful</p></ac:rich-text-body>'
     "</ac:structured-macro>", ["> **Warning:**", "> Careful"], ["ac:"]),
    ('<p>See <ac:link><ri:page ri:content-title="Runbook" /></ac:link></p>', ["See Runbook"], ["ri:"]),
    ('<p>See <ac:link><ri:page ri:content-title="Runbook" /><ac:plain-text-link-body><![CDATA[the runbook]]>'
     "</ac:plain-text-link-body></ac:link></p>", ["See the runbook"], ["Runbook"]),
    ('<ac:structured-macro ac:name="toc" />', [], ["toc"]),
    ('<ac:structured-macro ac:name="expand"><ac:rich-text-body><p>Hidden detail</p></ac:rich-text-body>'
     "</ac:structured-macro>", ["Hidden detail"], ["expand"]),
    ("<ac:task-list><ac:task><ac:task-status>complete</ac:task-status><ac:task-body>ship</ac:task-body>"
     "</ac:task><ac:task><ac:task-status>incomplete</ac:task-status><ac:task-body>test</ac:task-body>"
     "</ac:task></ac:task-list>", ["- [x] ship", "- [ ] test"], ["task-status"]),
    ("<table><tbody><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></tbody></table>",
     ["| a | b |", "| 1 | 2 |"], ["<td>"]),
    ('<p><ac:image><ri:attachment ri:filename="arch.png" /></ac:image></p>', ["[image: arch.png]"], ["ri:"]),
    ("<ul><li>one</li><li>two</li></ul>", ["- one\n- two"], ["<li>"]),
])
def test_storage_to_markdown_table(storage, present, absent):
    md = storage_to_markdown(storage)
    for p in present:
        assert p in md, md
    for a in absent:
        assert a not in md, md


def _source(**kw) -> dict:
    return {"name": "gh", "kind": "github_reviews", "base_url": "https://api.github.com", "repo": "acme/app",
            "token_env": "GITHUB_TOKEN", **kw}


@pytest.mark.parametrize("value, ok", [
    ("GITHUB_TOKEN", True), ("CODELLM_JIRA_TOKEN_2", True),
    ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", False), ("glpat-xxxxxxxxxxxxxxxxxxxx", False),
    ("ATATT3xFfGF0abc", False), ("a1b2c3d4e5f6a7b8c9d0e1f2", False), ("github_token", False), ("", False),
])
def test_token_env_must_name_a_variable(value, ok):
    if ok:
        assert Settings(sources={"connectors": [_source(token_env=value)]}).sources.connectors[0].token_env == value
    else:
        with pytest.raises(ValueError, match="token_env"):
            Settings(sources={"connectors": [_source(token_env=value)]})


def test_a_pasted_token_is_refused_with_the_fix(tmp_path):
    cfg = tmp_path / "codellm.yaml"
    cfg.write_text("sources:\n  connectors:\n    - {name: gh, kind: github_reviews, base_url: 'https://api.github.com',"
                   " repo: acme/app, token_env: ghp_16C7e42F292c6912E7710c838347Ae178B4a}\n")
    with pytest.raises(SettingsError, match="NAME of an environment variable.*not the secret itself.*rotate"):
        load_settings(cfg, environ={})


@pytest.mark.parametrize("kind, missing", [("github_reviews", "repo"), ("gitlab_reviews", "project"),
                                           ("confluence", "space"), ("jira", "projects")])
def test_each_kind_needs_its_target(kind, missing):
    with pytest.raises(ValueError, match=f"needs `{missing}`"):
        Settings(sources={"connectors": [{"name": "s", "kind": kind, "base_url": "https://x", "token_env": "T"}]})


def test_source_names_are_unique_and_distinct_from_repos():
    with pytest.raises(ValueError, match="unique"):
        Settings(sources={"connectors": [_source(), _source()]})
    with pytest.raises(ValueError, match="share a repo's name"):
        Settings(repos=[{"name": "gh", "path": "."}], sources={"connectors": [_source()]})


def test_the_shipped_settings_have_no_sources():
    assert load_settings(environ={}).sources.connectors == []


def test_the_commented_example_in_codellm_yaml_is_valid():
    import yaml

    from codellm_assets.settings import PROJECT_ROOT

    text = (PROJECT_ROOT / "codellm.yaml").read_text()
    block = text[text.index("# sources:"):].splitlines()
    uncommented = "\n".join(line[2:] for line in block if line.startswith("# "))
    s = Settings(**yaml.safe_load(uncommented))
    assert {c.kind for c in s.sources.connectors} == {"github_reviews", "gitlab_reviews", "confluence", "jira"}


@pytest.mark.parametrize("node, text", [
    ("plain v2 wiki text", "plain v2 wiki text"),
    (None, ""),
    ({"type": "doc", "content": [{"type": "paragraph", "content": [
        {"type": "text", "text": "run "}, {"type": "text", "text": "make", "marks": [{"type": "code"}]}]}]},
     "run `make`"),
    ({"type": "doc", "content": [{"type": "heading", "attrs": {"level": 2},
                                  "content": [{"type": "text", "text": "Cause"}]}]}, "## Cause"),
    ({"type": "doc", "content": [{"type": "bulletList", "content": [
        {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "a"}]}]},
        {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "b"}]}]}]}]},
     "- a\n- b"),
    ({"type": "doc", "content": [{"type": "paragraph", "content": [
        {"type": "text", "text": "see"}, {"type": "hardBreak"},
        {"type": "text", "text": "docs", "marks": [{"type": "link", "attrs": {"href": "https://x.io"}}]}]}]},
     "see\n[docs](https://x.io)"),
])
def test_adf_to_markdown(node, text):
    from codellm_assets.core.data.sources.adf import adf_to_markdown

    assert adf_to_markdown(node) == text
