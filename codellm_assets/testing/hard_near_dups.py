"""A harder labelled near-duplicate set: the copies a company corpus really holds.

Like :mod:`codellm_assets.testing.near_dups` (same real sources, same labels and :func:`score`), but the
variants are what survives word-shingle MinHash on raw text:

* **release**: the same module a release later: several identifiers renamed everywhere, ~10% of the lines
  added or removed, some comments rewritten;
* **reformat**: another formatter's output: quotes swapped, long calls wrapped one argument a line, trailing
  commas, 2-space indents, blank lines moved;
* **vendored**: copied into another package: the module docstring and header comments replaced by the
  vendoring project's own, absolute imports rewritten under a vendor prefix;
* **reorder**: the top-level definitions in another order;
* **reword**: every comment and docstring rewritten (other words, other lengths);
* **combo**: two or three of the above.

Distinct files that look alike: **scaffold** files (a shared block of real code, the same helpers in every
service, with each file's own body of at least the same size) and the siblings of near_dups.

``variants`` picks the kinds; ``held_out=True`` uses other phrasings for reworded comments, another vendor
header and other rename suffixes, so that a rule tuned on the default set is measured on text it never saw.
``held_out=False`` (seeds 0..) is the tuning slice: normalisation settings are tuned on it only, and the
held-out slice (seeds 100.., ``benchmarks/dedup.py`` section 2b) is what they are reported on.
:func:`one_kept_per_cluster` is the strict per-group figure: exactly one file of a group survives.
"""

from __future__ import annotations

import random
import re
from collections import Counter

from codellm_assets.testing.near_dups import (
    BOILERPLATE,
    LabelledFile,
    _Collector,
    _variant_location,
    exact_jaccard,
    sample_sources,
)

KINDS = ("release", "reformat", "vendored", "reorder", "reword", "combo")
_PHRASES = {
    False: ["normalise the input before we look at it", "this branch is hot, keep it cheap",
            "the caller owns the lifetime of this object", "mirrors the behaviour of the C implementation",
            "do not reorder: the registry depends on it", "legacy path kept for old clients"],
    True: ["guard against a missing value here", "cheap check first, expensive one later",
           "state shared with the worker threads", "matches what the upstream library returns",
           "kept for callers that pass positional arguments", "this used to raise, now it returns None"],
}
_SUFFIXES = {False: ["_v2", "_impl", "_new"], True: ["Ex", "_internal", "2"]}
_VENDOR = {
    False: ('"""Vendored copy for acme-platform; do not edit here, patch upstream instead."""\n'
            "# vendored by tools/vendor.py at 3f2a9c1\n", "acme._vendor"),
    True: ("# This file is part of initech-core's bundled third-party code.\n"
           "# Local changes: none. Source: the upstream release tarball.\n", "initech.third_party"),
}
_DOCSTRING = re.compile(r'("""|\'\'\')(?:.|\n)*?\1')
_COMMENT = re.compile(r"(?m)^(\s*)#.*$|(?<=\S)  # .*$")
_TOP_LEVEL = re.compile(r"(?m)^(?=(?:@|def |class |async def ))")


def rename_everywhere(text: str, rng: random.Random, suffixes: list[str], n: int = 2) -> str:
    names = sorted(set(re.findall(r"(?m)^\s*(?:def|class)\s+([A-Za-z_]\w{3,})", text)))
    for name in rng.sample(names, min(n, len(names))):
        text = re.sub(rf"\b{name}\b", name + rng.choice(suffixes), text)
    return text


def _code_rows(lines: list[str]) -> list[int]:
    """Rows outside triple-quoted strings, without quotes of their own: a release edits code there, and
    never leaves a string unterminated."""
    rows, inside = [], False
    for i, line in enumerate(lines):
        quotes = line.count('"""') + line.count("\'\'\'")
        if not inside and not quotes and line.strip() and "'" not in line and '"' not in line:
            rows.append(i)
        inside ^= quotes % 2 == 1
    return rows


def drift_lines(text: str, rng: random.Random, fraction: float = 0.08) -> str:
    lines = text.split("\n")
    for _ in range(max(1, int(len(lines) * fraction / 2))):
        rows = _code_rows(lines)
        if len(rows) > 10:
            del lines[rng.choice(rows)]
            rows = _code_rows(lines)
        if not rows:
            break
        i = rng.choice(rows)
        indent = re.match(r"\s*", lines[i]).group(0)
        lines.insert(i, f"{indent}_trace = locals().get({rng.choice(['x', 'value', 'item'])!r})")
    return "\n".join(lines)


def reword(text: str, rng: random.Random, phrases: list[str]) -> str:
    def doc(m: re.Match) -> str:
        n = rng.randint(1, 4)
        return m.group(1) + " ".join(rng.choice(phrases).capitalize() + "." for _ in range(n)) + m.group(1)

    text = _DOCSTRING.sub(doc, text)
    return _COMMENT.sub(lambda m: f"{m.group(1) or '  '}# {rng.choice(phrases)}", text)


def reformat(text: str, rng: random.Random) -> str:
    # Swap the quotes of plain one-line strings (never the parts of a triple-quoted one).
    text = re.sub(r"(?<![\w'\"])'([^'\"\\\n]+)'(?!['\"])", r'"\1"', text) if rng.random() < 0.5 else \
        re.sub(r'(?<![\w\'"])"([^\'"\\\n]{1,40})"(?![\'"])', r"'\1'", text)

    def wrap(m: re.Match) -> str:      # one argument a line, with a trailing comma
        indent, head, args = m.group(1), m.group(2), [a.strip() for a in m.group(3).split(",") if a.strip()]
        inner = indent + "    "
        return f"{indent}{head}(\n" + "".join(f"{inner}{a},\n" for a in args) + f"{indent})"

    text = re.sub(r"(?m)^(\s*)([\w.= ]+\w)\(([^()\n]{30,}),?\)$", wrap, text)
    text = re.sub(r"(?m)^((?:    )+)", lambda m: "  " * (len(m.group(1)) // 4), text)
    return re.sub(r"\n\n\n+", "\n\n", text)


def vendor(text: str, rng: random.Random, header: str, prefix: str) -> str:
    text = _DOCSTRING.sub("", text, count=1) if text.lstrip().startswith(('"""', "'''")) else text
    text = re.sub(r"(?m)\A(?:#.*\n)+", "", text)
    text = re.sub(r"(?m)^import (\w+)$", rf"from {prefix} import \1", text)
    text = re.sub(r"(?m)^from (\w+)", rf"from {prefix}.\1", text)
    return header + text


def reorder(text: str, rng: random.Random) -> str:
    parts = _TOP_LEVEL.split(text)
    head, blocks = parts[0], [p for p in parts[1:] if p.strip()]
    rng.shuffle(blocks)
    return head + "".join(b if b.endswith("\n") else b + "\n" for b in blocks)


def make_hard_variant(text: str, kind: str, rng: random.Random, held_out: bool) -> str:
    phrases, suffixes = _PHRASES[held_out], _SUFFIXES[held_out]
    header, prefix = _VENDOR[held_out]
    ops = {
        "release": lambda t: reword(drift_lines(rename_everywhere(t, rng, suffixes), rng), rng, phrases[:3])
        if rng.random() < 0.5 else drift_lines(rename_everywhere(t, rng, suffixes), rng),
        "reformat": lambda t: reformat(t, rng),
        "vendored": lambda t: vendor(t, rng, header, prefix),
        "reorder": lambda t: reorder(t, rng),
        "reword": lambda t: reword(t, rng, phrases),
    }
    if kind != "combo":
        return ops[kind](text)
    for name in rng.sample(sorted(ops), rng.randint(2, 3)):
        text = ops[name](text)
    return text


def build_hard_near_dup_set(n_originals: int = 60, seed: int = 0, held_out: bool = False,
                            kinds: tuple[str, ...] = KINDS) -> list[LabelledFile]:
    """``n_originals`` originals with one variant of each kind in ``kinds``, as many distinct siblings,
    and scaffold files sharing a block of real code (see the module docstring)."""
    rng = random.Random(seed * 2 + int(held_out))
    n_scaffold = n_originals // 3
    longs, shorts = sample_sources(2 * n_originals + 3 * n_scaffold, 2, seed + (1000 if held_out else 0))
    out = _Collector()
    for rel, text in longs[:n_originals]:
        orig = out.add(f"repo-{rng.randrange(8)}", rel, text, None, "original")
        for kind in kinds:
            edited = make_hard_variant(text, kind, rng, held_out)
            repo, path = _variant_location(orig, rng)
            out.add(repo, path, edited, orig.id, f"variant:{kind}", exact_jaccard(text, edited))
    siblings, bodies = longs[n_originals:2 * n_originals], longs[2 * n_originals:]
    for rel, text in siblings:
        out.add(f"repo-{rng.randrange(8)}", rel, text, None, "sibling")
    scaffold = BOILERPLATE + "".join(t for _, t in shorts[:2])   # shared real code, not just a header
    size = len(re.findall(r"\w+", scaffold))
    for rel, text in [(r, t) for r, t in bodies if len(re.findall(r"\w+", t)) >= size][:n_scaffold]:
        out.add(f"repo-{rng.randrange(8)}", rel.replace(".py", "_svc.py"), scaffold + text, None, "scaffold")
    return out.files


def one_kept_per_cluster(files: list[LabelledFile], removed_to_kept: dict[str, str]) -> float:
    """The share of copy groups (an original and its variants) of which exactly one file is kept."""
    sizes = Counter(f.group for f in files)
    kept = Counter(f.group for f in files if f.id not in removed_to_kept)
    groups = [g for g, n in sizes.items() if n > 1]
    return sum(kept[g] == 1 for g in groups) / len(groups) if groups else 1.0
