"""Routing logic with many synthetic users: weights, stickiness, pinning, shadow share, breaker; and the
prompt plumbing the backends share (stop sequences, FIM, chat rendering, request validation)."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from codellm_assets.core.serving.backends.base import (
    FimTokens,
    StopScanner,
    detect_fim,
    render_chat,
    trim_at_stop,
)
from codellm_assets.core.serving.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    FeedbackRequest,
    validation_message,
)
from codellm_assets.core.serving.router import Router, RoutingTable, sticky_bucket
from codellm_assets.core.serving.routes import Route

PROD = Route("production", "base", "/m", None, 95)
CANARY = Route("canary", "v2", "/m", "/a", 5)
SHADOW = Route("shadow", "v3", "/m", "/b", 30)
NOW = 1_800_000_000.0


def _router(*routes: Route, **kw: object) -> Router:
    r = Router(sticky_window_s=3600, rng=random.Random(0), **kw)  # type: ignore[arg-type]
    r.set_table(RoutingTable.from_routes(list(routes)))
    return r


def test_95_5_split_over_many_users_is_about_5_percent() -> None:
    r = _router(PROD, CANARY)
    slots = [r.choose(f"user{i}", now=NOW).slot for i in range(20_000)]
    assert 0.04 < slots.count("canary") / len(slots) < 0.06


def test_a_user_sees_one_version_within_the_window() -> None:
    r = _router(PROD, CANARY)
    for i in range(500):
        first = r.choose(f"dev{i}", now=NOW).slot
        assert all(r.choose(f"dev{i}", now=NOW + dt).slot == first for dt in (0.5, 1, 7, 30))


def test_windows_reshuffle_users_over_time() -> None:
    users = [f"dev{i}" for i in range(2000)]
    early = {u for u in users if sticky_bucket(u, 3600, NOW) < 50}
    late = {u for u in users if sticky_bucket(u, 3600, NOW + 10 * 3600) < 50}
    assert 0.3 < len(early & late) / len(early) < 0.7            # independent draws: about half overlap


def test_raising_the_weight_keeps_canary_users_on_the_canary() -> None:
    users = [f"dev{i}" for i in range(3000)]
    at5 = {u for u in users if _router(PROD, CANARY).choose(u, now=NOW).slot == "canary"}
    r25 = _router(Route("production", "base", "/m", None, 75), Route("canary", "v2", "/m", "/a", 25))
    at25 = {u for u in users if r25.choose(u, now=NOW).slot == "canary"}
    assert at5 <= at25 and 0.2 < len(at25) / len(users) < 0.3


@pytest.mark.parametrize("prod_w, canary_w, expected", [(100, 0, {"production"}), (0, 100, {"canary"})])
def test_blue_green_extremes(prod_w: int, canary_w: int, expected: set[str]) -> None:
    r = _router(Route("production", "base", "/m", None, prod_w), Route("canary", "v2", "/m", None, canary_w))
    assert {r.choose(f"u{i}", now=NOW).slot for i in range(300)} == expected


def test_requests_naming_a_version_are_pinned() -> None:
    r = _router(PROD, CANARY)
    assert r.choose("u1", model="v2").slot == "canary"
    assert r.choose("u1", model="base").slot == "production"
    assert r.choose("u1", model="codellm", now=NOW).route.version in ("base", "v2")


def test_shadow_mirrors_its_weight_in_percent() -> None:
    r = _router(PROD, CANARY, SHADOW)
    picks = [r.pick_shadow() for _ in range(5000)]
    assert 0.27 < sum(p is not None for p in picks) / 5000 < 0.33
    assert _router(PROD).pick_shadow() is None


def test_breaker_opens_after_repeated_canary_failures_and_resets_on_a_new_canary() -> None:
    r = _router(Route("production", "base", "/m", None, 0), Route("canary", "v2", "/m", None, 100),
                breaker_failures=3, breaker_open_s=60)
    for _ in range(2):
        r.canary_failed()
    assert r.choose("u").slot == "canary"
    r.canary_failed()
    assert r.breaker_open() and r.choose("u").slot == "production"
    r.set_table(RoutingTable.from_routes([Route("production", "base", "/m", None, 0),
                                          Route("canary", "v3", "/m", None, 100)]))
    assert not r.breaker_open() and r.choose("u").slot == "canary"


def test_no_production_route_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        Router().choose("u")


# ---- prompt plumbing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, stops, expected", [
    ("abc\ndef", ["\n"], ("abc", True)),
    ("abc", ["x"], ("abc", False)),
    ("a;b\nc", ["\n", ";"], ("a", True)),
    ("abc", [], ("abc", False)),
])
def test_trim_at_stop(text: str, stops: list[str], expected: tuple[str, bool]) -> None:
    assert trim_at_stop(text, stops) == expected


@pytest.mark.parametrize("pieces, stops, expected", [
    (["def f", "():\n", "    re", "turn 1\n\ndef g"], ["\n\ndef"], "def f():\n    return 1"),
    (["ab", "c<", "|e", "nd|>", "zz"], ["<|end|>"], "abc"),
    (["abc", "def"], [], "abcdef"),
    (["abc<|en"], ["<|end|>"], "abc<|en"),           # a partial stop at the very end is text
])
def test_stop_scanner_never_emits_a_split_stop(pieces: list[str], stops: list[str], expected: str) -> None:
    scanner = StopScanner(stops)
    out = "".join(scanner.feed(p) for p in pieces) + scanner.finish()
    assert out == expected


class _Vocab:
    def __init__(self, *tokens: str) -> None:
        self.tokens = tokens

    def get_vocab(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}


@pytest.mark.parametrize("vocab, expected", [
    (_Vocab("<fim_prefix>", "<fim_suffix>", "<fim_middle>"), "<fim_prefix>A<fim_suffix>B<fim_middle>"),
    (_Vocab("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"), "<|fim_prefix|>A<|fim_suffix|>B<|fim_middle|>"),
    (_Vocab("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"), "<｜fim▁begin｜>A<｜fim▁hole｜>B<｜fim▁end｜>"),
    (_Vocab("<fim_prefix>", "<fim_middle>"), None),
])
def test_fim_layouts(vocab: _Vocab, expected: str | None) -> None:
    fim = detect_fim(vocab)
    assert (fim.build("A", "B") if fim else None) == expected


def test_chat_without_template_is_role_tagged_and_stops_at_the_next_turn() -> None:
    prompt, stops = render_chat(None, [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": "hi"}])
    assert prompt == "<|system|>\nbe brief\n<|user|>\nhi\n<|assistant|>\n"
    assert "\n<|user|>" in stops
    assert FimTokens("a", "b", "c").build("P", "S") == "aPbSc"


@pytest.mark.parametrize("body, param", [
    ({"prompt": "x", "temperature": -0.1}, "temperature"),
    ({"prompt": "x", "temperature": 2.5}, "temperature"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "n": 9}, "n"),
    ({"prompt": "x", "top_p": 0}, "top_p"),
    ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"prompt": "x", "stop": [""]}, "stop"),
    ({"prompt": []}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({}, "prompt"),
])
def test_completion_request_rejections_name_the_parameter(body: dict, param: str) -> None:
    with pytest.raises(ValidationError) as e:
        CompletionRequest.model_validate(body)
    assert validation_message(e.value.errors())[1] == param


def test_valid_requests_and_extensions() -> None:
    r = CompletionRequest.model_validate({"prompt": ["a", "b"], "stop": "\n", "vendor_field": 1})
    assert r.prompts == ["a", "b"] and r.stop == ["\n"] and r.max_tokens == 16
    chat = ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], "max_completion_tokens": 7})
    assert chat.messages[0].text() == "ab" and chat.effective_max_tokens == 7
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"messages": []})
    with pytest.raises(ValidationError):
        FeedbackRequest.model_validate({"completion_id": "c", "event": "like"})
    with pytest.raises(ValidationError):
        FeedbackRequest.model_validate({"completion_id": "c", "event": "accept",
                                        "survival": {"after_s": 30, "fraction": 1.5}})
