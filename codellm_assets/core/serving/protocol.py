"""The gateway's wire format: OpenAI-compatible request models (validated before any model work) and
typed, OpenAI-style errors (``{"error": {"message", "type", "param", "code"}}``) so the official ``openai``
client raises the matching exception (401 -> AuthenticationError, 429 -> RateLimitError, ...)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from codellm_assets.core.serving.backends.base import GenerationParams
from codellm_assets.core.serving.routes import SLOTS
from codellm_assets.core.serving.store_schema import FEEDBACK_EVENTS

MAX_N = 8
MAX_STOP = 4
MAX_PROMPTS = 16
DEFAULT_CHAT_MAX_TOKENS = 256


class ApiError(Exception):
    """An error answered as OpenAI-style JSON with an HTTP status."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class _Request(BaseModel):
    # Unknown fields are ignored: IDE plugins send vendor extensions we need not understand.
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Request):
    include_usage: bool = False


def _check_stop(v: str | list[str] | None) -> list[str]:
    stops = [v] if isinstance(v, str) else list(v or [])
    if len(stops) > MAX_STOP:
        raise ValueError(f"at most {MAX_STOP} stop sequences")
    if any(not s for s in stops):
        raise ValueError("stop sequences must be non-empty strings")
    return stops


class _Sampling(_Request):
    model: str | None = None
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    user: str | None = Field(None, max_length=256)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    language: str | None = Field(None, max_length=40, description="extension: the code's language, for the "
                                 "buggy-code detector (default python)")

    @field_validator("stop", mode="before")
    @classmethod
    def _stop(cls, v: Any) -> list[str]:
        if v is not None and not isinstance(v, (str, list)):
            raise ValueError("stop must be a string or a list of strings")
        return _check_stop(v)

    def to_generation_params(self) -> GenerationParams:
        """The backend's sampling parameters for this request (like vLLM's ``to_sampling_params``); the
        router fills in the version. ``effective_max_tokens``: each request shape's own property."""
        return GenerationParams(version="", max_tokens=self.effective_max_tokens, temperature=self.temperature,
                                top_p=self.top_p, stop=list(self.stop), n=self.n, seed=self.seed,
                                presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty)


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    suffix: str | None = None
    max_tokens: int = Field(16, ge=1)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=5, description="accepted, answered as null")
    repo: str | None = Field(None, max_length=500, description="extension: the repo (settings name or remote "
                             "URL) whose code index adds context before the prompt; or the x-codellm-repo header")
    filepath: str | None = Field(None, max_length=1000, description="extension: the cursor's file (relative to "
                                 "the repo root), so retrieval leaves it out")

    @property
    def effective_max_tokens(self) -> int:
        return self.max_tokens

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list):
            if not v:
                raise ValueError("prompt list must not be empty")
            if len(v) > MAX_PROMPTS:
                raise ValueError(f"at most {MAX_PROMPTS} prompts per request")
        return v

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class ContentPart(_Request):
    type: str
    text: str | None = None


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        parts = []
        for p in self.content:
            if p.type != "text":
                raise ValueError(f"message content part of type '{p.type}' is not supported (text only)")
            parts.append(p.text or "")
        return "".join(parts)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    @property
    def effective_max_tokens(self) -> int:
        return self.max_completion_tokens or self.max_tokens or DEFAULT_CHAT_MAX_TOKENS


class Survival(_Request):
    after_s: int = Field(ge=0)
    fraction: float = Field(ge=0, le=1)


class FeedbackRequest(_Request):
    completion_id: str = Field(min_length=1, max_length=80)
    event: Literal[FEEDBACK_EVENTS]  # type: ignore[valid-type]
    final_code: str | None = None
    reason: str | None = Field(None, max_length=2000)
    elapsed_ms: int | None = Field(None, ge=0)
    survival: Survival | None = None


class RouteModel(_Request):
    slot: Literal[SLOTS]  # type: ignore[valid-type]
    version: str = Field(min_length=1)
    base_model_path: str = Field(min_length=1)
    adapter_path: str | None = None
    weight: int = Field(ge=0, le=100)
    endpoint: str | None = None


class RoutingRequest(_Request):
    routes: list[RouteModel]


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """One readable line from pydantic/FastAPI validation errors, and the first offending parameter."""
    parts, param = [], None
    for err in errors[:5]:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body",)]
        where = ".".join(loc)
        if err.get("type") == "json_invalid":
            return f"the request body is not valid JSON: {err.get('msg')}", None
        if param is None and loc:
            param = loc[0]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "invalid request: " + "; ".join(parts), param
