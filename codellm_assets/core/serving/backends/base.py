"""The backend interface every model server implements, and the prompt plumbing they share: fill-in-the-
middle formats, chat rendering, stop-sequence trimming."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from codellm_assets.core.data.fim import FimTokens as FimTokens
from codellm_assets.core.data.fim import read_layout
from codellm_assets.core.serving.routes import Route


class BackendError(Exception):
    """The backend failed (dead, timed out, 5xx): the caller may retry elsewhere (canary -> production)."""


class BackendRejected(Exception):
    """The backend refused the request itself (4xx): the user's request is at fault; never retried."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Preempted(BackendError):
    """A background job (shadow mirror) gave way to user traffic."""


@dataclass
class GenerationParams:
    """Sampling parameters plus which version answers. ``background``: a shadow/probe job that yields to
    user traffic."""

    version: str
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    n: int = 1
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    background: bool = False


@dataclass
class Generation:
    texts: list[str]
    finish_reasons: list[str]
    prompt_tokens: int
    completion_tokens: int       # summed over choices
    version: str


@dataclass
class StreamDelta:
    """A piece of a streamed answer. The last one carries ``finish_reason`` and, when known, token counts."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class Backend(abc.ABC):
    """One model server holding several versions (a base model and LoRA adapters, by version name)."""

    name: str = "backend"

    async def start(self) -> None:  # noqa: B027 - optional hook: most backends have nothing to start
        """Start worker threads / HTTP clients. Called once from the event loop."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop workers, close clients."""

    async def resync(self) -> None:  # noqa: B027 - optional hook: in-process backends cannot lose a version
        """Re-load versions the model server lost (a restarted vLLM forgets runtime-loaded adapters). Called
        by the gateway's maintenance loop every ``route_refresh_s``."""

    @abc.abstractmethod
    async def load_version(self, route: Route) -> None:
        """Make ``route.version`` servable (its base model plus ``route.adapter_path`` if any). Idempotent."""

    async def load_adapter(self, name: str, path: str, base_model_path: str) -> None:
        """Load a LoRA adapter under version ``name`` on top of ``base_model_path``."""
        await self.load_version(Route(slot="shadow", version=name, base_model_path=base_model_path,
                                      adapter_path=path))

    @abc.abstractmethod
    def versions(self) -> list[str]:
        """Versions loaded and servable."""

    @abc.abstractmethod
    async def generate(self, prompt: str, params: GenerationParams) -> Generation:
        """Generate ``params.n`` completions of ``prompt``. Raises BackendError / BackendRejected."""

    @abc.abstractmethod
    def stream(self, prompt: str, params: GenerationParams) -> AsyncIterator[StreamDelta]:
        """Stream one completion (n=1) piece by piece."""

    @abc.abstractmethod
    async def health(self) -> dict[str, Any]:
        """``{"ok": bool, ...}``: the server answers (a cheap check; readiness does a real generation)."""

    def tokenizer(self, version: str) -> Any | None:
        """A tokenizer for ``version`` usable from the event loop thread, or None when unknown."""
        return None

    def max_context(self, version: str) -> int | None:
        """The model's own context length, when known."""
        return None

    def count_tokens(self, version: str, text: str) -> int | None:
        tok = self.tokenizer(version)
        if tok is None:
            return None
        fast = getattr(tok, "backend_tokenizer", None)   # the Rust tokenizer: ~10x less overhead per call
        if fast is not None:
            return len(fast.encode(text).ids)
        return len(tok(text, add_special_tokens=True)["input_ids"])

    def fim(self, version: str) -> FimTokens | None:
        tok = self.tokenizer(version)
        return detect_fim(tok) if tok is not None else None

    def render_chat(self, version: str, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        """(prompt, extra stop sequences) for a chat conversation: the tokenizer's template if it has one,
        else a role-tagged prompt that stops at the next role tag."""
        return render_chat(self.tokenizer(version), messages)


# ---- fill-in-the-middle ---------------------------------------------------------------------------------

# The layouts of the code models in presets.yaml (StarCoder/tiny, Qwen2.5-Coder, DeepSeek-Coder, CodeLlama).
KNOWN_FIM = (
    FimTokens("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    FimTokens("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    FimTokens("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    FimTokens("▁<PRE>", "▁<SUF>", "▁<MID>"),
)


FIM_LITERALS = tuple(sorted({t.lstrip("▁") for f in KNOWN_FIM for t in (f.prefix, f.suffix, f.middle)},
                            key=len, reverse=True))


def split_fim_prompt(prompt: str) -> tuple[str, str] | None:
    """(prefix, suffix) of a prompt that is one rendered FIM template of a known layout (Continue sends its
    template as text), else None. The IDE's own text, for the request log and the feedback examples."""
    for fim in KNOWN_FIM:
        pre, suf, mid = (t.lstrip("▁") for t in (fim.prefix, fim.suffix, fim.middle))
        body = prompt.strip()
        if body.startswith(pre) and body.endswith(mid) and body.count(suf) == 1:
            prefix, suffix = body[len(pre):-len(mid)].split(suf)
            if fim.prefix.startswith("▁"):      # CodeLlama: "<PRE> {prefix} <SUF>{suffix} <MID>"
                prefix, suffix = prefix.removeprefix(" ").removesuffix(" "), suffix.removesuffix(" ")
            return prefix, suffix
    return None


def has_fim_markup(text: str) -> bool:
    return any(lit in text for lit in FIM_LITERALS)


def detect_fim(tokenizer: Any, model_dir: str | Path | None = None) -> FimTokens | None:
    """The FIM layout whose three tokens are all single tokens of ``tokenizer``'s vocabulary, or None; SPM
    when ``model_dir`` records that the model was trained so (core/data/fim.py LAYOUT_FILE)."""
    try:
        vocab = tokenizer.get_vocab()
    except (AttributeError, NotImplementedError):
        return None
    for fim in KNOWN_FIM:
        if all(t in vocab for t in (fim.prefix, fim.suffix, fim.middle)):
            return replace(fim, spm=read_layout(model_dir) == "spm")
    return None


# ---- chat -----------------------------------------------------------------------------------------------

ROLE_TAG = "<|{role}|>\n"


def render_chat(tokenizer: Any | None, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
    """See :meth:`Backend.render_chat`. Raises ValueError when the template rejects the conversation."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        try:
            prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # jinja errors (e.g. "roles must alternate") are the caller's to fix
            raise ValueError(f"the model's chat template rejected the messages: {e}") from e
        return str(prompt), []
    parts = [ROLE_TAG.format(role=m["role"]) + m["content"].rstrip("\n") + "\n" for m in messages]
    prompt = "".join(parts) + ROLE_TAG.format(role="assistant")
    stops = ["\n" + ROLE_TAG.format(role=r).rstrip("\n") for r in ("user", "system")]
    return prompt, stops


# ---- stop sequences -------------------------------------------------------------------------------------

def trim_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` cut before the earliest stop sequence, and whether one was found (OpenAI excludes it)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class StopScanner:
    """Streaming counterpart of :func:`trim_at_stop`: holds back just enough text that a stop sequence split
    across pieces is never emitted."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.buffer = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Text safe to emit now ('' once a stop sequence was seen)."""
        if self.stopped:
            return ""
        self.buffer += piece
        text, hit = trim_at_stop(self.buffer, self.stops)
        if hit:
            self.stopped, self.buffer = True, ""
            return text
        if self.hold == 0:
            out, self.buffer = self.buffer, ""
            return out
        out, self.buffer = self.buffer[:-self.hold], self.buffer[-self.hold:]
        return out

    def finish(self) -> str:
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out


def load_local_tokenizer(path: str) -> Any | None:
    """``AutoTokenizer.from_pretrained(path)`` when ``path`` is a local directory with tokenizer files."""
    p = Path(path).expanduser()
    if not p.is_dir() or not any((p / f).exists() for f in ("tokenizer.json", "tokenizer_config.json",
                                                             "tokenizer.model", "vocab.json")):
        return None
    from transformers import AutoTokenizer  # lazy: importing transformers costs seconds

    return AutoTokenizer.from_pretrained(str(p))
