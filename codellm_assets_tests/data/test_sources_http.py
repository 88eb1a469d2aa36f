"""The sources' HTTP client against real loopback servers: backoff rules, Retry-After, auth and format errors."""

from __future__ import annotations

import email.utils
import time

import pytest

from codellm_assets.core.data.sources import SourceAuthError, SourceFormatError, SourceHTTPError
from codellm_assets.core.data.sources.backoff import is_rate_limited, retry_after_seconds, retry_delay
from codellm_assets.core.data.sources.http import ApiClient, Auth
from codellm_assets.testing.replay_servers import ReplayServer, Reply, Route

NOW = 1_800_000_000.0


@pytest.mark.parametrize("status, headers, limited", [
    (429, {}, True),
    (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 30)}, True),   # GitHub primary
    (403, {"Retry-After": "60"}, True),                                                    # GitHub secondary
    (403, {"RateLimit-Remaining": "0"}, True),                                             # GitLab
    (403, {"X-RateLimit-Remaining": "12"}, False),    # a real permission refusal
    (403, {}, False),
    (401, {"Retry-After": "5"}, False),
    (200, {}, False),
])
def test_rate_limit_signs(status, headers, limited):
    assert is_rate_limited(status, headers) is limited


@pytest.mark.parametrize("value, seconds", [
    ("5", 5.0), ("0", 0.0),
    (email.utils.formatdate(NOW + 42, usegmt=True), 42.0),
    (email.utils.formatdate(NOW - 100, usegmt=True), 0.0),   # a date in the past: retry now
    ("soon", None), (None, None),
])
def test_retry_after_both_forms(value, seconds):
    got = retry_after_seconds(value, now=NOW)
    assert got == seconds if seconds is None else abs(got - seconds) < 1


@pytest.mark.parametrize("status, headers, attempt, wait", [
    (429, {"Retry-After": "7"}, 0, 7.0),
    (429, {"Retry-After": "7000"}, 0, 120.0),                       # capped
    (429, {}, 3, 8.0),                                              # exponential: 1 * 2**3
    (429, {}, 10, 120.0),
    (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 30)}, 0, 30.0),
    (503, {}, 2, 4.0),
    (404, {}, 0, None), (401, {}, 0, None), (403, {}, 0, None),
])
def test_retry_delay_table(status, headers, attempt, wait):
    assert retry_delay(status, headers, attempt, base_s=1.0, cap_s=120.0, now=NOW) == wait


def _client(server, token="good", **kw) -> ApiClient:
    return ApiClient("tickets", server.url, Auth("bearer", "TICKETS_TOKEN"), environ={"TICKETS_TOKEN": token},
                     backoff_s=0.05, **kw)


def test_429_waits_at_least_retry_after_then_succeeds():
    route = Route("GET", "/items", [Reply(429, json={"message": "slow down"}, headers={"Retry-After": "1"}),
                                    Reply(200, json=[1, 2])])
    with ReplayServer([route], auth=("Authorization", "Bearer good")) as server:
        with _client(server) as client:
            start = time.monotonic()
            items, _ = client.get_json("/items")
            elapsed = time.monotonic() - start
    assert items == [1, 2]
    assert elapsed >= 1.0 and client.waited_s == 1.0
    first, second = server.log
    assert second.at - first.at >= 1.0


def test_rate_limit_retries_run_out_with_a_clear_error():
    route = Route("GET", "/items", [Reply(429, json={}, headers={"Retry-After": "0"})])
    with ReplayServer([route]) as server, _client(server, max_retries=2) as client:
        with pytest.raises(SourceHTTPError, match=r"source 'tickets'.*HTTP 429.*gave up after 3 tries"):
            client.get_json("/items")
    assert len(server.log) == 3


@pytest.mark.parametrize("status, hint", [(401, "refused"), (403, "lacks access")])
def test_refused_token_names_source_partition_url_and_variable(status, hint):
    route = Route("GET", "/items", [Reply(status, json={"message": "Bad credentials"})])
    with ReplayServer([route]) as server, _client(server) as client:
        with pytest.raises(SourceAuthError) as err:
            client.get_json("/items")
    msg = str(err.value)
    assert "source 'tickets'" in msg and "partition 'tickets'" in msg and hint in msg
    assert "TICKETS_TOKEN" in msg and f"{server.url}/items" in msg
    assert len(server.log) == 1          # an auth failure is not retried


def test_wrong_token_against_a_checking_server_is_401():
    route = Route("GET", "/items", [Reply(200, json=[])])
    with ReplayServer([route], auth=("Authorization", "Bearer good")) as server, _client(server, "stale") as c:
        with pytest.raises(SourceAuthError, match="TICKETS_TOKEN"):
            c.get_json("/items")


def test_missing_token_variable_fails_before_any_request():
    with ReplayServer([]) as server:
        with pytest.raises(SourceAuthError, match="TICKETS_TOKEN is not set"):
            ApiClient("tickets", server.url, Auth("bearer", "TICKETS_TOKEN"), environ={})
    assert server.log == []


def test_malformed_page_names_source_and_url():
    routes = [Route("GET", "/p", [Reply(200, json=[1], headers={"Link": '<{base}/p?page=2>; rel="next"'})]),
              Route("GET", "/p", [Reply(200, body="<html>502 proxy error</html>")], query={"page": "2"})]
    with ReplayServer(routes) as server, _client(server) as client:
        pages = client.link_pages("/p", {})
        assert next(pages) == [1]
        with pytest.raises(SourceFormatError) as err:
            next(pages)
    assert "source 'tickets'" in str(err.value) and f"{server.url}/p?page=2" in str(err.value)
    assert "not JSON" in str(err.value)


def test_a_slow_reply_times_out_and_is_retried():
    route = Route("GET", "/slow", [Reply(200, json=[], delay_s=1.0), Reply(200, json=["ok"])])
    with ReplayServer([route]) as server, _client(server, timeout_s=0.3) as client:
        items, _ = client.get_json("/slow")
    assert items == ["ok"] and len(server.log) == 2


def test_basic_auth_and_gitlab_header():
    assert Auth("private-token", "GL").headers("s", {"GL": "t"}) == {"PRIVATE-TOKEN": "t"}
    assert Auth("basic", "TOK", "USER").headers("s", {"TOK": "t", "USER": "a@b.c"}) == \
        {"Authorization": "Basic YUBiLmM6dA=="}
    with pytest.raises(SourceAuthError, match="USER"):
        Auth("basic", "TOK", "USER").headers("s", {"TOK": "t"})


def test_403_rate_limit_with_an_http_date_is_waited_out():
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    route = Route("GET", "/items", [Reply(403, json={"message": "API rate limit exceeded"},
                                          headers={"X-RateLimit-Remaining": "0", "Retry-After": when}),
                                    Reply(200, json=["ok"])])
    with ReplayServer([route]) as server, _client(server) as client:
        items, _ = client.get_json("/items")
    assert items == ["ok"] and 0.5 <= client.waited_s <= 2.0
    assert server.log[1].at - server.log[0].at >= client.waited_s


def test_jira_next_page_token_and_confluence_start_limit():
    routes = [Route("GET", "/search/jql", [Reply(json={"issues": [1], "nextPageToken": "t2", "isLast": False})]),
              Route("GET", "/search/jql", [Reply(json={"issues": [2], "nextPageToken": "t3"})],
                    {"nextPageToken": "t2"}),
              Route("GET", "/search/jql", [Reply(json={"issues": [3], "isLast": True})], {"nextPageToken": "t3"}),
              Route("GET", "/content", [Reply(json={"results": [1, 2], "start": 0, "limit": 2, "size": 2})]),
              Route("GET", "/content", [Reply(json={"results": [3], "start": 2, "limit": 2, "size": 1})],
                    {"start": "2"})]
    with ReplayServer(routes) as server, _client(server) as client:
        assert list(client.jira_pages("/search/jql", {"jql": "x"})) == [[1], [2], [3]]
        assert list(client.confluence_pages("/content", {"limit": 2})) == [[1, 2], [3]]


def test_gitlab_link_header_wins_over_x_next_page():
    routes = [Route("GET", "/mrs", [Reply(json=[1], headers={"Link": '<{base}/mrs?page=9>; rel="next"',
                                                                "X-Next-Page": "2"})]),
              Route("GET", "/mrs", [Reply(json=[9])], {"page": "9"})]
    with ReplayServer(routes) as server, _client(server) as client:
        assert list(client.link_pages("/mrs", {})) == [[1], [9]]
