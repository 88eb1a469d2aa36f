"""GitLab merge-request discussions (REST v4), incremental by ``updated_after``.

Diff notes carry a ``position`` (path, new_line, head_sha) but no hunk: the code is read from the file at the
reviewed commit; the MR's diffs say whether a suggestion (```suggestion:-A+B) made it into the merge.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from codellm_assets.core.data.sources.documents import FetchResult, SourceDocument, iso, parse_time
from codellm_assets.core.data.sources.http import ApiClient
from codellm_assets.core.data.sources.reviews import ReviewThread, added_lines, find_suggestion, render
from codellm_assets.settings import SourceSettings

CONTEXT_LINES = 4   # code shown above the commented line


def _all(client: ApiClient, path: str, page_size: int) -> list:
    return [x for page in client.link_pages(path, {"per_page": page_size}) for x in page]


def _thread(client: ApiClient, project: str, notes: list[dict], diffs: dict[str, str]) -> ReviewThread | None:
    root = notes[0]
    pos = root.get("position") or {}
    path, line = pos.get("new_path") or pos.get("old_path"), pos.get("new_line")
    if root.get("type") != "DiffNote" or not path or not line or not pos.get("head_sha"):
        return None   # a general MR comment, or one on a removed line: no code to pair it with
    raw = client.request("GET", f"/projects/{project}/repository/files/{quote(path, safe='')}/raw",
                         params={"ref": pos["head_sha"]}).text.split("\n")
    suggestion = find_suggestion(root.get("body") or "")
    above, below = (suggestion.above, suggestion.below) if suggestion else (0, 0)
    first = max(0, line - 1 - above - CONTEXT_LINES)
    code = raw[first: line + below]
    return ReviewThread(path=path, code=code, commented=min(len(code), 1 + above + below),
                        comments=[((n.get("author") or {}).get("username", "?"), n.get("body") or "") for n in notes],
                        final_added=added_lines(diffs.get(path)))


def _mr_documents(client: ApiClient, cfg: SourceSettings, project: str, mr: dict) -> list[SourceDocument]:
    base = f"/projects/{project}/merge_requests/{mr['iid']}"
    discussions = _all(client, f"{base}/discussions", cfg.page_size)
    diffs: dict[str, str] | None = None
    docs = []
    for d in discussions:
        notes = [n for n in d.get("notes") or [] if not n.get("system")]
        if not notes or (cfg.resolved_only and not notes[0].get("resolved")):
            continue
        if diffs is None:
            diffs = {x.get("new_path"): x.get("diff") for x in _all(client, f"{base}/diffs", cfg.page_size)}
        thread = _thread(client, project, notes, diffs)
        if thread is None:
            continue
        kind, text = render(thread, f"!{mr['iid']} {mr.get('title', '')}")
        version = max(n.get("updated_at") or n["created_at"] for n in notes)
        docs.append(SourceDocument(
            source=cfg.name, item=f"mr/{mr['iid']}", item_version=mr["updated_at"],
            doc=f"mr/{mr['iid']}/discussion/{d['id']}", version=version, kind=kind, title=mr.get("title", ""),
            url=f"{mr.get('web_url', '')}#note_{notes[0].get('id')}", updated_at=version, content=text))
    return docs


def fetch(client: ApiClient, cfg: SourceSettings, *, since: datetime | None, known: dict[str, str]) -> FetchResult:
    project = quote(str(cfg.project), safe="")
    result = FetchResult()
    params = {"state": "merged", "order_by": "updated_at", "sort": "desc", "per_page": cfg.page_size}
    if since is not None:
        params["updated_after"] = iso(since)
    for page in client.link_pages(f"/projects/{project}/merge_requests", params):
        for mr in page:
            updated = mr["updated_at"]
            if since is not None and parse_time(updated) < since:
                return result
            admitted = result.admit(f"mr/{mr['iid']}", updated, seen_at=updated, known=known,
                                    max_items=cfg.max_items)
            if admitted is None:
                return result
            if not admitted:
                continue
            result.documents += _mr_documents(client, cfg, project, mr)
            result.saw(updated)
    return result
