"""A labelled near-duplicate set built from real Python sources, to measure dedup recall and false drops.

Every file carries a ``group``: files of one group are copies of one original (exact or edited); files of
different groups are distinct. The set holds:

* **originals** with 1-3 **variants** each, made by realistic edits: identifiers renamed in a few places,
  comments / a docstring line rewritten, whitespace reformatted, a few lines added and removed, a license
  header added, or the file copied unchanged into another repo (combinations of 1-4 edits);
* **distinct but similar** files, each its own group: siblings from the same package, files sharing a
  boilerplate header with different bodies, *spliced* files (the first 30-45% of an original's lines,
  then the logic of another file) and short files.

Sources are ``.py`` files of the running interpreter's site-packages (stdlib as a fallback), sampled
deterministically from ``seed``. The pools are filtered so that no two *source* files are near each
other (exact 3-shingle Jaccard < 0.4 with every file already taken), hence the labels hold. The module
does its own shingling so that the labels never depend on the code under test.
"""

from __future__ import annotations

import random
import re
import sysconfig
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_WORD = re.compile(r"\w+")
SOURCE_MAX_BYTES = 40_000
LONG_MIN_TOKENS = 300  # originals: long enough that a few edits stay a few percent of the file
SHORT_TOKENS = (25, 150)
DISTINCT_MAX_JACCARD = 0.4
BOILERPLATE_MIN_BODY_TOKENS = 60

APACHE_HEADER = """# Copyright 2024 Acme Corp.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""
LICENSE_HEADERS = [
    "# SPDX-License-Identifier: Apache-2.0\n# Copyright 2024 Acme Corp.\n",
    "# Copyright (c) 2023 Initech Ltd. All rights reserved.\n# Unauthorized copying is prohibited.\n",
    APACHE_HEADER,
]
BOILERPLATE = '''# Copyright (c) 2022 Globex Corporation. All rights reserved.
# Internal use only. Do not distribute outside the company.
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

logger = logging.getLogger(__name__)
DEBUG = os.environ.get("GLOBEX_DEBUG") == "1"
CONFIG_PATH = Path(os.environ.get("GLOBEX_CONFIG", "~/.globex/config.json")).expanduser()


def load_config(path: Optional[Path] = None) -> dict[str, Any]:
    """Read the service configuration, or an empty one when the file is missing."""
    target = path or CONFIG_PATH
    if not target.exists():
        logger.warning("no config at %s", target)
        return {}
    return json.loads(target.read_text())

'''
COMMENTS = [
    "keep this in sync with the server side",
    "fast path for the common case",
    "see the design notes for why this is needed",
    "TODO: handle the empty input",
    "retry once before giving up",
    "backwards compatible with the old format",
]
INSERTED_LINES = [
    'logger.debug("entering %s", __name__)',
    "# FIXME: remove after the migration",
    "assert True  # sanity",
    "import os",
    "_UNUSED = None",
    "pass  # placeholder",
]
RENAME_SUFFIXES = ["_v2", "_new", "_impl", "_value", "_tmp", "_local"]


@dataclass(frozen=True)
class LabelledFile:
    id: str
    repo: str
    path: str
    text: str
    group: str  # id of the original this file copies (its own id for a distinct file)
    kind: str  # original | variant:<edits> | sibling | boilerplate | spliced | short
    jaccard_to_group: float = 1.0  # exact 5-shingle Jaccard to its original (variants, spliced)


def _shingles(text: str, k: int) -> set[str]:
    toks = _WORD.findall(text)
    return set(map(" ".join, zip(*(toks[i:] for i in range(k)))))


def exact_jaccard(a: str, b: str, k: int = 5) -> float:
    sa, sb = _shingles(a, k), _shingles(b, k)
    return len(sa & sb) / len(sa | sb) if sa | sb else 0.0


class _DistinctPool:
    """Accepts a text only when its 3-shingle Jaccard with every accepted text is below the limit."""

    def __init__(self) -> None:
        self.postings: dict[str, list[int]] = {}
        self.sizes: list[int] = []

    def add(self, text: str) -> bool:
        sh = _shingles(text, 3)
        if not sh:
            return False
        overlap = Counter(j for s in sh for j in self.postings.get(s, ()))
        if any(n / (len(sh) + self.sizes[j] - n) >= DISTINCT_MAX_JACCARD for j, n in overlap.items()):
            return False
        for s in sh:
            self.postings.setdefault(s, []).append(len(self.sizes))
        self.sizes.append(len(sh))
        return True


def source_paths(root: Path | None = None) -> list[Path]:
    """Sorted ``.py`` files under site-packages (or ``root``), skipping caches and vendored copies."""
    root = root or Path(sysconfig.get_paths()["purelib"])
    paths = [p for p in root.rglob("*.py") if "__pycache__" not in p.parts and "_vendor" not in p.parts]
    if len(paths) < 200:  # a bare environment: the stdlib is always there
        paths += [p for p in Path(sysconfig.get_paths()["stdlib"]).rglob("*.py") if "test" not in p.parts]
    return sorted(paths)


def sample_sources(
    n_long: int,
    n_short: int,
    seed: int = 0,
    root: Path | None = None,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(relative path, text) of mutually distinct long and short source files, package by package
    so that siblings of one package end up together."""
    paths = source_paths(root)
    base = Path(sysconfig.get_paths()["purelib"]) if root is None else root
    by_package: dict[str, list[Path]] = {}
    for p in paths:
        rel = p.relative_to(base) if p.is_relative_to(base) else Path(p.name)
        by_package.setdefault(rel.parts[0], []).append(p)
    rng = random.Random(seed)
    packages = sorted(by_package)
    rng.shuffle(packages)
    pool, longs, shorts = _DistinctPool(), [], []
    for pkg in packages:
        files = by_package[pkg]
        rng.shuffle(files)
        for p in files[:12]:
            if len(longs) >= n_long and len(shorts) >= n_short:
                return longs, shorts
            text = _read(p)
            if text is None:
                continue
            n_tok = len(_WORD.findall(text))
            rel = str(p.relative_to(base)) if p.is_relative_to(base) else p.name
            wanted = (
                longs
                if n_tok >= LONG_MIN_TOKENS and len(longs) < n_long
                else shorts
                if SHORT_TOKENS[0] <= n_tok <= SHORT_TOKENS[1] and len(shorts) < n_short
                else None
            )
            if wanted is not None and pool.add(text):
                wanted.append((rel, text))
    return longs, shorts


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > SOURCE_MAX_BYTES:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


# ---- edits ---------------------------------------------------------------------------------------
def rename_identifiers(text: str, rng: random.Random) -> str | None:
    names = sorted(
        {
            n
            for n in re.findall(
                r"^\s*(?:def|class)\s+([A-Za-z_]\w{2,})|^\s*([A-Za-z_]\w{2,})\s*=", text, re.MULTILINE
            )
            for n in n
            if n
        }
    )
    names = [n for n in names if len(re.findall(rf"\b{n}\b", text)) >= 2]
    if not names:
        return None
    for name in rng.sample(names, min(2, len(names))):
        text = re.sub(rf"\b{name}\b", name + rng.choice(RENAME_SUFFIXES), text, count=3)
    return text


def change_comments(text: str, rng: random.Random) -> str | None:
    lines = text.split("\n")
    comment_rows = [i for i, line in enumerate(lines) if line.lstrip().startswith("#") and len(line) > 3]
    doc = re.search(r'("""|\'\'\')\s*([^\n]{10,})', text)
    if not comment_rows and not doc:
        return None
    for i in rng.sample(comment_rows, min(3, len(comment_rows))):
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        lines[i] = f"{indent}# {rng.choice(COMMENTS)}"
    text = "\n".join(lines)
    if doc:
        text = text.replace(doc.group(2), rng.choice(COMMENTS).capitalize() + ".", 1)
    return text


def reformat_whitespace(text: str, rng: random.Random) -> str:
    style = rng.choice(["indent2", "trailing", "crlf", "blank"])
    if style == "indent2":
        return re.sub(r"^((?:    )+)", lambda m: "  " * (len(m.group(1)) // 4), text, flags=re.MULTILINE)
    if style == "trailing":
        return "\n".join(
            line + (" " * rng.randint(1, 3) if rng.random() < 0.3 else "") for line in text.split("\n")
        )
    if style == "crlf":
        return text.replace("\n", "\r\n")
    return re.sub(r"\n(\s*def )", r"\n\n\1", text)


def edit_lines(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 5)):
        rows = [i for i, line in enumerate(lines) if line.strip()]
        del lines[rng.choice(rows)]
    for _ in range(rng.randint(1, 5)):
        i = rng.randrange(1, len(lines))
        indent = lines[i - 1][: len(lines[i - 1]) - len(lines[i - 1].lstrip())]
        lines.insert(i, indent + rng.choice(INSERTED_LINES))
    return "\n".join(lines)


def add_license(text: str, rng: random.Random) -> str:
    return rng.choice(LICENSE_HEADERS) + text


EDITS = {
    "rename": rename_identifiers,
    "comments": change_comments,
    "whitespace": reformat_whitespace,
    "lines": edit_lines,
    "license": add_license,
}


def make_variant(text: str, rng: random.Random) -> tuple[str, str]:
    """(edited text, edit names); 1 in 6 variants is an unchanged copy."""
    if rng.random() < 1 / 6:
        return text, "copy"
    applied = []
    for name in sorted(rng.sample(sorted(EDITS), rng.randint(1, 4))):
        edited = EDITS[name](text, rng)
        if edited is not None:
            text, applied = edited, applied + [name]
    return text, "+".join(applied) or "copy"


# ---- the set -------------------------------------------------------------------------------------
def build_near_dup_set(n_files: int = 300, seed: int = 0, root: Path | None = None) -> list[LabelledFile]:
    """About ``n_files`` labelled files (see the module docstring), deterministic for a given seed and
    environment. Composition: 18% originals with 1-3 variants each, 8% each of spliced, boilerplate and
    short files, the rest siblings (distinct files of the sampled packages)."""
    rng = random.Random(seed)
    n_dup, n_splice, n_boiler, n_short = (max(1, round(f * n_files)) for f in (0.18, 0.08, 0.08, 0.08))
    variant_counts = [rng.randint(1, 3) for _ in range(n_dup)]
    n_sibling = max(0, n_files - n_dup - sum(variant_counts) - n_splice - n_boiler - n_short)
    longs, shorts = sample_sources(n_dup + n_sibling + n_splice, n_short + n_boiler, seed, root)
    if len(longs) < n_dup + n_splice + 2 or len(shorts) < 2:
        raise RuntimeError(
            f"only {len(longs)} long and {len(shorts)} short distinct source files found; "
            "install more packages or pass another root"
        )
    out = _Collector()
    originals = longs[:n_dup]
    for (rel, text), n_variants in zip(originals, variant_counts):
        orig = out.add(f"repo-{rng.randrange(8)}", rel, text, None, "original")
        for _ in range(n_variants):
            edited, edits = make_variant(text, rng)
            repo, path = _variant_location(orig, rng)
            out.add(repo, path, edited, orig.id, f"variant:{edits}", exact_jaccard(text, edited))
    bodies = longs[n_dup : n_dup + n_splice]
    for (rel, text), (_, body) in zip(originals, bodies):  # same head as an original, another file's logic
        head = text.split("\n")
        head = head[: int(len(head) * rng.uniform(0.30, 0.45))]
        tail = body.split("\n")
        spliced = "\n".join(head + tail[len(tail) // 2 :])
        out.add(
            f"repo-{rng.randrange(8)}",
            _suffixed(rel, "_spliced"),
            spliced,
            None,
            "spliced",
            exact_jaccard(text, spliced),
        )
    for rel, text in longs[n_dup + n_splice :]:
        out.add(f"repo-{rng.randrange(8)}", rel, text, None, "sibling")
    # The shared header (~150 tokens) stays at most ~70% of a boilerplate file: its body has >= 60
    # tokens. Below that a file is mostly header and any shingle measure calls two of them near copies.
    bodies_ok = [s for s in shorts if len(_WORD.findall(s[1])) >= BOILERPLATE_MIN_BODY_TOKENS][:n_boiler]
    for rel, text in bodies_ok:
        out.add(f"repo-{rng.randrange(8)}", _suffixed(rel, "_svc"), BOILERPLATE + text, None, "boilerplate")
    for rel, text in [s for s in shorts if s not in bodies_ok]:
        out.add(f"repo-{rng.randrange(8)}", rel, text, None, "short")
    return out.files


class _Collector:
    def __init__(self) -> None:
        self.files: list[LabelledFile] = []
        self.ids: set[str] = set()

    def add(
        self, repo: str, path: str, text: str, group: str | None, kind: str, jac: float = 1.0
    ) -> LabelledFile:
        while f"{repo}/{path}" in self.ids:
            path = _suffixed(path, "_1")
        f = LabelledFile(f"{repo}/{path}", repo, path, text, group or f"{repo}/{path}", kind, round(jac, 4))
        self.files.append(f)
        self.ids.add(f.id)
        return f


def _suffixed(path: str, suffix: str) -> str:
    stem, dot, ext = path.rpartition(".")
    return f"{stem}{suffix}.{ext}" if dot else path + suffix


def _variant_location(orig: LabelledFile, rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:  # copied into another repo
        return f"repo-{(int(orig.repo.split('-')[1]) + rng.randrange(1, 8)) % 8}", orig.path
    return orig.repo, rng.choice(
        [f"legacy/{orig.path}", _suffixed(orig.path, "_old"), f"vendor_copy/{orig.path}"]
    )


# ---- scoring -------------------------------------------------------------------------------------
def score(files: list[LabelledFile], removed_to_kept: dict[str, str]) -> dict:
    """Duplicate recall and false drops of a dedup outcome (removed id -> id kept in its place).

    recall = correctly removed / removable, where a group of g files has g - 1 removable files and a
    removal is correct when the file kept in its place is of the same group. A false drop is a removal
    in favour of a file of another group: a distinct file lost."""
    group = {f.id: f.group for f in files}
    kind = {f.id: f.kind.split(":")[0] if not f.kind.startswith("variant") else f.kind for f in files}
    sizes = Counter(group.values())
    removable = sum(n - 1 for n in sizes.values())
    correct = [r for r, k in removed_to_kept.items() if group[r] == group[k]]
    false_drops = sorted(r for r, k in removed_to_kept.items() if group[r] != group[k])
    missed = _missed_by_kind(files, removed_to_kept)
    return {
        "files": len(files),
        "groups": len(sizes),
        "removable": removable,
        "removed": len(removed_to_kept),
        "correct": len(correct),
        "recall": len(correct) / removable if removable else 1.0,
        "false_drops": false_drops,
        "false_drop_kinds": sorted(Counter(kind[r] for r in false_drops).items()),
        "missed_by_edit": missed,
    }


def _missed_by_kind(files: list[LabelledFile], removed_to_kept: dict[str, str]) -> dict[str, int]:
    """Per group, variants that survived beyond the one file the group may keep, by edit kind."""
    kept_by_group: dict[str, list[LabelledFile]] = {}
    for f in files:
        if f.id not in removed_to_kept:
            kept_by_group.setdefault(f.group, []).append(f)
    missed: Counter[str] = Counter()
    for kept in kept_by_group.values():
        for f in sorted(kept, key=lambda f: f.kind != "original")[1:]:
            missed[f.kind.removeprefix("variant:")] += 1
    return dict(sorted(missed.items()))
