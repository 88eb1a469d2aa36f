"""Jira issues of some projects (REST v2 ``/rest/api/2/search``, JQL by ``updated``), with their comments and
the commits linked to them (remote links whose URL names a commit)."""

from __future__ import annotations

import re
from datetime import datetime

from codellm_assets.core.data.sources.adf import adf_to_markdown
from codellm_assets.core.data.sources.documents import FetchResult, SourceDocument
from codellm_assets.core.data.sources.http import ApiClient
from codellm_assets.settings import SourceSettings

FIELDS = "summary,description,comment,updated,created,status,issuetype"
_COMMIT_URL = re.compile(r"/commits?/([0-9a-f]{7,40})\b")


def jql(cfg: SourceSettings, since: datetime | None) -> str:
    projects = ", ".join(f'"{p}"' for p in cfg.projects)
    clause = f' AND updated >= "{since.strftime("%Y/%m/%d %H:%M")}"' if since is not None else ""
    return f"project in ({projects}){clause} ORDER BY updated ASC"


def linked_commits(client: ApiClient, key: str, api: str = "2") -> list[tuple[str, str, str]]:
    """(sha, title, url) of the issue's remote links that point at a commit."""
    links, resp = client.get_json(f"/rest/api/{api}/issue/{key}/remotelink")
    out = []
    for link in client.expect(links, list, "a list of remote links", resp):
        obj = link.get("object") or {}
        m = _COMMIT_URL.search(obj.get("url") or "")
        if m:
            out.append((m.group(1), obj.get("title") or "", obj["url"]))
    return out


def render_issue(issue: dict, commits: list[tuple[str, str, str]]) -> str:
    f = issue["fields"]
    kind = (f.get("issuetype") or {}).get("name", "")
    status = (f.get("status") or {}).get("name", "")
    lines = [f"# {issue['key']}: {f.get('summary') or ''}", "", f"Type: {kind} · Status: {status}", ""]
    if f.get("description"):
        lines += [adf_to_markdown(f["description"]).strip(), ""]
    comments = ((f.get("comment") or {}).get("comments")) or []
    if comments:
        lines += ["## Comments", ""]
        for c in comments:
            lines += [f"**{(c.get('author') or {}).get('displayName', '?')}** ({c.get('created', '')}):", "",
                      adf_to_markdown(c.get("body")).strip(), ""]
    if commits:
        lines += ["## Linked commits", ""] + [f"- {sha[:12]} {title}".rstrip() for sha, title, _ in commits] + [""]
    return "\n".join(lines)


def fetch(client: ApiClient, cfg: SourceSettings, *, since: datetime | None, known: dict[str, str]) -> FetchResult:
    result = FetchResult()
    api = cfg.jira_api[1:]
    params = {"jql": jql(cfg, since), "fields": FIELDS, "maxResults": cfg.page_size}
    if api == "2":
        path, params["startAt"] = "/rest/api/2/search", 0
    else:   # Jira Cloud: the v2/v3 search endpoints were retired for /search/jql (nextPageToken)
        path = "/rest/api/3/search/jql"
    for page in client.jira_pages(path, params):
        for issue in page:
            updated = issue["fields"]["updated"]
            item = f"issue/{issue['key']}"
            admitted = result.admit(item, updated, seen_at=updated, known=known, max_items=cfg.max_items)
            if admitted is None:
                return result
            if not admitted:
                continue
            commits = linked_commits(client, issue["key"], api) if cfg.linked_commits else []
            base = cfg.base_url.rstrip("/")
            result.documents.append(SourceDocument(
                source=cfg.name, item=item, item_version=updated, doc=item, version=updated, kind="issue",
                title=issue["fields"].get("summary") or "", url=f"{base}/browse/{issue['key']}",
                updated_at=updated, content=render_issue(issue, commits)))
            result.saw(updated)
    return result
