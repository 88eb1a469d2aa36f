"""The HTTP client every connector uses: auth from the environment, timeouts, retries with backoff, and the
four pagination styles (Link headers, GitLab's X-Next-Page, Confluence's ``_links.next``, Jira's startAt/total
or nextPageToken). A reply that is not the documented JSON raises before anything is stored."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from codellm_assets.core.data.sources.backoff import retry_delay
from codellm_assets.core.data.sources.errors import SourceAuthError, SourceFormatError, SourceHTTPError

_AUTH_HINT = {401: "the token was refused (wrong, expired or revoked)",
              403: "the token lacks access to this resource (scope / permission)"}


@dataclass
class Auth:
    """How a source's token travels: ``bearer`` (GitHub, Atlassian PATs), ``private-token`` (GitLab) or
    ``basic`` (Atlassian Cloud: the account e-mail + API token)."""

    scheme: str
    token_env: str
    user_env: str | None = None

    def headers(self, source: str, environ: Mapping[str, str]) -> dict[str, str]:
        token = (environ.get(self.token_env) or "").strip()
        if not token:
            raise SourceAuthError(source, f"environment variable {self.token_env} is not set: set it to the "
                                  "API token (Kubernetes: a Secret mounted as env)")
        if self.scheme == "private-token":
            return {"PRIVATE-TOKEN": token}
        if self.scheme == "basic" and self.user_env:
            user = (environ.get(self.user_env) or "").strip()
            if not user:
                raise SourceAuthError(source, f"environment variable {self.user_env} (the account e-mail for "
                                      "basic auth) is not set")
            return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}
        return {"Authorization": f"Bearer {token}"}


@dataclass
class ApiClient:
    source: str
    base_url: str
    auth: Auth
    timeout_s: float = 30.0
    max_retries: int = 5
    max_retry_wait_s: float = 120.0
    backoff_s: float = 1.0
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    sleep: Callable[[float], None] = time.sleep
    extra_headers: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    last_url: str | None = None
    waited_s: float = 0.0

    def __post_init__(self) -> None:
        headers = {"Accept": "application/json", "User-Agent": "codellm-sources",
                   **self.extra_headers, **self.auth.headers(self.source, self.environ)}
        self._http = httpx.Client(headers=headers, timeout=self.timeout_s, follow_redirects=True)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url.rstrip("/") + "/" + path_or_url.lstrip("/")

    def request(self, method: str, path_or_url: str, *, params: Mapping[str, Any] | None = None,
                json_body: Any = None) -> httpx.Response:
        """One request, retried on rate limits / 5xx / timeouts; 401 and 403 raise SourceAuthError."""
        url = self.last_url = self.url(path_or_url)
        for attempt in range(self.max_retries + 1):
            self.requests += 1
            try:
                resp = self._http.request(method, url, params=params or None, json=json_body)
                self.last_url = str(resp.request.url)
            except httpx.TimeoutException as e:
                failure = f"no reply within {self.timeout_s}s ({type(e).__name__})"
                wait = min(self.backoff_s * 2 ** attempt, self.max_retry_wait_s)
            except httpx.TransportError as e:
                failure = f"cannot connect ({e}): check base_url"
                wait = min(self.backoff_s * 2 ** attempt, self.max_retry_wait_s)
            else:
                wait = retry_delay(resp.status_code, resp.headers, attempt, base_s=self.backoff_s,
                                   cap_s=self.max_retry_wait_s)
                if wait is None:
                    return self._checked(resp)
                failure = f"HTTP {resp.status_code} (rate limited or server error)"
            if attempt == self.max_retries:
                raise SourceHTTPError(self.source, f"{failure}; gave up after {attempt + 1} tries", url=url)
            self.waited_s += wait
            self.sleep(wait)
        raise AssertionError("unreachable")

    def _checked(self, resp: httpx.Response) -> httpx.Response:
        url = str(resp.request.url)
        if resp.status_code in _AUTH_HINT:
            raise SourceAuthError(self.source, f"HTTP {resp.status_code}: {_AUTH_HINT[resp.status_code]}; set "
                                  f"{self.auth.token_env} to a valid token with read access", url=url)
        if resp.status_code >= 400:
            raise SourceHTTPError(self.source, f"HTTP {resp.status_code}: {resp.text[:200]!r}", url=url)
        return resp

    def get_json(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> tuple[Any, httpx.Response]:
        resp = self.request("GET", path_or_url, params=params)
        return self.decode(resp), resp

    def decode(self, resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError as e:
            raise SourceFormatError(self.source, f"the reply is not JSON ({e}; starts {resp.text[:60]!r})",
                                    url=str(resp.request.url)) from e

    def expect(self, value: Any, kind: type, what: str, resp: httpx.Response) -> Any:
        if not isinstance(value, kind):
            raise SourceFormatError(self.source, f"expected {what} ({kind.__name__}), got "
                                    f"{type(value).__name__}", url=str(resp.request.url))
        return value

    # ---- pagination ---------------------------------------------------------------------------------
    def link_pages(self, path: str, params: Mapping[str, Any]) -> Iterator[list]:
        """GitHub / GitLab: a JSON list per page; the next page from ``Link: <…>; rel="next"`` or, on GitLab
        without Link headers, ``X-Next-Page``."""
        url, query = self.url(path), dict(params)
        while True:
            items, resp = self.get_json(url, query)
            yield self.expect(items, list, "a JSON list", resp)
            nxt = resp.links.get("next", {}).get("url")
            if nxt:
                url, query = nxt, {}
                continue
            page = resp.headers.get("x-next-page", "").strip()
            if not page:
                return
            url, query = str(resp.request.url.copy_with(query=None)), {**query, "page": page}

    def confluence_pages(self, path: str, params: Mapping[str, Any]) -> Iterator[list]:
        """Confluence: ``{"results": [...], "start", "limit", "size", "_links": {"next", "base"}}``."""
        url, query = self.url(path), dict(params)
        while True:
            page, resp = self.get_json(url, query)
            self.expect(page, dict, "a JSON object with results", resp)
            yield self.expect(page.get("results"), list, "'results' list", resp)
            links = page.get("_links") or {}
            if links.get("next"):
                base = links.get("base") or self.base_url
                url, query = urljoin(base.rstrip("/") + "/", links["next"].lstrip("/")), {}
            elif "_links" not in page and page.get("size", 0) >= page.get("limit", 1 << 30) > 0:
                query = {**query, "start": int(page.get("start", 0)) + int(page["size"])}
            else:
                return

    def jira_pages(self, path: str, params: Mapping[str, Any], key: str = "issues") -> Iterator[list]:
        """Jira: startAt / maxResults / total (``/rest/api/2/search``) or nextPageToken / isLast (``search/jql``)."""
        query = dict(params)
        while True:
            page, resp = self.get_json(path, query)
            self.expect(page, dict, f"a JSON object with {key}", resp)
            items = self.expect(page.get(key), list, f"'{key}' list", resp)
            yield items
            if "nextPageToken" in page or "isLast" in page:
                if page.get("isLast") is True or not page.get("nextPageToken"):
                    return
                query = {**query, "nextPageToken": page["nextPageToken"]}
                continue
            start = int(page.get("startAt", query.get("startAt", 0))) + len(items)
            if not items or start >= int(page.get("total", 0)):
                return
            query = {**query, "startAt": start}
