"""Per-repo training weights (``repos[].train_weight``): how often the train split shows each repo's files."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence


def weighted_passes(train: Sequence[Mapping], weights: Mapping[str, float]) -> list[list[Mapping]]:
    """The passes over the train split that give each repo its weight (``repos[].train_weight``): pass 0
    is every file of weight >= 1 (and the share ``w`` of a repo's files for ``w < 1``, chosen by a hash of
    the pass, repo and path); each further pass repeats the repos of weight > 1, the last one the fractional
    share. The packer streams the passes one after another with a new FIM seed per pass, so a repeated file
    is a new example (other FIM cuts), not the same window twice. Files of unlisted repos weigh 1."""
    def share(r: Mapping, k: int, frac: float) -> bool:
        digest = hashlib.sha256(f"{k}:{r.get('repo')}:{r.get('path')}".encode()).hexdigest()
        return int(digest[:16], 16) / float(1 << 64) < frac

    most = max([1.0, *weights.values()])
    passes: list[list[Mapping]] = []
    for k in range(math.ceil(most)):
        keep = []
        for r in train:
            w = weights.get(str(r.get("repo")), 1.0)
            if w >= k + 1 or (k < w < k + 1 and share(r, k, w - k)):
                keep.append(r)
        passes.append(keep)
    return [p for i, p in enumerate(passes) if p or i == 0]
