"""Token healing in the gateway (core/data/fim.py ``heal_prefix``): a FIM prompt is cut back to the cursor's
last visible character; the completion then starts with the cut whitespace, which is taken off again before
the client sees it - for a whole answer and for a stream. A stop sequence that could match inside the cut
text (``"\\n"`` after a cut newline) is not sent to the backend, which would end every answer at its first
token; the gateway applies it after the cut text is gone."""

from __future__ import annotations

from dataclasses import dataclass, replace

from codellm_assets.core.data.fim import HealingStream, stops_outside, unheal
from codellm_assets.core.serving.backends.base import Generation, StopScanner, trim_at_stop


@dataclass
class Rendered:
    """Gateway.render's result: prompts for the version, extra stop sequences (chat role tags), the
    max_tokens that fits, and per prompt the whitespace healing cut from its end ('' when none)."""

    prompts: list[str]
    stops: list[str]
    max_tokens: int
    removed: list[str]

    def split_stops(self, stops: list[str]) -> tuple[list[str], list[str]]:
        """(stops for the backend, stops the gateway applies after unhealing)."""
        return stops_outside(stops, *self.removed)


def heal_generations(gens: list[Generation], rendered: Rendered, after: list[str]) -> list[Generation]:
    """Each prompt's texts without the cut whitespace, cut at the stops the backend did not apply."""
    if not any(rendered.removed):
        return gens
    out = []
    for g, removed in zip(gens, rendered.removed, strict=True):
        texts, reasons = [], []
        for text, reason in zip(g.texts, g.finish_reasons, strict=True):
            text, hit = trim_at_stop(unheal(text, removed), after)
            texts.append(text)
            reasons.append("stop" if hit else reason)
        out.append(replace(g, texts=texts, finish_reasons=reasons))
    return out


class HealedStream:
    """A stream's pieces without the cut whitespace, then cut at the late stops; ``stopped`` once one hit."""

    def __init__(self, removed: str, after: list[str]) -> None:
        self.heal = HealingStream(removed)
        self.scan = StopScanner(after) if after else None

    @property
    def stopped(self) -> bool:
        return bool(self.scan and self.scan.stopped)

    def feed(self, piece: str) -> str:
        text = self.heal.feed(piece)
        return self.scan.feed(text) if self.scan else text

    def flush(self) -> str:
        """What is held back when the backend's stream ends."""
        return self.scan.finish() if self.scan else ""
