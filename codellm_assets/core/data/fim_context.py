"""Repository context in fill-in-the-middle training examples: what the gateway and the company benchmark put
right before the code of the prefix (core/data/code_index.py, CrossCodeEval's layout), the model also sees
while it is fine-tuned - otherwise retrieval at serving time is text the model never learnt to read, and it
hurts (measured: adapter EM 0.07 without, 0.00 with).

For ``rate`` of the FIM documents of a repo (drawn from the document's content and the seed, like every FIM
draw, so a document always gets the same decision), each FIM cut is given the context block the serving
path would retrieve for that cursor: from an index over the *train split* of the same repo, the document's
own file excluded (its code is the prefix and suffix already), within ``budget`` tokens. The piece it cuts
is made ``budget`` tokens shorter so the whole example still fits one training window.

The token cache keys such a document by its content, the context settings and what its context can depend
on (:meth:`RepoContextSampler.key`, CodeIndex.context_key): the train files of its index shard (BM25 scores
one shard of neighbouring paths) and the definitions of the names it uses. A one-file change re-encodes the
context documents of that file's shard and those that use a name whose definition moved, not its repo's.

With a ``cache_dir`` the per-repo indexes themselves are kept there, content-addressed like the ``code_index``
asset's (core/data/code_index_store.py, its own root: these hold the train split only, never held-out files):
a repo whose train files did not change loads its index instead of re-chunking and re-indexing it (on the
100 MB benchmark corpus that was 53 of the 67 s of a re-run), a changed one rebuilds only its changed shards,
the keys read each repo's small IndexScope, and only one repo's index is in memory at a time
(:class:`OneIndexAtATime`).
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from codellm_assets.core.data.code_index import SHARD_CHUNKS, WORD, CodeIndex, IndexScope
from codellm_assets.core.data.code_index_store import build_repo_indexes, content_hash, repo_files

# Bumped when the same document, index and settings would get another context (part of the cache key).
# 2: one file per path in a repo's index (the first branch's, as the code_index asset does).
# 3: ties among BM25 hits by chunk order (CodeIndex.search selects its top k itself).
# 4: BM25 over the document's index shard; definitions of the document's own words only.
# 5: no definitions of a name more than MAX_DEFINING_FILES files define.
CONTEXT_FORMAT = 5
INDEX_CACHE = "context_index"       # under the cache dir


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class OneIndexAtATime(Mapping[str, CodeIndex]):
    """repo -> its CodeIndex, loaded from its directory on first use, and only the last one used kept in
    memory: the train split comes sorted by repo, so a build loads each repo's index once per pass and
    never holds every repo's (an index keeps its chunks' text: about twice its repo's code)."""

    def __init__(self, dirs: Mapping[str, Path]) -> None:
        self.dirs = dict(dirs)
        self.loads = 0
        self._repo: str | None = None
        self._index: CodeIndex | None = None
        self._scope: tuple[str, IndexScope] | None = None

    def scope(self, repo: str) -> IndexScope:
        """``repo``'s IndexScope (what the cache keys need), without loading its chunks and BM25 unless they
        are the index in memory already."""
        if repo == self._repo and self._index is not None:
            return self._index.scope
        if self._scope is None or self._scope[0] != repo:
            self._scope = (repo, IndexScope.load(self.dirs[repo]))
        return self._scope[1]

    def __getitem__(self, repo: str) -> CodeIndex:
        if repo != self._repo:
            directory = self.dirs[repo]          # KeyError for a repo without an index, as a dict
            self._repo, self._index = None, None     # the old one goes before the next one is read
            self._index, self._repo = CodeIndex.load(directory), repo
            self.loads += 1
        return self._index

    def __iter__(self):
        return iter(self.dirs)

    def __len__(self) -> int:
        return len(self.dirs)

    def __contains__(self, repo: object) -> bool:
        return repo in self.dirs


@dataclass
class RepoContextSampler:
    """Which documents get repository context in training, and the context of one cut."""

    indexes: Mapping[str, CodeIndex]          # repo -> index over that repo's train files
    repo_digests: Mapping[str, str]           # repo -> digest of those files (paths and contents)
    rate: float
    budget: int                               # tokens of the training window the context may take
    seed: int = 0

    @classmethod
    def build(cls, train: Iterable[Mapping[str, Any]], *, rate: float, budget: int, seed: int = 0,
              repos: Iterable[str] | None = None, cache_dir: Path | None = None,
              shard_chunks: int = SHARD_CHUNKS) -> RepoContextSampler | None:
        """An index per repo over ``train`` (records: repo, path, content; ``repos``: only these), or None when
        ``rate`` or ``budget`` is 0 or no repo has code to index. ``cache_dir``: where indexes are kept and
        reused across builds (None: built in memory every time)."""
        if rate <= 0 or budget <= 0:
            return None
        wanted = None if repos is None else set(repos)
        records = [r for r in train if isinstance(r.get("content"), str) and (wanted is None or r["repo"] in wanted)]
        if cache_dir is not None:
            root = Path(cache_dir) / INDEX_CACHE
            summary = build_repo_indexes(records, root, file_cache=Path(cache_dir),    # the train split only
                                         shard_chunks=shard_chunks)
            indexes = OneIndexAtATime({r.repo: root / r.dir for r in summary.repos})
            digests = {r.repo: r.content_hash for r in summary.repos}
        else:
            indexes, digests = {}, {}
            for repo, files in sorted(repo_files(records).items()):
                try:
                    indexes[repo] = CodeIndex.build(files, repo=repo, commit=str(files[0].get("commit", "")),
                                                    shard_chunks=shard_chunks)
                except ValueError:      # nothing to chunk: this repo's documents train without context
                    continue
                digests[repo] = content_hash(files, shard_chunks)
        return cls(indexes, digests, rate, budget, seed) if indexes else None

    def reseeded(self, seed: int) -> RepoContextSampler:
        """The same indexes, another draw (each weighted pass of a repo draws its own documents)."""
        return replace(self, seed=seed)

    def wants(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record``'s FIM examples carry context: ``rate`` of its repo's documents, by content."""
        if str(record.get("repo")) not in self.indexes:
            return False
        return random.Random(f"{self.seed}:ctx:{_digest(str(record['content']))}").random() < self.rate

    def key(self, record: Mapping[str, Any]) -> str:
        """What ``record``'s cached token ids depend on besides its content ('' for a document without): the
        files of its index shard and the definitions it can use (CodeIndex.context_key)."""
        if not self.wants(record):
            return ""
        repo = str(record["repo"])
        scopes = getattr(self.indexes, "scope", None)       # OneIndexAtATime: no index loaded for a key
        scope = scopes(repo) if scopes else self.indexes[repo].scope
        key = scope.context_key(str(record.get("path") or ""), str(record["content"]))
        return f":ctx{CONTEXT_FORMAT}:{self.seed}:{self.budget}:{key}"

    def for_record(self, record: Mapping[str, Any],
                   count: Callable[[str], int]) -> Callable[[str, str], str] | None:
        """(prefix, suffix) -> the context block for a cut of ``record`` (``count``: tokens of a text), or None
        when ``record`` trains without context."""
        if not self.wants(record):
            return None
        index, path = self.indexes[str(record["repo"])], str(record.get("path") or "")
        language = record.get("language")
        names = set(WORD.findall(str(record["content"])))       # what key() covers

        def block(prefix: str, suffix: str) -> str:
            return index.context(prefix, suffix, path=path or None, language=language, budget=self.budget,
                                 count=count, names=names)
        return block

    def info(self, records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """For the manifest and the asset's metadata: the settings and, per repo, how many of ``records``
        (the train passes) are drawn to carry context in their FIM examples."""
        drawn: dict[str, int] = defaultdict(int)
        for r in records:
            if self.wants(r):
                drawn[str(r["repo"])] += 1
        return {"context_rate": self.rate, "context_tokens": self.budget, "context_repos": sorted(self.indexes),
                "context_documents": dict(sorted(drawn.items()))}
