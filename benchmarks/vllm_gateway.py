"""`benchmarks/gateway.py --backend vllm`: the gateway in front of a REAL vLLM server (CPU build, .venv-vllm)
on the tiny model (head_dim 32) with 4 LoRA adapters resident.

1. Overhead: the same 64-token completions at 1/8/32 clients sent to vLLM directly and through the gateway,
   on the same server, alternating A B A B per client count; added p50/p95, throughput ratio, gateway CPU per
   request (from /proc).
2. Multi-LoRA cost: vLLM alone at --lora-clients clients, requests spread round-robin over 0 (base), 1, 2
   and 4 adapters (all resident, --max-loras 4): req/s and tokens/s against the base alone.
3. --profile: one more phase at 8 clients with the gateway's event loop under cProfile.

On 2 cores everything competes: ``--pin`` (default on 2+ cores) puts vLLM on CPU 0 and the gateway and this
load generator on CPU 1 (``taskset``), so a CPU-bound vLLM does not starve the gateway's event loop."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from gateway import free_port, gateway_cmd, measure, start, stop, write_config

from codellm_assets.core.serving.backends.vllm_server import INSTALL_HINT, VllmCommand, VllmProcess, vllm_python
from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import Store
from codellm_assets.testing.tiny_model import build_tiny_adapter, build_tiny_model

PROMPT = "def fibonacci(n):\n    "


def _taskset(cpus: str | None, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


def _body(model: str, max_tokens: int) -> dict[str, Any]:
    return {"model": model, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0}


def loop_cpu_seconds(pid: int) -> float:
    """CPU time of the gateway's main thread alone: the event loop, i.e. the request path."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _row(label: str, c: int, d: dict[str, float], g: dict[str, float]) -> dict[str, Any]:
    return {"clients": c, "direct": d, "gateway": g, "added_p50_ms": g["p50"] - d["p50"],
            "added_p95_ms": g["p95"] - d["p95"], "ratio": g["rps"] / d["rps"] if d["rps"] else 0.0,
            "label": label}


def overhead(vllm_url: str, gw_url: str, gw_pid: int, key: str, clients: list[int], duration: float,
             max_tokens: int, rounds: int) -> list[dict[str, Any]]:
    auth = {"Authorization": f"Bearer {key}"}
    rows = []
    print(f"\noverhead: {max_tokens}-token completions of the base model, {duration:g} s phases, "
          f"{rounds} x (direct, gateway) per client count; latency in ms")
    print(f"{'clients':>7} | {'direct p50':>10} {'p95':>7} {'req/s':>7} | {'gateway p50':>11} {'p95':>7} "
          f"{'req/s':>7} | {'added p50':>9} {'p95':>7} | {'ratio':>6} | {'gw CPU/req all / loop':>19} | errors")
    for c in clients:
        ds, gs = [], []
        for _ in range(rounds):
            ds.append(measure(f"{vllm_url}/v1/completions", _body("base", max_tokens), {}, c, duration))
            loop0 = loop_cpu_seconds(gw_pid)
            g = measure(f"{gw_url}/v1/completions", _body("base", max_tokens), auth, c, duration, pid=gw_pid)
            g["loop_cpu_us"] = 1e6 * (loop_cpu_seconds(gw_pid) - loop0) / max(g["rps"] * duration, 1)
            gs.append(g)
        d = {k: sum(x[k] for x in ds) / rounds for k in ds[0]}
        g = {k: sum(x[k] for x in gs) / rounds for k in gs[0]}
        row = _row("base", c, d, g)
        rows.append(row)
        print(f"{c:>7} | {d['p50']:>10.1f} {d['p95']:>7.1f} {d['rps']:>7.2f} | {g['p50']:>11.1f} {g['p95']:>7.1f} "
              f"{g['rps']:>7.2f} | {row['added_p50_ms']:>+9.1f} {row['added_p95_ms']:>+7.1f} | "
              f"{row['ratio']:>6.2f} | {g['cpu_us'] / 1000:>5.2f} / {g['loop_cpu_us'] / 1000:>4.2f} ms | "
              f"{d['errors']:.0f}/{g['errors']:.0f}")
    return rows


def multi_lora(vllm_url: str, clients: int, duration: float, max_tokens: int,
               rounds: int = 1) -> list[dict[str, Any]]:
    """vLLM alone; each client sends to adapter (i mod k): k adapters in use at once."""
    import asyncio

    import aiohttp

    async def run(models: list[str]) -> tuple[int, int, float]:
        done, tokens = 0, 0
        async with aiohttp.ClientSession() as http:
            stop_at = time.perf_counter() + duration
            t0 = time.perf_counter()

            async def client(i: int) -> None:
                nonlocal done, tokens
                while time.perf_counter() < stop_at:
                    async with http.post(f"{vllm_url}/v1/completions",
                                         json=_body(models[i % len(models)], max_tokens)) as r:
                        data = await r.json()
                    if r.status == 200:
                        done += 1
                        tokens += data["usage"]["completion_tokens"]

            await asyncio.gather(*(client(i) for i in range(clients)))
            return done, tokens, time.perf_counter() - t0

    print(f"\nmulti-LoRA cost: vLLM alone, {clients} clients, {max_tokens}-token completions, {duration:g} s "
          f"phases, {rounds} rounds alternating the configurations")
    configs = ((0, ["base"]), (1, ["lora-1"]), (2, ["lora-1", "lora-2"]), (4, ["lora-1", "lora-2", "lora-3", "lora-4"]))
    for _k, models in configs:
        for m in models:                                  # warm: every adapter in its slot once
            asyncio.run(run([m]))
    sums = {k: [0, 0, 0.0] for k, _ in configs}
    for _ in range(rounds):
        for k, models in configs:
            done, tokens, wall = asyncio.run(run(models))
            sums[k] = [sums[k][0] + done, sums[k][1] + tokens, sums[k][2] + wall]
    rows = []
    base_rps = sums[0][0] / sums[0][2]
    for k, (done, tokens, wall) in sums.items():
        rps = done / wall
        rows.append({"adapters": k, "rps": rps, "tokens_per_s": tokens / wall, "vs_base": rps / base_rps})
        print(f"  {k} adapter(s) in use: {rps:6.2f} req/s {tokens / wall:8.1f} tok/s  {100 * rps / base_rps:6.1f} %")
    return rows


def profile_gateway(tmp: Path, cfg: Path, vllm_url: str, key: str, cpus: str | None, duration: float,
                    max_tokens: int, clients: int) -> list[str]:
    """One load phase against a gateway whose event loop is under cProfile (benchmarks/profiled_gateway.py,
    switched on after warm-up): the request path's CPU per request, by function."""
    import pstats

    port, out = free_port(), tmp / "gateway.prof"
    cmd = [sys.executable, str(Path(__file__).with_name("profiled_gateway.py")), "--config", str(cfg),
           "--port", str(port), "--vllm-url", vllm_url, "--out", str(out)]
    gw = start(_taskset(cpus, cmd), f"http://127.0.0.1:{port}/readyz", tmp / "gateway-prof.log", timeout=300)
    url, auth = f"http://127.0.0.1:{port}/v1/completions", {"Authorization": f"Bearer {key}"}
    try:
        measure(url, _body("base", max_tokens), auth, clients, 2)               # warm-up
        os.kill(gw.pid, signal.SIGUSR1)
        m = measure(url, _body("base", max_tokens), auth, clients, duration)
        os.kill(gw.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop(gw)
    stats = pstats.Stats(str(out))
    n = max(m["rps"] * duration, 1)
    busy = sum(tt for (_f, _l, fn), (_cc, _nc, tt, _ct, _c) in stats.stats.items()
               if fn not in ("run", "select", "poll", "_run_once") and "epoll" not in fn)
    lines = [f"cProfile of the gateway's event loop, {clients} clients, {m['rps']:.2f} req/s: "
             f"{1000 * busy / n:.2f} ms of own time per request outside the loop's wait; cumulative per request:"]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][3], reverse=True)
    keep = ("codellm_assets", "aiohttp", "fastapi", "starlette", "uvicorn", "pydantic", "prometheus", "json",
            "tokenizers", "hashlib")
    shown = [kv for kv in rows if any(k in kv[0][0] for k in keep) or "built-in" in kv[0][2]][:40]
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in shown:
        lines.append(f"  {1000 * ct / n:7.3f} ms cum {1000 * tt / n:7.3f} ms own {nc / n:6.1f} calls/req  "
                     f"{'/'.join(Path(file).parts[-2:])}:{line} {fn}")
    print("\n" + "\n".join(lines))
    return lines


def _own_vllm(args: Any, tmp: Path, vllm_cpus: str | None) -> tuple[VllmProcess, Path]:
    python = vllm_python(os.environ.get("CODELLM__SERVING__VLLM_VENV"))
    if python is None:
        raise SystemExit(f"no vLLM venv: {INSTALL_HINT}")
    base = build_tiny_model(tmp / "base", heads=2)
    loras = {f"lora-{i}": str(build_tiny_adapter(base, tmp / f"adapter{i}", seed=i)) for i in range(1, 5)}
    cmd = VllmCommand(python, str(base), free_port(), loras=loras, max_model_len=512, max_lora_rank=8,
                      max_loras=4)
    return VllmProcess(cmd, tmp / "vllm.log", cpus=vllm_cpus), base


def run(args: Any, tmp: Path) -> None:
    """``--vllm-url`` + ``--base-model``: measure a server that is already up (benchmarks/gpu_check.sh: the
    GPU build serving lora-1..lora-4); else start the CPU build on the tiny model."""
    external = bool(args.vllm_url)
    pin = args.pin and not external and (os.cpu_count() or 1) >= 2
    vllm_cpus, gw_cpus = ("0", "1") if pin else (None, None)
    if pin:
        os.sched_setaffinity(0, {1})           # this load generator shares CPU 1 with the gateway
    clients, max_tokens = [int(c) for c in args.clients.split(",")], args.max_tokens
    load = os.getloadavg()
    pinning = "vLLM CPU 0, gateway + load generator CPU 1" if pin else "no"
    print(f"vLLM on {args.vllm_url or 'the CPU build'}, {os.cpu_count()} cores; pinned: {pinning}; load average "
          f"before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    results: dict[str, Any] = {"pinned": pin, "load_before": load, "max_tokens": max_tokens}
    vllm, base = (None, Path(args.base_model)) if external else _own_vllm(args, tmp, vllm_cpus)
    vllm_url = args.vllm_url.rstrip("/") if external else vllm.url
    try:
        if vllm is not None:
            vllm.start()
            results["vllm_start_s"] = vllm.wait_ready(900)
            print(f"vLLM ready in {results['vllm_start_s']:.0f} s: {vllm.command.shell()}")
        cfg, store_url = write_config(tmp, "vllm-bench", f"  assess_fraction: {args.assess_fraction}\n")
        with Store(store_url) as store:
            store.set_routes([Route("production", "base", str(base), None, 100)])
            key = store.create_api_key("bench")
        gport = free_port()
        gw_url = f"http://127.0.0.1:{gport}"
        gw = start(_taskset(gw_cpus, gateway_cmd(cfg, gport, "vllm", vllm_url)), f"{gw_url}/readyz",
                   tmp / "gateway.log", timeout=300)
        try:
            if not args.skip_overhead:
                results["overhead"] = overhead(vllm_url, gw_url, gw.pid, key, clients, args.duration, max_tokens,
                                               args.rounds)
        finally:
            stop(gw)
        if args.profile:
            results["profile"] = profile_gateway(tmp, cfg, vllm_url, key, gw_cpus, args.duration, max_tokens, 8)
        if not args.skip_multi_lora:
            results["multi_lora"] = multi_lora(vllm_url, args.lora_clients, args.duration, max_tokens,
                                               args.rounds)
    finally:
        if vllm is not None:
            vllm.stop()
    results["load_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
        print(f"\nfigures: {args.json}")
