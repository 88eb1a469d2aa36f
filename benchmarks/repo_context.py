"""Repository context figures on the default corpus (codellm.yaml's repos: this checkout, and the click and
typer sample repos built in a temp dir): the code_index build (seconds, chunks; cold, then warm where every
repo is reused) and the time one completion waits for its context (the gateway's path: resolve the repo,
count the prompt's tokens for the room left, retrieve, fit the budget), with a real tokenizer and with the
character fallback.

The corpus goes through the same core functions as the assets (quality rules, scrub, dedup +
decontamination), so the indexes are what `code_index` builds on `make run`.

    .venv/bin/python benchmarks/repo_context.py [--requests 200] [--budget 256]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from codellm_assets.core.data import dedup, filters
from codellm_assets.core.data.code_index_store import build_repo_indexes
from codellm_assets.core.data.git_scan import scan_branch
from codellm_assets.core.data.samples import ensure_sample_repo
from codellm_assets.core.data.scrub import scrubber as scrub
from codellm_assets.core.serving.backends.base import KNOWN_FIM, FimTokens
from codellm_assets.core.serving.context_injection import ContextInjector
from codellm_assets.core.serving.gateway import PromptSpec, RequestContext
from codellm_assets.core.serving.repo_context import RepoContext, RepoRef
from codellm_assets.settings import PROJECT_ROOT, ServingSettings, load_settings


def default_corpus(tmp: Path) -> list[dict]:
    s = load_settings(str(PROJECT_ROOT / "codellm.yaml"))
    records: list[dict] = []
    for repo in s.repos:
        path = s.resolve(repo.path)
        if repo.seed_from_package:
            path = ensure_sample_repo(tmp / repo.name, repo.seed_from_package)
        for branch in ("HEAD",):
            records += scan_branch(path, branch, repo_name=repo.name).records
    kept = filters.apply_quality_rules(records, s.quality).kept
    scrubbed = [{**r, "content": scrub.scrub_text(r["content"], s.scrub).text} for r in kept]
    docs = [dedup.Doc(id=f"{r['repo']}:{r['path']}", text=r["content"], repo=r["repo"], path=r["path"])
            for r in scrubbed]
    keep = set(dedup.dedup_and_decontaminate(docs, s.dedup).kept_ids)
    return [r for r in scrubbed if f"{r['repo']}:{r['path']}" in keep]


def corpus_tokenizer(records: list[dict]):
    """A byte-level BPE of 4096 tokens trained on the corpus, as training_dataset builds for the tiny preset."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4096, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator((r["content"] for r in records), trainer)
    return tok


def cursors(records: list[dict], n: int, seed: int = 0, lines_around: int | None = None
            ) -> list[tuple[str, str, str, str]]:
    """(repo, path, prefix, suffix) at random lines of random files (a cursor mid-line): ``lines_around``
    lines each side (Tabby's agent sends 20 and 20), else up to 6000 / 2000 characters."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        r = rng.choice(records)
        lines = r["content"].splitlines(keepends=True)
        if len(lines) < 10:
            continue
        i = rng.randrange(5, len(lines))
        cut = rng.randrange(0, max(1, len(lines[i])))
        if lines_around:
            prefix = "".join(lines[max(0, i - lines_around):i]) + lines[i][:cut]
            suffix = lines[i][cut:] + "".join(lines[i + 1:i + 1 + lines_around])
        else:
            prefix = ("".join(lines[:i]) + lines[i][:cut])[-6000:]
            suffix = (lines[i][cut:] + "".join(lines[i + 1:]))[:2000]
        out.append((r["repo"], r["path"], prefix, suffix))
    return out


class _Backend:
    """What the injector asks the served model's backend: its tokenizer (or none), FIM tokens, window."""

    def __init__(self, count) -> None:
        self._count = count

    def count_tokens(self, version: str, text: str) -> int | None:
        return self._count(text) if self._count else None

    def fim(self, version: str) -> FimTokens:
        return KNOWN_FIM[0]

    def max_context(self, version: str) -> int:
        return 2048


INJECTORS: dict[bool, ContextInjector] = {}     # one per counting kind: its snippet cache lives on


def latency(rc: RepoContext, picks, budget: int, count) -> tuple[list[float], int]:
    """The gateway's own step (ContextInjector._compute, minus the thread hop) per request."""
    gw = SimpleNamespace(settings=ServingSettings(repo_context_tokens=budget), backend=_Backend(count))
    injector = INJECTORS.setdefault(bool(count), ContextInjector(gw, rc))
    injector.gw = gw
    times, added = [], 0
    for repo, path, prefix, suffix in picks:
        ctx = RequestContext(user="u", team="t", repo_names=(repo,), filepath=path)
        spec = PromptSpec(prompts=[prefix], suffix=suffix, code_prefix=prefix)
        t0 = time.perf_counter()
        res = injector._compute(ctx, spec, "v", 64)
        times.append(1000 * (time.perf_counter() - t0))
        added += res.outcome == "added"
        assert res.tokens <= (budget if count else 3 * budget)
    return times, added


def show(label: str, times: list[float], added: int) -> None:
    q = statistics.quantiles(times, n=20)
    print(f"{label:<36} mean {statistics.mean(times):6.2f} ms  p50 {statistics.median(times):6.2f}  "
          f"p95 {q[18]:6.2f}  max {max(times):6.2f}  context added {added}/{len(times)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--budget", type=int, default=512, help="serving.repo_context_tokens")
    ap.add_argument("--corpus-cache", type=Path, help="keep the prepared corpus here (JSON) for the next run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        if args.corpus_cache and args.corpus_cache.exists():
            records = json.loads(args.corpus_cache.read_text())
        else:
            records = default_corpus(Path(tmp))
            if args.corpus_cache:
                args.corpus_cache.write_text(json.dumps(records, default=str))
        print(f"default corpus: {len(records)} files after quality/scrub/dedup ({time.perf_counter() - t0:.1f} s)")
        root = Path(tmp) / "code_index"
        cold = build_repo_indexes(records, root)
        for r in cold.repos:
            print(f"  {r.repo:<10} {r.files:5d} files {r.bytes / 1e6:6.2f} MB {r.chunks:6d} chunks {r.seconds:6.2f} s")
        print(f"code_index cold: {cold.chunks} chunks, {cold.rebuilt} rebuilt, {cold.seconds:.2f} s")
        warm = build_repo_indexes(records, root)
        print(f"code_index warm (unchanged corpus): {warm.reused} reused, {warm.rebuilt} rebuilt, {warm.seconds:.2f} s")

        rc = RepoContext(root, [RepoRef(r.repo) for r in cold.repos])
        t0 = time.perf_counter()
        rc.refresh(force=True)
        print(f"gateway load of every index: {time.perf_counter() - t0:.2f} s")
        fast = corpus_tokenizer(records)

        def count_tokens(text: str) -> int:
            return len(fast.encode(text).ids)

        sample = "".join(r["content"] for r in records[:50])
        print(f"tokenizer: byte-level BPE, vocab 4096, trained on the corpus (the tiny preset's kind): "
              f"{len(sample) / count_tokens(sample):.2f} chars/token")

        for window, around in (("20+20 lines", 20), ("6000+2000 chars", None)):
            picks = cursors(records, args.requests, lines_around=around)
            show(f"{window}, tokens ({args.budget})", *latency(rc, picks, args.budget, count_tokens))
            show(f"{window}, again (cached snippets)", *latency(rc, picks, args.budget, count_tokens))
            show(f"{window}, chars ({3 * args.budget})", *latency(rc, picks, args.budget, None))


if __name__ == "__main__":
    main()
