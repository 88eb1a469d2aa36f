"""A company-sized corpus for the data-plane benchmark: N real git repos (with history) of a target size.

Files are the ``.py`` sources of the running interpreter's site-packages, taken in sorted path order (so the
same venv always gives the same corpus). Each repo gets whole top-level packages until its share of the bytes
is reached. When the installed sources run out before the target (1 GB needs more than a venv holds), further
files are *renamed variants*: every identifier gets a per-variant suffix, so the copy is a distinct file to
near-dedup (almost every word shingle changes), not a duplicate of its source.

About ``NEAR_DUP_FRACTION`` of each repo's bytes are deterministic near-duplicates of files of ANOTHER repo
(a vendored copy with a licence header, reformatted whitespace, a few identifiers renamed): the shape of a
company monorepo's vendored code, which dedup must drop.

History: three commits per repo (most files, the rest, then a small edit), so the scan runs on a real repo.
"""

from __future__ import annotations

import json
import keyword
import os
import random
import re
import subprocess
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

NEAR_DUP_FRACTION = 0.08
MAX_FILE_BYTES = 200_000       # larger sources are mostly generated tables; skip them like quality does
_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_KEEP_WORDS = frozenset(keyword.kwlist) | {"self", "cls", "print", "len", "range", "None", "True", "False"}
GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com", "GIT_COMMITTER_NAME": "Bench",
           "GIT_COMMITTER_EMAIL": "bench@example.com", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
MARKER = "scale_corpus.json"


@dataclass(frozen=True)
class SourceFile:
    rel: str          # path inside site-packages, e.g. "click/core.py"
    path: Path
    size: int


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def source_files(root: Path | None = None) -> list[SourceFile]:
    """Every readable ``.py`` file under ``root`` (default site-packages) in sorted order, symlinks skipped."""
    root = root or site_packages()
    out = []
    for p in sorted(root.rglob("*.py")):
        if p.is_symlink() or not p.is_file():
            continue
        size = p.stat().st_size
        if 0 < size <= MAX_FILE_BYTES:
            out.append(SourceFile(p.relative_to(root).as_posix(), p, size))
    return out


def renamed_variant(text: str, variant: int) -> str:
    """Every identifier (not keywords / a few builtins) suffixed with ``_v<variant>``: a distinct file."""
    return _IDENT.sub(lambda m: m.group(0) if m.group(0) in _KEEP_WORDS else f"{m.group(0)}_v{variant}", text)


def near_duplicate(text: str, seed: str) -> str:
    """A vendored copy: a licence header, trailing whitespace and blank lines changed, two names renamed."""
    rng = random.Random(seed)
    names = sorted({m.group(0) for m in _IDENT.finditer(text)} - _KEEP_WORDS)
    for name in rng.sample(names, min(2, len(names))):
        text = re.sub(rf"\b{re.escape(name)}\b", f"{name}_vendored", text)
    lines = [line.rstrip() + ("  " if i % 7 == 0 else "") for i, line in enumerate(text.splitlines())]
    header = f"# Vendored from upstream ({seed}); do not edit.\n# SPDX-License-Identifier: MIT\n\n"
    return header + "\n".join(lines) + "\n"


def _stream(sources: list[SourceFile], keep: Callable[[str], bool]) -> Iterator[tuple[str, str]]:
    """(relative path, text) forever: the sources, then renamed variants of them (variant 1, 2, ...)."""
    variant = 0
    while True:
        for src in sources:
            try:
                text = src.path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            rel = src.rel
            if variant:
                rel, text = f"v{variant}/{src.rel}", renamed_variant(text, variant)
            if keep(text):
                yield rel, text
        variant += 1


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env={**os.environ, **GIT_ENV})


def _write(repo: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        target = repo / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def _commit(repo: Path, message: str) -> None:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--allow-empty", "-m", message)


def build_scale_corpus(dest: str | os.PathLike[str], target_bytes: int, *, repos: int = 10,
                       sources: list[SourceFile] | None = None, keep: Callable[[str], bool] | None = None,
                       keep_name: str = "all") -> list[Path]:
    """``repos`` git repos under ``dest`` holding about ``target_bytes`` of source in all; returns their paths.

    ``keep``: only texts it accepts go in (the benchmark leaves out the few installed files the blocking leftover
    check flags, e.g. a library's test keys, since one of them stops the whole data group), named ``keep_name``.
    Reuses a corpus already built at ``dest`` with the same arguments (a marker file records them).
    """
    dest = Path(dest)
    marker = dest / MARKER
    keep = keep or (lambda _text: True)
    spec = {"target_bytes": target_bytes, "repos": repos, "near_dup_fraction": NEAR_DUP_FRACTION, "keep": keep_name}
    paths = [dest / f"repo{i:02d}" for i in range(repos)]
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return paths
    stream = _stream(sources if sources is not None else source_files(), keep)
    share = target_bytes // repos
    contents: list[dict[str, str]] = []
    for _ in paths:
        files, size = {}, 0
        for rel, text in stream:
            files[rel] = text
            size += len(text.encode())
            if size >= share * (1 - NEAR_DUP_FRACTION):
                break
        contents.append(files)
    for i, (repo, files) in enumerate(zip(paths, contents, strict=True)):
        _build_repo(repo, files, contents[(i + 1) % repos], share, seed=f"repo{i}", keep=keep)
    marker.write_text(json.dumps(spec))
    return paths


def _build_repo(repo: Path, files: dict[str, str], neighbour: dict[str, str], share: int, seed: str,
                keep: Callable[[str], bool]) -> None:
    """Three commits: most files, the rest plus vendored near-duplicates of ``neighbour``'s files, an edit."""
    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "-q", "-b", "main")
    names = sorted(files)
    cut = int(len(names) * 0.8)
    _write(repo, {n: files[n] for n in names[:cut]})
    _commit(repo, "initial import")
    vendored, size = {}, 0
    for rel in sorted(neighbour):
        if size >= share * NEAR_DUP_FRACTION:
            break
        copy = near_duplicate(neighbour[rel], f"{seed}:{rel}")
        if keep(copy):
            vendored[f"third_party_copy/{rel}"] = copy
            size += len(copy.encode())
    _write(repo, {**{n: files[n] for n in names[cut:]}, **vendored})
    _commit(repo, "more modules and a vendored copy")
    edit_one_file(repo, message="small fix")


def edit_one_file(repo: Path, *, message: str = "edit one file") -> str:
    """Append a function to the first tracked ``.py`` file and commit: the one-file change of the re-run."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "*.py"], check=True, capture_output=True, text=True)
    rel = sorted(out.stdout.split())[0]
    target = repo / rel
    count = target.read_text(encoding="utf-8").count("def _bench_edit_")
    with target.open("a", encoding="utf-8") as fh:
        fh.write(f"\n\ndef _bench_edit_{count}(values):\n    return [v * {count + 2} for v in values]\n")
    _commit(repo, message)
    return rel


def corpus_texts(repos: list[Path]) -> Iterator[str]:
    """The text of every tracked ``.py`` file at HEAD (what the tokenizer baseline encodes)."""
    for repo in repos:
        out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "*.py"], check=True, capture_output=True)
        for rel in out.stdout.decode().split("\0"):
            if rel:
                yield (repo / rel).read_text(encoding="utf-8")
