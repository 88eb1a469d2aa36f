"""Fill-in-the-middle cuts for training documents (StarCoder's PSM and SPM, at the character level), seeded
per document so a document always gets the same decision and cuts whatever the order of the corpus; long
documents are cut per training window (context-level FIM, :func:`fim_windows`)."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from codellm_assets.core.data.tokenizer_files import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

# Share of FIM cuts made on lines rather than at characters: what an IDE asks for and the repo benchmark
# scores (core/evaluation/fim_mining.py). One line: from its first non-blank character to its end (a
# single-line task: the cursor sits after the indentation). Several lines: whole lines, indentation and
# the last newline included (a multi-line or function-body task: the cursor at the start of a line). The
# other cuts are random characters moved to the nearest edge of a word, so a middle never starts or ends
# inside an identifier: a model trained on cuts inside words learns to begin every completion with the
# tail of one (``rid = ...`` for ``grid``).
LINE_CUT_RATE = 0.5
# Bumped whenever the cuts change for the same document and seed: part of the token cache's key and of the
# tiny base's (2: one FIM example per training window, line and word-edge cuts; 3: several-line cuts are
# whole lines, like the benchmark's multi-line and body tasks).
FIM_FORMAT = 3
# How a FIM prompt is laid out: prefix-suffix-middle or suffix-prefix-middle (fim_token_ids). A model built
# here records the layout it was trained with in its directory (LAYOUT_FILE), so serving and the benchmark
# render what training used; a downloaded model without the file is PSM (what its vocabulary implies).
LAYOUTS = ("psm", "spm")
LAYOUT_FILE = "fim_layout.json"


@dataclass(frozen=True)
class FimTokens:
    """A FIM prompt template. PSM: ``prefix_tok + prefix + suffix_tok + suffix + middle_tok``; with ``spm``
    (StarCoder's suffix-prefix-middle variant, what a model trained that way expects): ``prefix_tok +
    suffix_tok + suffix + middle_tok + prefix``, so the completion continues the prefix directly."""

    prefix: str
    suffix: str
    middle: str
    spm: bool = False

    def build(self, prefix: str, suffix: str, context: str = "") -> str:
        """The prompt; ``context`` (repository snippets) goes right before the code of the prefix."""
        if self.spm:
            return f"{self.prefix}{self.suffix}{suffix}{self.middle}{context}{prefix}"
        return f"{self.prefix}{context}{prefix}{self.suffix}{suffix}{self.middle}"

    @classmethod
    def from_preset(cls, fim: Any) -> FimTokens:
        """From a presets.yaml ``fim`` mapping (prefix, suffix, middle; ``layout: spm`` for suffix first)."""
        try:
            return cls(fim["prefix"], fim["suffix"], fim["middle"], spm=fim.get("layout") == "spm")
        except KeyError as e:
            raise ValueError(f"FIM tokens {dict(fim)} lack {e}: a preset's fim needs prefix, suffix and middle "
                             f"(core/training/presets.yaml)") from None

    @property
    def psm(self) -> FimTokens:
        """The same tokens in PSM layout (what clients that render the template themselves send)."""
        return replace(self, spm=False)


def layout_spm_rate(layout: str) -> float:
    """The share of FIM examples a model of ``layout`` is trained on in SPM order: all or none."""
    return 1.0 if layout == "spm" else 0.0


def write_layout(model_dir: Path, layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"FIM layout {layout!r} is not one of {LAYOUTS}")
    (Path(model_dir) / LAYOUT_FILE).write_text(json.dumps({"layout": layout}) + "\n")


def read_layout(model_dir: str | Path | None) -> str | None:
    """The layout recorded in ``model_dir`` (psm | spm), or None when none is recorded or it is unreadable."""
    if not model_dir:
        return None
    try:
        layout = json.loads((Path(model_dir) / LAYOUT_FILE).read_text()).get("layout")
    except (OSError, ValueError, AttributeError):
        return None
    return layout if layout in LAYOUTS else None


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


def _word_edge(doc: str, i: int) -> int:
    """``i`` moved left to the start of the identifier (or number) it is inside; unchanged between words."""
    while 0 < i < len(doc) and _is_word(doc[i - 1]) and _is_word(doc[i]):
        i -= 1
    return i


def _line_cut(doc: str, rng: random.Random) -> tuple[int, int] | None:
    """A random non-blank line from its first non-blank character to its end, or (mostly one line,
    sometimes a few) whole lines from that line's start through the newline of a later one; None when
    ``doc`` has no non-blank line."""
    lines: list[tuple[int, int, int]] = []       # (line start, first non-blank character, line end)
    start = 0
    for text in doc.split("\n"):
        if text.strip():
            lines.append((start, start + len(text) - len(text.lstrip()), start + len(text)))
        start += len(text) + 1
    if not lines:
        return None
    i = rng.randrange(len(lines))
    j = min(len(lines) - 1, i + int(rng.expovariate(0.5)))
    if i == j:
        return lines[i][1], lines[i][2]
    return lines[i][0], min(len(doc), lines[j][2] + 1)


def fim_split(doc: str, rng: random.Random) -> tuple[str, str, str]:
    """Cut ``doc`` into (prefix, middle, suffix): on lines (LINE_CUT_RATE of the time), else at two random
    character positions moved to word edges."""
    cut = _line_cut(doc, rng) if rng.random() < LINE_CUT_RATE else None
    if cut is None:
        a, b = sorted(_word_edge(doc, rng.randint(0, len(doc))) for _ in range(2))
    else:
        a, b = cut
    return doc[:a], doc[a:b], doc[b:]


def fim_format(prefix: str, middle: str, suffix: str,
               tokens: Sequence[str] = (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX)) -> str:
    """PSM text form ``<fim_prefix>P<fim_suffix>S<fim_middle>M`` (for display and tests)."""
    pre, mid, suf = tokens
    return f"{pre}{prefix}{suf}{suffix}{mid}{middle}"


def is_spm(cut: tuple[str, str, str], spm_rate: float, seed: int) -> bool:
    """Whether this FIM example is laid out suffix-prefix-middle: ``spm_rate`` of the examples, drawn from
    its content (and ``seed``), so the same piece always gets the same order."""
    if spm_rate <= 0 or spm_rate >= 1:
        return spm_rate >= 1
    digest = hashlib.sha256("\x00".join(cut).encode("utf-8", "surrogatepass")).hexdigest()
    return random.Random(f"{seed}:spm:{digest}").random() < spm_rate


def fim_token_ids(pre: Sequence[int], mid: Sequence[int], suf: Sequence[int], fim_ids: Sequence[int],
                  spm: bool, ctx: Sequence[int] = ()) -> list[int]:
    """One example from the encoded parts; ``fim_ids`` = (prefix, middle, suffix) token ids.

    PSM ``<pre> C P <suf> S <mid> M``; SPM (StarCoder's variant) ``<pre> <suf> S <mid> C P M``. In SPM the
    middle directly continues the prefix, so a small model need not attend back past the whole suffix to
    find where to go on: plain continuation, with the suffix read first as a hint. ``ctx``: repository
    context (core/data/fim_context.py), right before the prefix's code as FimTokens.build lays it out.
    """
    t_pre, t_mid, t_suf = fim_ids
    if spm:
        return [t_pre, t_suf, *suf, t_mid, *ctx, *pre, *mid]
    return [t_pre, *ctx, *pre, t_suf, *suf, t_mid, *mid]


def fim_choices(docs: Sequence[str], fim_rate: float, seed: int) -> list[tuple[str, str, str] | None]:
    """Per document: its (prefix, middle, suffix) if it gets the FIM transform, else None.

    Each document's draw is seeded by ``seed`` and its content hash: the same document always gets the
    same decision and cut points, whatever the order of the corpus.
    """
    out: list[tuple[str, str, str] | None] = []
    for doc in docs:
        rng = random.Random(f"{seed}:{hashlib.sha256(doc.encode('utf-8', 'surrogatepass')).hexdigest()}")
        out.append(fim_split(doc, rng) if fim_rate > 0 and rng.random() < fim_rate else None)
    return out


def line_chunks(lines: Sequence[str], tokens: Sequence[int], budget: int) -> list[str]:
    """Consecutive ``lines`` (with their token counts) packed greedily into pieces of at most ``budget``
    tokens; a single line longer than that is a piece of its own."""
    chunks: list[str] = []
    cur: list[str] = []
    size = 0
    for line, n in zip(lines, tokens):
        if cur and size + n > budget:
            chunks.append("".join(cur))
            cur, size = [], 0
        cur.append(line)
        size += n
    if cur:
        chunks.append("".join(cur))
    return chunks


def fim_windows(backend, docs: Sequence[str], choices: list, window: int | None, seed: int,
                reserve: Sequence[int] | None = None) -> list:
    """Context-level FIM (Bavarian et al. 2022, sec. 4): a FIM document longer than ``window`` tokens is cut
    at line ends into pieces that each fit one training window, and each piece gets its own FIM cut -
    otherwise packing splits ``<fim_prefix> ... <fim_middle> middle`` across windows and the model rarely
    sees a whole example (the middle it must write is in another window than the prefix it reads).
    ``reserve``: per document, tokens of the window kept free (for its repository context)."""
    if window is None:
        return [None if c is None else [c] for c in choices]
    # The three FIM ids, the EOS between pieces and the extra tokens two cuts inside words can cost.
    budgets = [max(8, window - 8 - (reserve[i] if reserve else 0)) for i in range(len(docs))]
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    long = [i for i, c in enumerate(choices) if c is not None and len(docs[i]) > budgets[i]]
    lines = {i: docs[i].splitlines(keepends=True) for i in long}
    flat = [line for i in long for line in lines[i]]
    counts = iter([len(e.ids) for e in encode(flat, add_special_tokens=False)] if flat else [])
    out: list[list[tuple[str, str, str]] | None] = []
    for i, c in enumerate(choices):
        if i not in lines:
            out.append(None if c is None else [c])
            continue
        pieces = line_chunks(lines[i], [next(counts) for _ in lines[i]], budgets[i])
        if len(pieces) == 1:
            out.append([c])
            continue
        digest = hashlib.sha256(docs[i].encode("utf-8", "surrogatepass")).hexdigest()
        out.append([fim_split(p, random.Random(f"{seed}:{digest}:{k}")) for k, p in enumerate(pieces)])
    return out


# ---- token healing at the cursor -----------------------------------------------------------------------
# A byte-level BPE glues the whitespace before a word to the word (" trail", "\n   " + " if"), so a prompt
# that ends in the cursor's indentation or after "if " ends in a token the model has almost only seen
# before more whitespace or a line at column 0 - it answers with a module docstring or the indentation
# again. The prompt is cut back to the last visible character and the completion must write the cut text
# first (Guidance's "token healing", here on text: the backends need nothing). Measured on the default run:
# adapter EM 0.05 -> 0.08, ES 0.26 -> 0.36 (README "The company benchmark").
_CURSOR_WHITESPACE = re.compile(r"\n?[ \t]*\Z")


def heal_prefix(prefix: str) -> tuple[str, str]:
    """(``prefix`` without the whitespace after its last visible character - at most one newline and the
    indentation after it - , that whitespace); a prefix that is all whitespace is kept whole."""
    removed = _CURSOR_WHITESPACE.search(prefix).group(0)
    if not removed or len(removed) == len(prefix):
        return prefix, ""
    return prefix[:-len(removed)], removed


def unheal(completion: str, removed: str) -> str:
    """The completion at the user's cursor: without ``removed`` (what :func:`heal_prefix` cut) when it starts
    with it (deeper indentation stays); on a new line with other indentation, the code of that line; a
    completion that is still inside ``removed`` is empty."""
    if not removed or completion.startswith(removed):
        return completion[len(removed):]
    if removed.startswith(completion):
        return ""
    if "\n" in removed and completion.startswith("\n"):
        return completion[1:].lstrip(" \t")
    return completion.lstrip(" \t")


def stops_outside(stops: Sequence[str], *removed: str) -> tuple[list[str], list[str]]:
    """(stop sequences a backend may apply, those the caller applies after :func:`unheal`): a stop that
    could match inside any of ``removed`` (``"\\n"`` for a cut newline) would end every completion at once."""
    def overlaps(s: str) -> bool:
        return any(s in r or any(s.startswith(r[i:]) for i in range(len(r))) for r in removed if r)
    return [s for s in stops if not overlaps(s)], [s for s in stops if overlaps(s)]


class HealingStream:
    """Streaming :func:`unheal`: holds text back until it is known whether it starts with ``removed``."""

    def __init__(self, removed: str) -> None:
        self.removed, self.buffer, self.decided = removed, "", not removed

    def feed(self, piece: str) -> str:
        if self.decided:
            return piece
        self.buffer += piece
        if self.removed.startswith(self.buffer):      # still inside what was cut: wait
            return ""
        self.decided = True
        return unheal(self.buffer, self.removed)
