"""GitHub pull-request review comments (REST v3), incremental by the PR's ``updated_at``.

Closed PRs are listed newest-updated first and the listing stops at the first PR older than the cursor. For
each changed PR: its review comments (``diff_hunk``, ``path``, ``original_line``, ``in_reply_to_id``), its
files (the merged patch: was a suggestion applied?) and its commits ("Apply suggestions from code review"
when the patch is not shown). ``resolved_only`` asks GraphQL which threads are resolved (REST does not say).
"""

from __future__ import annotations

from datetime import datetime

from codellm_assets.core.data.sources.documents import FetchResult, SourceDocument, parse_time
from codellm_assets.core.data.sources.http import ApiClient
from codellm_assets.core.data.sources.reviews import (
    ReviewThread,
    added_lines,
    find_suggestion,
    hunk_new_side,
    render,
    revised_region,
)
from codellm_assets.settings import SourceSettings

_THREADS_QUERY = """query($owner: String!, $name: String!, $number: Int!, $after: String) {
  repository(owner: $owner, name: $name) { pullRequest(number: $number) {
    reviewThreads(first: 100, after: $after) {
      nodes { isResolved comments(first: 1) { nodes { databaseId } } }
      pageInfo { hasNextPage endCursor } } } } }"""


def graphql_url(base_url: str) -> str:
    """https://api.github.com -> /graphql; GitHub Enterprise https://HOST/api/v3 -> https://HOST/api/graphql."""
    base = base_url.rstrip("/")
    return base[: -len("/v3")] + "/graphql" if base.endswith("/api/v3") else base + "/graphql"


def _all(client: ApiClient, path: str, page_size: int) -> list:
    return [x for page in client.link_pages(path, {"per_page": page_size}) for x in page]


def resolved_roots(client: ApiClient, owner: str, name: str, number: int) -> set[int]:
    """Database ids of the first comment of every resolved review thread of a PR."""
    roots: set[int] = set()
    after = None
    while True:
        resp = client.request("POST", graphql_url(client.base_url), json_body={
            "query": _THREADS_QUERY, "variables": {"owner": owner, "name": name, "number": number, "after": after}})
        data = client.expect(client.decode(resp), dict, "a GraphQL reply", resp)
        try:
            threads = data["data"]["repository"]["pullRequest"]["reviewThreads"]
        except (KeyError, TypeError):
            raise_format(client, resp, f"GraphQL reviewThreads missing ({str(data.get('errors'))[:200]})")
        for t in threads["nodes"]:
            if t["isResolved"] and t["comments"]["nodes"]:
                roots.add(int(t["comments"]["nodes"][0]["databaseId"]))
        if not threads["pageInfo"]["hasNextPage"]:
            return roots
        after = threads["pageInfo"]["endCursor"]


def raise_format(client: ApiClient, resp, message: str):
    from codellm_assets.core.data.sources.errors import SourceFormatError

    raise SourceFormatError(client.source, message, url=str(resp.request.url))


def _thread(root: dict, replies: list[dict], patch: str | None, applied_commit: bool) -> ReviewThread:
    code = hunk_new_side(root.get("diff_hunk") or "")
    start, end = root.get("original_start_line"), root.get("original_line")
    commented = min(len(code), (end - start + 1) if start and end and end >= start else 1)
    original = code[len(code) - commented:]
    thread = ReviewThread(
        path=root["path"], code=code, commented=commented, diff=root.get("diff_hunk") or "",
        comments=[((c.get("user") or {}).get("login", "?"), c.get("body") or "") for c in [root, *replies]],
        final_added=added_lines(patch))
    suggestion = find_suggestion(root.get("body") or "")
    if suggestion and patch is None and applied_commit:   # no patch shown (a large file): trust the commit
        thread.revised = code[: len(code) - commented] + suggestion.lines
    elif not suggestion and root.get("line") is None:     # outdated: a later commit changed these lines
        thread.revised = revised_region(patch, end, original, width=min(len(code) - 1, commented + 2))
    return thread


def _pull_documents(client: ApiClient, cfg: SourceSettings, pr: dict) -> list[SourceDocument]:
    owner, name = cfg.repo.split("/")
    base, number = f"/repos/{owner}/{name}/pulls/{pr['number']}", int(pr["number"])
    comments = _all(client, f"{base}/comments", cfg.page_size)
    roots = [c for c in comments if not c.get("in_reply_to_id")]
    if cfg.resolved_only and roots:
        resolved = resolved_roots(client, owner, name, number)
        roots = [c for c in roots if int(c["id"]) in resolved]
    if not roots:
        return []
    patches = {f["filename"]: f.get("patch") for f in _all(client, f"{base}/files", cfg.page_size)}
    commits = _all(client, f"{base}/commits", cfg.page_size)
    docs = []
    for root in roots:
        replies = [c for c in comments if c.get("in_reply_to_id") == root["id"]]
        when = parse_time(root["created_at"])
        applied_commit = any(
            (c.get("commit") or {}).get("message", "").lower().startswith("apply suggestion")
            and parse_time(c["commit"]["committer"]["date"]) >= when for c in commits)
        kind, text = render(_thread(root, replies, patches.get(root["path"]), applied_commit),
                            f"#{number} {pr.get('title', '')}")
        version = max(c.get("updated_at") or c["created_at"] for c in [root, *replies])
        docs.append(SourceDocument(
            source=cfg.name, item=f"pull/{number}", item_version=pr["updated_at"],
            doc=f"pull/{number}/comment/{root['id']}", version=version, kind=kind, title=pr.get("title", ""),
            url=root.get("html_url", ""), updated_at=version, content=text))
    return docs


def fetch(client: ApiClient, cfg: SourceSettings, *, since: datetime | None, known: dict[str, str]) -> FetchResult:
    owner, name = cfg.repo.split("/")
    result = FetchResult()
    params = {"state": "closed", "sort": "updated", "direction": "desc", "per_page": cfg.page_size}
    for page in client.link_pages(f"/repos/{owner}/{name}/pulls", params):
        for pr in page:
            updated = pr["updated_at"]
            if since is not None and parse_time(updated) < since:
                return result    # newest first: everything after this is older than the cursor
            admitted = result.admit(f"pull/{pr['number']}", updated, seen_at=updated, known=known,
                                    max_items=cfg.max_items)
            if admitted is None:
                return result
            if not admitted:
                continue
            result.documents += _pull_documents(client, cfg, pr)
            result.saw(updated)
    return result
