"""Completions from an OpenAI-compatible endpoint (the codellm gateway, or vLLM directly): lets evaluation
score the model that is actually deployed, through the same path developers' IDEs use."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx


class RemoteGenerationError(RuntimeError):
    """The endpoint refused or failed; the message names the URL, the model and the status."""


class OpenAICompletions:
    """`generate(prompts, ...) -> list[list[str]]` with the signature of `model_inference.generate_completions`
    (minus the model), over `POST {base_url}/v1/completions`."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 120.0, *,
                 batch_size: int = 16, concurrency: int = 4):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.batch_size, self.concurrency = max(1, batch_size), max(1, concurrency)   # the gateway takes <= 16
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout_s, headers=headers)

    def served_models(self) -> list[str]:
        r = self.client.get(f"{self.base_url}/v1/models")
        r.raise_for_status()
        return [m["id"] for m in r.json().get("data", [])]

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int = 64, temperature: float = 0.0,
                 stop: Sequence[str] | None = None, num_samples: int = 1) -> list[list[str]]:
        """Batched like the bigcode/evalplus harnesses do with vLLM: ``batch_size`` prompts per request (the
        OpenAI API takes a list), ``concurrency`` requests in flight, so the server batches them."""
        batches = [list(prompts[i:i + self.batch_size]) for i in range(0, len(prompts), self.batch_size)]

        # greedy samples are all the same (vLLM refuses n > 1 at temperature 0): ask once, repeat
        n = 1 if temperature == 0 else num_samples

        def one(batch: list[str]) -> list[list[str]]:
            body = {"model": self.model, "prompt": batch, "max_tokens": max_new_tokens,
                    "temperature": temperature, "n": n}
            if stop:
                body["stop"] = list(stop)[:4]   # the OpenAI API takes at most 4 stop sequences
            r = self.client.post(f"{self.base_url}/v1/completions", json=body)
            if r.status_code != 200:
                raise RemoteGenerationError(f"{self.base_url} model {self.model}: HTTP {r.status_code} "
                                            f"{r.text[:200]}")
            choices = sorted(r.json()["choices"], key=lambda c: c.get("index", 0))
            if len(choices) != len(batch) * n:
                raise RemoteGenerationError(f"{self.base_url} model {self.model}: {len(choices)} choices for "
                                            f"{len(batch)} prompts x {n} samples")
            texts = [_cut(c["text"], stop) for c in choices]
            return [texts[i * n:(i + 1) * n] * (num_samples // n) for i in range(len(batch))]

        if len(batches) <= 1 or self.concurrency <= 1:
            return [row for b in batches for row in one(b)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return [row for rows in pool.map(one, batches) for row in rows]

    def close(self) -> None:
        self.client.close()


class VllmAdapterGeneration(OpenAICompletions):
    """The challenger adapter served by the serving vLLM itself (``serving.backend: vllm``): loaded under a
    name of its own (``/v1/load_lora_adapter``), generated in batches, unloaded by :meth:`close`. vLLM must
    serve the adapter's base model (its ``/v1/models`` root) and see ``adapter_dir`` at the same path."""

    def __init__(self, vllm_url: str, adapter_dir: str | Path, *, timeout_s: float = 300.0) -> None:
        name = "codellm-eval-" + hashlib.sha256(str(adapter_dir).encode()).hexdigest()[:10]
        super().__init__(vllm_url, name, timeout_s=timeout_s)
        self.adapter_dir = str(adapter_dir)

    def base_root(self) -> str | None:
        r = self.client.get(f"{self.base_url}/v1/models")
        r.raise_for_status()
        return next((m.get("root") for m in r.json().get("data", []) if not m.get("parent")), None)

    def load(self) -> VllmAdapterGeneration:
        r = self.client.post(f"{self.base_url}/v1/load_lora_adapter",
                             json={"lora_name": self.model, "lora_path": self.adapter_dir})
        if r.status_code != 200 and "already" not in r.text:
            raise RemoteGenerationError(f"{self.base_url} cannot load {self.adapter_dir}: HTTP {r.status_code} "
                                        f"{r.text[:200]} (vLLM needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)")
        return self

    def close(self) -> None:
        try:     # free the LoRA slot for the routed versions
            self.client.post(f"{self.base_url}/v1/unload_lora_adapter", json={"lora_name": self.model})
        except httpx.HTTPError:
            pass
        super().close()


def vllm_challenger(vllm_url: str | None, base_model_dir: str | Path, adapter_dir: str | Path,
                    log=print) -> VllmAdapterGeneration | None:
    """The challenger's generation on the serving vLLM, or None (then the caller generates locally) when
    there is no vLLM, it does not answer, or it serves another base model."""
    if not vllm_url:
        return None
    gen = VllmAdapterGeneration(vllm_url, adapter_dir)
    try:
        root = gen.base_root()
        if root is None or Path(root).resolve() != Path(base_model_dir).resolve():
            log(f"vLLM at {vllm_url} serves {root}, not {base_model_dir}: generating locally")
            gen.client.close()
            return None
        return gen.load()
    except (httpx.HTTPError, RemoteGenerationError) as e:
        log(f"vLLM at {vllm_url} not usable for evaluation ({e}): generating locally")
        gen.client.close()
        return None


def _cut(text: str, stop: Sequence[str] | None) -> str:
    """Apply every stop sequence locally too (the API honours only four)."""
    cut = len(text)
    for s in stop or ():
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]
