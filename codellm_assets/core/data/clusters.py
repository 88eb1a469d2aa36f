"""Near-duplicate clusters from verified edges: which file of each group is kept and which it removes
(the rules are in :mod:`codellm_assets.core.data.dedup`'s module doc, step 4 "Cluster")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def near_clusters(
    edges: dict[tuple[int, int], float], prefer: Callable[[int], Any], jaccard: Callable[[int, int], float],
    threshold: float, chain_threshold: float | None = None,
) -> tuple[dict[int, int], dict[int, float]]:
    """Removed doc index -> kept doc index (and their Jaccard), by star clustering of each component,
    widened along chains: a file reached from the keeper through verified edges (each >= ``threshold``)
    whose own Jaccard to the keeper is >= ``chain_threshold`` goes too (None or ``threshold``: star only).
    ``edges``: (a, b) with a < b -> exact Jaccard; ``prefer``: the keep rule's sort key of a doc (smallest
    wins among files with as many neighbours); ``jaccard``: the exact Jaccard of a pair that is no edge."""
    floor = threshold if chain_threshold is None else min(chain_threshold, threshold)
    uf = UnionFind()
    neighbours: dict[int, set[int]] = {}
    for a, b in edges:
        uf.union(a, b)
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    components: dict[int, list[int]] = {}
    for i in sorted(neighbours):
        components.setdefault(uf.find(i), []).append(i)

    def similarity(a: int, b: int) -> float:
        known = edges.get((min(a, b), max(a, b)))
        return known if known is not None else jaccard(a, b)

    removed: dict[int, int] = {}
    jaccards: dict[int, float] = {}
    for members in components.values():
        remaining = set(members)
        while len(remaining) > 1:
            keeper = min(remaining, key=lambda i: (-len(neighbours[i] & remaining), prefer(i)))
            remaining.discard(keeper)
            for m, j in star_and_chain(keeper, remaining, neighbours, similarity, threshold, floor).items():
                removed[m], jaccards[m] = keeper, j
            remaining -= removed.keys()
    return removed, jaccards


def star_and_chain(
    keeper: int, remaining: set[int], neighbours: dict[int, set[int]],
    similarity: Callable[[int, int], float], threshold: float, floor: float,
) -> dict[int, float]:
    """The files ``keeper`` removes, with their Jaccard to it: every remaining file within ``threshold``
    (the star), then, breadth first along verified edges, those within ``floor`` (the chain). A chain
    step never passes through a file that is not itself removed, so two distinct files joined only by a
    third that stays are never merged."""
    taken: dict[int, float] = {}
    for m in sorted(remaining):
        j = similarity(keeper, m)
        if j >= threshold:
            taken[m] = j
    if floor >= threshold:
        return taken
    frontier, seen = sorted(taken), set(taken) | {keeper}
    while frontier:
        nxt: list[int] = []
        for f in frontier:
            for m in sorted((neighbours[f] & remaining) - seen):
                seen.add(m)
                j = similarity(keeper, m)
                if j >= floor:
                    taken[m] = j
                    nxt.append(m)
        frontier = nxt
    return taken
