"""Confluence pages of a space (REST ``/rest/api/content``), storage format -> Markdown.

First run: every page of the space (``/rest/api/content?spaceKey=…``). Later runs: CQL ``lastmodified >=
cursor`` (``/rest/api/content/search``); a page listed with the version already stored is not re-emitted.
``base_url`` is the Confluence root: ``https://SITE.atlassian.net/wiki`` on Cloud.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urljoin

from codellm_assets.core.data.sources.documents import FetchResult, SourceDocument
from codellm_assets.core.data.sources.http import ApiClient
from codellm_assets.core.data.sources.storage_markdown import storage_to_markdown
from codellm_assets.settings import SourceSettings

EXPAND = "body.storage,version"


def _listing(cfg: SourceSettings, since: datetime | None) -> tuple[str, dict]:
    if since is None:
        return "/rest/api/content", {"spaceKey": cfg.space, "type": "page", "expand": EXPAND,
                                     "limit": cfg.page_size}
    # CQL dates are minutes in the user's zone ("yyyy/MM/dd HH:mm"); overlap_minutes covers the difference
    cql = f'space = "{cfg.space}" and type = page and lastmodified >= "{since.strftime("%Y/%m/%d %H:%M")}" ' \
          "order by lastmodified"
    return "/rest/api/content/search", {"cql": cql, "expand": EXPAND, "limit": cfg.page_size}


def fetch(client: ApiClient, cfg: SourceSettings, *, since: datetime | None, known: dict[str, str]) -> FetchResult:
    result = FetchResult()
    path, params = _listing(cfg, since)
    for page in client.confluence_pages(path, params):
        for content in page:
            version = content["version"]
            item, number = f"page/{content['id']}", str(version["number"])
            admitted = result.admit(item, number, seen_at=version["when"], known=known, max_items=cfg.max_items)
            if admitted is None:
                return result
            if not admitted:
                continue
            storage = ((content.get("body") or {}).get("storage") or {}).get("value", "")
            webui = (content.get("_links") or {}).get("webui", "")
            result.documents.append(SourceDocument(
                source=cfg.name, item=item, item_version=number, doc=item, version=number, kind="page",
                title=content.get("title", ""), url=urljoin(cfg.base_url.rstrip("/") + "/", webui.lstrip("/")),
                updated_at=version["when"], content=storage_to_markdown(storage, content.get("title"))))
            result.saw(version["when"])
    return result
