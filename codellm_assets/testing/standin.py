"""A stand-in for vLLM's OpenAI-compatible server: deterministic, fast, no model. For tests and benchmarks
of the gateway's vllm proxy path, and for wiring up an IDE plugin without a GPU:

    python -m codellm_assets.testing.standin --port 8100 --tag prod --delay-ms 20

It answers ``/v1/models``, ``/v1/completions`` (streaming too, with ``usage``), ``/v1/load_lora_adapter``
and ``/health`` like vLLM does; ``/stats`` counts completion requests (to prove a request never reached
it). Completions are ``max_tokens`` words derived from the tag, the model name and the prompt, so two
stand-ins with different tags give different answers to the same prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def make_text(tag: str, model: str, prompt: str, max_tokens: int, index: int = 0) -> list[str]:
    seed = zlib.crc32(f"{tag}|{model}|{prompt}|{index}".encode())
    return [f" {tag}{(seed + i * 7919) % 1000}" for i in range(max_tokens)]


def create_standin_app(*, tag: str = "standin", base_model: str = "base", delay_ms: float = 0.0,
                       token_delay_ms: float = 0.0, loras: list[str] | None = None,
                       max_model_len: int = 1024) -> Starlette:
    state: dict[str, Any] = {"loras": set(loras or []), "completions": 0}

    async def models(_request: Request) -> JSONResponse:
        data = [{"id": base_model, "object": "model", "owned_by": "vllm", "root": base_model, "parent": None,
                 "max_model_len": max_model_len}]
        data += [{"id": name, "object": "model", "owned_by": "vllm", "root": name, "parent": base_model,
                  "max_model_len": max_model_len} for name in sorted(state["loras"])]
        return JSONResponse({"object": "list", "data": data})

    async def health(_request: Request) -> Response:
        return Response(status_code=200)

    async def stats(_request: Request) -> JSONResponse:
        return JSONResponse({"completions": state["completions"], "loras": sorted(state["loras"])})

    async def load_lora(request: Request) -> Response:
        body = await request.json()
        state["loras"].add(body["lora_name"])
        return Response(f"Success: LoRA adapter '{body['lora_name']}' added successfully.")

    async def completions(request: Request) -> Response:
        body = await request.json()
        model = body.get("model")
        if model != base_model and model not in state["loras"]:
            return JSONResponse({"error": {"message": f"The model `{model}` does not exist.",
                                           "type": "NotFoundError", "code": 404}}, status_code=404)
        state["completions"] += 1
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        prompts = body.get("prompt", "")
        prompts = prompts if isinstance(prompts, list) else [prompts]     # vLLM takes a list: choice i*n + j
        max_tokens, n, stops = int(body.get("max_tokens") or 16), int(body.get("n") or 1), body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        choices = []
        for p in prompts:
            for i in range(n):
                words = make_text(tag, model, p, max_tokens, i)
                text, finish = "".join(words), "length"
                for s in stops:
                    if s in text:
                        text, finish = text[:text.index(s)], "stop"
                choices.append((words, text, finish))
        prompt_tokens = sum(len(p.split()) + 1 for p in prompts)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(choices) * max_tokens,
                 "total_tokens": prompt_tokens + len(choices) * max_tokens}
        cid, created = f"cmpl-standin{state['completions']}", int(time.time())
        if body.get("stream"):
            return StreamingResponse(_stream(cid, created, model, choices, usage, token_delay_ms),
                                     media_type="text/event-stream")
        return JSONResponse({"id": cid, "object": "text_completion", "created": created, "model": model,
                             "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": finish}
                                         for i, (_, text, finish) in enumerate(choices)], "usage": usage})

    return Starlette(routes=[
        Route("/v1/models", models), Route("/health", health), Route("/stats", stats),
        Route("/v1/load_lora_adapter", load_lora, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
    ])


async def _stream(cid: str, created: int, model: str, choices: list[tuple[list[str], str, str]],
                  usage: dict[str, int], token_delay_ms: float) -> AsyncIterator[str]:
    def event(obj: dict[str, Any]) -> str:
        return f"data: {json.dumps(obj)}\n\n"

    base = {"id": cid, "object": "text_completion", "created": created, "model": model}
    for index, (words, text, finish) in enumerate(choices):
        sent = ""
        for w in words:
            if len(sent) + len(w) > len(text):
                w = text[len(sent):]
            if w:
                sent += w
                yield event({**base, "choices": [{"index": index, "text": w, "logprobs": None,
                                                  "finish_reason": None}]})
            if token_delay_ms:
                await asyncio.sleep(token_delay_ms / 1000)
            if len(sent) >= len(text):
                break
        yield event({**base, "choices": [{"index": index, "text": "", "logprobs": None, "finish_reason": finish}]})
    yield event({**base, "choices": [], "usage": usage})
    yield "data: [DONE]\n\n"


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description="A stand-in for vLLM's OpenAI-compatible server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tag", default="standin", help="marks the generated text")
    ap.add_argument("--base-model", default="base", help="the model name /v1/models lists")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="latency added to every completion")
    ap.add_argument("--token-delay-ms", type=float, default=0.0, help="pause between streamed tokens")
    ap.add_argument("--lora", action="append", default=[], help="a LoRA module name served from the start")
    ap.add_argument("--max-model-len", type=int, default=1024, help="the context length /v1/models reports")
    args = ap.parse_args()
    app = create_standin_app(tag=args.tag, base_model=args.base_model, delay_ms=args.delay_ms,
                             token_delay_ms=args.token_delay_ms, loras=args.lora, max_model_len=args.max_model_len)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
