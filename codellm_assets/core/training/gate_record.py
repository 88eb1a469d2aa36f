"""The eval gate a registered version passed, as tags on the version (written by registration, read
before deployment). Plain data: Dagster's records are looked up in ``defs/shared.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_TAG_LIMIT = 7900  # MLflow caps tag values at 8000 characters


def _clip(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _TAG_LIMIT else text[: _TAG_LIMIT - 20] + "...[truncated]"


GATE_TAG = "codellm.gate"  # prefix of the tags that record the eval gate a version passed


@dataclass(frozen=True)
class GateRecord:
    """The passed eval gate a version was registered under: which eval_scores materialization (run, storage
    id, data version), which check evaluation (run, execution id) and the adapter that was evaluated."""

    verdict: str
    eval_run_id: str
    eval_storage_id: int
    eval_data_version: str
    check_run_id: str
    check_execution_id: int
    adapter_sha256: str
    summary: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def tags(self) -> dict[str, str]:
        return {f"{GATE_TAG}.{k}": _clip(v) for k, v in self.__dict__.items()}


def read_gate(info) -> GateRecord | None:
    """The gate record in a version's tags (a ``registry.ModelVersionInfo``), or None if it has none
    (or an incomplete one)."""
    tags = info.tags or {}
    raw = {k[len(GATE_TAG) + 1:]: v for k, v in tags.items() if k.startswith(GATE_TAG + ".")}
    try:
        return GateRecord(verdict=raw["verdict"], eval_run_id=raw["eval_run_id"],
                          eval_storage_id=int(raw["eval_storage_id"]), eval_data_version=raw["eval_data_version"],
                          check_run_id=raw["check_run_id"], check_execution_id=int(raw["check_execution_id"]),
                          adapter_sha256=raw["adapter_sha256"], summary=raw.get("summary", ""))
    except (KeyError, ValueError):
        return None
