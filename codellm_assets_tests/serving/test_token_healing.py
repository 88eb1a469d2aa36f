"""Token healing in the gateway, on a real tiny model: the backend gets the prompt cut back to the cursor's
last visible character, the client gets what the model wrote after the cut whitespace - the same text
whole and streamed - and a stop sequence that would match inside the cut text ("\\n" after a cut newline)
is applied after it, not by the backend (which would end every answer at its first token)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from codellm_assets.core.data.fim import unheal
from codellm_assets.core.serving.backends.base import trim_at_stop
from codellm_assets_tests.serving.conftest import TinyModel, tiny_gateway
from codellm_assets_tests.serving.test_ide_protocols import Gw

PREFIX, SUFFIX = "def total(items):\n    result = 0\n    for item in items:\n        ", "\n    return result\n"
CUT = "\n        "


@pytest.fixture(scope="module")
def gw(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    with tiny_gateway(tiny_model.base, tmp_path_factory.mktemp("healing")) as (url, store, gateway, key):
        yield Gw(url, store, gateway, key)


def _raw(tiny_model: TinyModel, prompt: str, max_tokens: int) -> str:
    """What the model itself writes after ``prompt`` (greedy), outside the gateway."""
    from codellm_assets.core.training.inference import generate_completions, load_for_inference

    model, tok = load_for_inference(tiny_model.base, None)
    return generate_completions(model, tok, [prompt], max_new_tokens=max_tokens)[0][0]


def _streamed(gw: Gw, body: dict) -> str:
    text = ""
    with httpx.stream("POST", f"{gw.url}/v1/completions", json={**body, "stream": True}, timeout=60,
                      headers={"Authorization": f"Bearer {gw.key}"}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                text += json.loads(line[6:])["choices"][0]["text"]
    return text


@pytest.mark.parametrize("stop", [[], ["\n"]])
def test_the_backend_sees_the_healed_prompt_and_the_client_the_healed_answer(gw: Gw, tiny_model: TinyModel,
                                                                            stop: list[str]) -> None:
    body = {"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 12, "temperature": 0, "stop": stop}
    r = gw.post("/v1/completions", body)
    assert r.status_code == 200, r.text
    row = gw.row(r.json()["id"])
    fim = gw.gw.backend.fim("base")
    assert row["prompt"] == fim.build(PREFIX.removesuffix(CUT), SUFFIX) != fim.build(PREFIX, SUFFIX)
    expected, _ = trim_at_stop(unheal(_raw(tiny_model, row["prompt"], 12), CUT), stop)
    assert r.json()["choices"][0]["text"] == expected == row["completion"]
    assert _streamed(gw, body) == expected
    if stop:
        assert "\n" not in expected


def test_healing_off_sends_the_prompt_as_typed(gw: Gw) -> None:
    gw.gw.settings.token_healing = False
    try:
        r = gw.post("/v1/completions", {"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 4, "temperature": 0})
        fim = gw.gw.backend.fim("base")
        assert gw.row(r.json()["id"])["prompt"] == fim.build(PREFIX, SUFFIX)
    finally:
        gw.gw.settings.token_healing = True
