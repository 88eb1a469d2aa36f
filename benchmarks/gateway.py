"""Gateway overhead: latency added (p50/p95) and throughput kept at 1/8/32 concurrent clients, through
`codellm serve` vs calling the backend directly; plus the real tiny transformers backend, with and
without micro-batching, against plain ``model.generate``.

The backend for the overhead figures is the stand-in vLLM server (``codellm_assets.testing.standin``),
so what is measured is the gateway: auth, validation, tokenizer-based context check, routing, the httpx
proxy hop, SSE-free JSON, store and metrics bookkeeping, the detector thread. Everything (load generator,
gateway, stand-in) shares this machine's cores, so a CPU-bound stand-in (``--delay-ms 0``) is the worst
case for throughput; ``--delay-ms 20`` is closer to a real model, where generation time dominates.
Goal: <= 2 ms added at p50 and >= 95 % of direct throughput.

    .venv/bin/python benchmarks/gateway.py [--duration 3] [--clients 1,8,32] [--delay-ms 0,20,100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import Store
from codellm_assets.testing.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parent.parent

PROMPT = "def fibonacci(n):\n    "


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], url: str, log: Path, timeout: float = 120) -> subprocess.Popen[bytes]:
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    stop(proc)
    raise SystemExit(f"{cmd[:4]} did not become ready: {log.read_text()[-1500:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


async def _load(url: str, body: dict, headers: dict, clients: int, duration: float) -> tuple[list[float], int]:
    # aiohttp, not httpx, for the load generator: it shares the cores with what it measures, and httpx
    # costs ~7x more CPU per request.
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=clients + 4)) as http:
        async with http.post(url, json=body) as r:        # warm the connection and the server
            await r.read()
        stop_at = time.perf_counter() + duration

        async def one_client() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                async with http.post(url, json=body) as r:
                    await r.read()
                    ok = r.status == 200
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies, errors


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its waited-for children (the detector's ruff runs), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def measure(url: str, body: dict, headers: dict, clients: int, duration: float,
            pid: int | None = None) -> dict[str, float]:
    cpu0 = cpu_seconds(pid) if pid else 0.0
    t0 = time.perf_counter()
    lat, errors = asyncio.run(_load(url, body, headers, clients, duration))
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0 if pid else 0.0
    p50, p95 = _pcts(lat)
    return {"p50": p50, "p95": p95, "rps": len(lat) / wall, "errors": errors,
            "cpu_us": 1e6 * cpu / max(len(lat), 1)}


def gateway_cmd(config: Path, port: int, backend: str, standin_url: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "codellm_assets.cli", "serve", "--port", str(port), "--backend", backend,
           "--config", str(config)]
    return cmd + (["--vllm-url", standin_url] if standin_url else [])


def write_config(tmp: Path, name: str, extra: str = "") -> tuple[Path, str]:
    store_url = f"sqlite:///{tmp / (name + '.db')}"
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(f"home: {tmp / 'home'}\nrepos: []\nserving:\n  store_url: {store_url}\n"
                   f"  rate_limit_per_minute: 100000000\n{extra}")
    return cfg, store_url


def overhead(tmp: Path, tiny: Path, delay_ms: float, clients: list[int], duration: float) -> None:
    sport, gport = free_port(), free_port()
    standin_url, gw_url = f"http://127.0.0.1:{sport}", f"http://127.0.0.1:{gport}"
    standin = start([sys.executable, "-m", "codellm_assets.testing.standin", "--port", str(sport),
                     "--delay-ms", str(delay_ms)], f"{standin_url}/health", tmp / "standin.log")
    cfg, store_url = write_config(tmp, f"proxy{int(delay_ms)}")
    store = Store(store_url)
    store.set_routes([Route("production", "base", str(tiny), None, 100, standin_url)])
    key = store.create_api_key("bench")
    store.close()
    gateway = start(gateway_cmd(cfg, gport, "vllm", standin_url), f"{gw_url}/readyz", tmp / "gateway.log")
    body = {"model": "base", "prompt": PROMPT, "max_tokens": 16, "temperature": 0}
    auth = {"Authorization": f"Bearer {key}"}
    print(f"\nstand-in backend, {delay_ms:g} ms per completion, {duration:g} s per point "
          "(latency in ms; added = gateway - direct)")
    print(f"{'clients':>7} | {'direct p50':>10} {'p95':>7} {'req/s':>7} | {'gateway p50':>11} {'p95':>7} "
          f"{'req/s':>7} | {'added p50':>9} {'p95':>7} | {'throughput':>10} | {'gateway CPU/req':>15}")
    try:
        for c in clients:
            d = measure(f"{standin_url}/v1/completions", body, {}, c, duration)
            g = measure(f"{gw_url}/v1/completions", body, auth, c, duration, pid=gateway.pid)
            print(f"{c:>7} | {d['p50']:>10.2f} {d['p95']:>7.2f} {d['rps']:>7.0f} | {g['p50']:>11.2f} "
                  f"{g['p95']:>7.2f} {g['rps']:>7.0f} | {g['p50'] - d['p50']:>9.2f} {g['p95'] - d['p95']:>7.2f} | "
                  f"{100 * g['rps'] / d['rps']:>9.1f}% | {g['cpu_us']:>12.0f} us"
                  + (f"  errors {g['errors']}" if g["errors"] else ""))
    finally:
        stop(gateway)
        stop(standin)


def _pcts(lat: list[float]) -> tuple[float, float]:
    lat = sorted(lat)
    return lat[int(0.5 * (len(lat) - 1))] * 1000, lat[int(0.95 * (len(lat) - 1))] * 1000


def direct_generate(tiny: Path, duration: float, max_tokens: int) -> dict[str, float]:
    """Plain transformers, no server, one request at a time: the baseline for the transformers backend."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)          # as the gateway (serving.threads: 1)
    tok, model = AutoTokenizer.from_pretrained(tiny), AutoModelForCausalLM.from_pretrained(tiny).eval()
    ids = tok(PROMPT, return_tensors="pt")
    lat: list[float] = []
    with torch.inference_mode():
        model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        stop_at = time.perf_counter() + duration
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            lat.append(time.perf_counter() - t0)
    p50, p95 = _pcts(lat)
    return {"p50": p50, "p95": p95, "rps": len(lat) / sum(lat)}


def transformers_line(tmp: Path, tiny: Path, duration: float) -> None:
    body = {"model": "base", "prompt": PROMPT, "max_tokens": 32, "temperature": 0}
    base = direct_generate(tiny, duration, 32)
    print(f"\nreal tiny transformers backend (Llama hidden 64, 2 layers, random weights), up to 32 tokens "
          f"greedy, {duration:g} s per point")
    print(f"{'setup':>36} | {'clients':>7} | {'p50 ms':>7} {'p95 ms':>7} {'req/s':>7}")
    print(f"{'plain model.generate, no server':>36} | {1:>7} | {base['p50']:>7.1f} {base['p95']:>7.1f} "
          f"{base['rps']:>7.1f}")
    for label, extra in (("gateway, micro-batching (4 ms, <=8)", "  micro_batch_ms: 4\n  max_batch_size: 8\n"),
                         ("gateway, no batching", "  micro_batch_ms: 0\n  max_batch_size: 1\n")):
        cfg, store_url = write_config(tmp, "tf" + str(len(extra)), extra)
        store = Store(store_url)
        store.set_routes([Route("production", "base", str(tiny), None, 100)])
        key = store.create_api_key("bench")
        store.close()
        port = free_port()
        gateway = start(gateway_cmd(cfg, port, "transformers"), f"http://127.0.0.1:{port}/readyz",
                        tmp / "tf-gateway.log")
        try:
            for c in (1, 8):
                g = measure(f"http://127.0.0.1:{port}/v1/completions", body, {"Authorization": f"Bearer {key}"},
                            c, duration)
                print(f"{label:>36} | {c:>7} | {g['p50']:>7.1f} {g['p95']:>7.1f} {g['rps']:>7.1f}")
        finally:
            stop(gateway)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measurement point")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--delay-ms", default="0,20,100", help="stand-in latency per completion, comma-separated")
    ap.add_argument("--skip-transformers", action="store_true")
    ap.add_argument("--skip-overhead", action="store_true", help="only the transformers backend lines")
    ap.add_argument("--backend", choices=["standin", "vllm"], default="standin",
                    help="vllm: a real vLLM server (.venv-vllm) instead of the stand-in (benchmarks/vllm_gateway.py)")
    ap.add_argument("--max-tokens", type=int, default=64, help="vllm: tokens per completion")
    ap.add_argument("--rounds", type=int, default=2, help="vllm: A B rounds (direct, gateway) per client count")
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="vllm: no taskset pinning")
    ap.add_argument("--profile", action="store_true", help="vllm: one more phase with the gateway under cProfile")
    ap.add_argument("--lora-clients", type=int, default=8, help="vllm: clients of the multi-LoRA measurement")
    ap.add_argument("--skip-multi-lora", action="store_true")
    ap.add_argument("--assess-fraction", type=float, default=1.0,
                    help="vllm: serving.assess_fraction of the gateway (the detector's share of completions)")
    ap.add_argument("--json", help="vllm: write the figures to this file")
    ap.add_argument("--vllm-url", help="vllm: measure this running server (serving lora-1..lora-4) instead")
    ap.add_argument("--base-model", help="vllm: with --vllm-url, the base model directory it serves")
    args = ap.parse_args()
    if args.backend == "vllm":
        from vllm_gateway import run

        with tempfile.TemporaryDirectory() as d:
            run(args, Path(d))
        return
    print(f"gateway benchmark on {os.cpu_count()} cores (load generator, gateway and backend share them)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tiny = build_tiny_model(tmp / "tiny")
        for delay in ([] if args.skip_overhead else [float(x) for x in args.delay_ms.split(",")]):
            overhead(tmp, tiny, delay, [int(c) for c in args.clients.split(",")], args.duration)
        if not args.skip_transformers:
            transformers_line(tmp, tiny, args.duration)


if __name__ == "__main__":
    main()
