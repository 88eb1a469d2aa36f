"""Non-code sources: review comments (GitHub, GitLab), Confluence pages, Jira issues -> Markdown documents.

Plain Python (no Dagster): ``fetch_source`` reads one configured source incrementally; ``defs/sources.py``
stores the documents and the cursor per partition.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from codellm_assets.core.data.sources import confluence, github, gitlab, jira
from codellm_assets.core.data.sources.documents import FetchResult, SourceDocument, since_with_overlap
from codellm_assets.core.data.sources.errors import (
    SourceAuthError,
    SourceError,
    SourceFormatError,
    SourceHTTPError,
)
from codellm_assets.core.data.sources.http import ApiClient, Auth
from codellm_assets.settings import SourceSettings

CONNECTORS = {"github_reviews": github.fetch, "gitlab_reviews": gitlab.fetch,
              "confluence": confluence.fetch, "jira": jira.fetch}

__all__ = ["FetchResult", "SourceDocument", "SourceError", "SourceAuthError", "SourceFormatError",
           "SourceHTTPError", "client_for", "fetch_source"]


def client_for(cfg: SourceSettings, *, environ: Mapping[str, str] | None = None,
               sleep: Callable[[float], None] = time.sleep, backoff_s: float = 1.0) -> ApiClient:
    if cfg.kind == "gitlab_reviews":
        auth, extra = Auth("private-token", cfg.token_env), {}
    elif cfg.kind == "github_reviews":
        auth, extra = Auth("bearer", cfg.token_env), {"Accept": "application/vnd.github+json",
                                                      "X-GitHub-Api-Version": "2022-11-28"}
    else:
        auth, extra = Auth("basic" if cfg.user_env else "bearer", cfg.token_env, cfg.user_env), {}
    return ApiClient(cfg.name, cfg.base_url, auth, timeout_s=cfg.timeout_s, max_retries=cfg.max_retries,
                     max_retry_wait_s=cfg.max_retry_wait_s, backoff_s=backoff_s,
                     environ=os.environ if environ is None else environ, sleep=sleep, extra_headers=extra)


def fetch_source(cfg: SourceSettings, *, cursor: str | None, known: dict[str, str],
                 environ: Mapping[str, str] | None = None, sleep: Callable[[float], None] = time.sleep,
                 backoff_s: float = 1.0) -> tuple[FetchResult, ApiClient]:
    """Everything changed since ``cursor`` (None: since ``cfg.since``, else everything). Raises a SourceError
    (auth, format, HTTP) naming the source; nothing is returned half-done."""
    start = cursor or cfg.since
    since = since_with_overlap(start, cfg.overlap_minutes)
    with client_for(cfg, environ=environ, sleep=sleep, backoff_s=backoff_s) as client:
        try:
            result = CONNECTORS[cfg.kind](client, cfg, since=since, known=known)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            # an item without a field the API documents: the reply is not what we parse
            raise SourceFormatError(cfg.name, f"unexpected reply shape ({type(e).__name__}: {e})",
                                    url=client.last_url) from e
    return result, client
