"""Completions from an OpenAI-compatible endpoint (the codellm gateway, or vLLM directly): lets evaluation
score the model that is actually deployed, through the same path developers' IDEs use."""

from __future__ import annotations

from collections.abc import Sequence

import httpx


class RemoteGenerationError(RuntimeError):
    """The endpoint refused or failed; the message names the URL, the model and the status."""


class OpenAICompletions:
    """`generate(prompts, ...) -> list[list[str]]` with the signature of `model_inference.generate_completions`
    (minus the model), over `POST {base_url}/v1/completions`."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 120.0):
        self.base_url = base_url.rstrip("/")
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout_s, headers=headers)

    def served_models(self) -> list[str]:
        r = self.client.get(f"{self.base_url}/v1/models")
        r.raise_for_status()
        return [m["id"] for m in r.json().get("data", [])]

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int = 64, temperature: float = 0.0,
                 stop: Sequence[str] | None = None, num_samples: int = 1) -> list[list[str]]:
        out = []
        for prompt in prompts:
            body = {"model": self.model, "prompt": prompt, "max_tokens": max_new_tokens,
                    "temperature": temperature, "n": num_samples}
            if stop:
                body["stop"] = list(stop)[:4]   # the OpenAI API takes at most 4 stop sequences
            r = self.client.post(f"{self.base_url}/v1/completions", json=body)
            if r.status_code != 200:
                raise RemoteGenerationError(f"{self.base_url} model {self.model}: HTTP {r.status_code} "
                                            f"{r.text[:200]}")
            choices = sorted(r.json()["choices"], key=lambda c: c.get("index", 0))
            out.append([_cut(c["text"], stop) for c in choices])
        return out

    def close(self) -> None:
        self.client.close()


def _cut(text: str, stop: Sequence[str] | None) -> str:
    """Apply every stop sequence locally too (the API honours only four)."""
    cut = len(text)
    for s in stop or ():
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]
