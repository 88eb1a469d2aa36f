"""The repo-level company benchmark: fill-in-the-middle tasks from held-out files, prompts as the serving
path sends them, and CrossCodeEval's metrics per task kind and language.

Flow: :func:`mine_repo_tasks` (held-out files of a repo, labelled against the symbol table of *all* its
files, so a cross-file task's defining file may be a training file) -> :func:`sample_tasks` (stratified by
kind and label, seeded) -> :func:`task_prompt` (FIM tokens around prefix and suffix, the retrieved context
in front of the prefix) -> the model -> :func:`score` -> :func:`summarize` / :func:`markdown_table` /
:func:`paired_difference` (base vs adapter on the same tasks).

Metrics (CrossCodeEval, ``eval_metric.py``): exact match of the (post-processed) completion and the
reference, whitespace at line ends ignored; edit similarity = ``fuzz.ratio / 100`` (normalised indel
similarity, rapidfuzz); identifier exact match = the identifier sequences are equal; identifier F1 over the
identifier *sets*. Identifiers come from tree-sitter, so keywords and string contents never count.

Headline ``company_score``: the macro mean over kinds of ``(EM + ES) / 2`` - each kind weighs the same
however many tasks it has, and EM keeps a completion that is "close" from scoring as well as a right one.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from rapidfuzz import fuzz

from codellm_assets.core.data.fim import FimTokens, heal_prefix, stops_outside, unheal
from codellm_assets.core.evaluation.fim_mining import (
    IDENTIFIER_TYPES,
    KINDS,
    FimTask,
    mine_file,
    parse,
    repo_symbols,
)

MAX_PREFIX_CHARS, MAX_SUFFIX_CHARS = 3000, 1000
INLINE_KINDS = frozenset({"single_line", "call_args", "condition"})
METRICS = ("em", "es", "id_em", "id_f1")


# ---- tasks ----------------------------------------------------------------------------------------------

def mine_repo_tasks(all_files: Sequence[Mapping], held_out: Iterable[Mapping]) -> list[FimTask]:
    """Tasks from ``held_out`` files (dicts with repo, path, language, content), cross-file labels against
    the symbols of ``all_files`` of the same repo. Files of languages without a grammar are skipped."""
    by_repo: dict[str, list[Mapping]] = defaultdict(list)
    for f in all_files:
        by_repo[f["repo"]].append(f)
    symbols = {repo: repo_symbols(files) for repo, files in by_repo.items()}
    tasks: list[FimTask] = []
    for f in sorted(held_out, key=lambda r: (r["repo"], r["path"])):
        tasks.extend(mine_file(f, symbols.get(f["repo"], {})))
    return tasks


def sample_tasks(tasks: Sequence[FimTask], *, per_stratum: int, seed: int = 0, max_per_file: int = 3,
                 keep: Callable[[FimTask], bool] | None = None) -> list[FimTask]:
    """Up to ``per_stratum`` tasks of each (kind, cross-file label), drawn with ``seed``, in turn from each
    repo that has tasks in the stratum (one big repo must not fill the benchmark: every repo weighs alike,
    and a repo with fewer tasks leaves its turns to the others); at most ``max_per_file`` of one stratum from
    one file; a task whose reference (whitespace aside) a task of the stratum already asks for is skipped -
    generated or templated code repeats the same span in many files (``weight_grams <= 0`` in every
    service), and ten copies of one question measure one answer. ``keep``: a task it refuses is skipped and
    the draw goes on (asked only about tasks the draw reaches)."""
    strata: dict[tuple[str, bool], dict[str, list[FimTask]]] = defaultdict(lambda: defaultdict(list))
    for t in sorted(tasks, key=lambda t: t.task_id):
        strata[(t.kind, t.cross_file)][t.repo].append(t)
    rng = random.Random(seed)
    chosen: list[FimTask] = []
    for key in sorted(strata):
        pools = [iter(_shuffled(strata[key][repo], rng)) for repo in sorted(strata[key])]
        per_file: dict[tuple[str, str], int] = defaultdict(int)
        asked: set[str] = set()
        taken = 0
        while pools and taken < per_stratum:
            for pool in list(pools):
                if taken >= per_stratum:
                    break
                t = next((t for t in pool if per_file[(t.repo, t.path)] < max_per_file
                          and " ".join(t.reference.split()) not in asked and (keep is None or keep(t))), None)
                if t is None:
                    pools.remove(pool)
                    continue
                per_file[(t.repo, t.path)] += 1
                asked.add(" ".join(t.reference.split()))
                chosen.append(t)
                taken += 1
    return chosen


def _shuffled(items: list[FimTask], rng: random.Random) -> list[FimTask]:
    items = list(items)
    rng.shuffle(items)
    return items


# ---- prompts --------------------------------------------------------------------------------------------

def fim_template(fim: Any) -> FimTokens:
    """FimTokens from a FimTokens or a presets.yaml ``fim`` mapping (``layout: spm`` for suffix-first)."""
    if isinstance(fim, FimTokens):
        return fim
    if isinstance(fim, Mapping):
        return FimTokens.from_preset(fim)
    return FimTokens(fim.prefix, fim.suffix, fim.middle, spm=bool(getattr(fim, "spm", False)))


def build_fim_prompt(fim: Any, prefix: str, suffix: str, *, context: str = "",
                     max_prefix_chars: int = MAX_PREFIX_CHARS, max_suffix_chars: int = MAX_SUFFIX_CHARS) -> str:
    """The model's template (PSM: ``<pre>`` context + the prefix's tail ``<suf>`` the suffix's head
    ``<mid>``; SPM: ``<pre><suf>`` suffix ``<mid>`` context + prefix), as the gateway renders it. The cut
    keeps whole lines (the nearest code matters most; a half line at the cut only confuses the model)."""
    template = fim_template(fim)
    if len(prefix) > max_prefix_chars:
        tail = prefix[-max_prefix_chars:]
        prefix = tail[tail.find("\n") + 1:] if "\n" in tail else tail
    if len(suffix) > max_suffix_chars:
        head = suffix[:max_suffix_chars]
        suffix = head[:head.rfind("\n") + 1] if "\n" in head else head
    return template.build(prefix, suffix, context)


def task_prompt(task: FimTask, fim: Any, *, index: Any | None = None, budget: int = 2000,
                count: Callable[[str], int] = len, max_prefix_chars: int = MAX_PREFIX_CHARS,
                max_suffix_chars: int = MAX_SUFFIX_CHARS) -> str:
    """The prompt for ``task``; with ``index`` (a core.data.code_index.CodeIndex of the task's repo, or a
    mapping repo -> CodeIndex) the retrieved context from files other than the task's own, within ``budget``."""
    if isinstance(index, Mapping):
        index = index.get(task.repo)
    context = ""
    if index is not None:
        context = index.context(task.prefix, task.suffix, path=task.path, language=task.language,
                                budget=budget, count=count)
    return build_fim_prompt(fim, task.prefix, task.suffix, context=context, max_prefix_chars=max_prefix_chars,
                            max_suffix_chars=max_suffix_chars)


# ---- metrics --------------------------------------------------------------------------------------------

def postprocess(task: FimTask, completion: str) -> str:
    """Inline kinds: the first line, less the rest of the cursor's line when the model wrote it again
    (``STANDARD_GRID)`` before the suffix ``)``: what the IDE client does, tabby-agent's single-line trim).
    Span kinds: as many lines as the reference (CrossCodeEval's rule)."""
    if task.kind in INLINE_KINDS:
        line = completion.split("\n", 1)[0]
        rest = task.suffix.split("\n", 1)[0].strip()
        if rest and line.rstrip().endswith(rest) and len(line.rstrip()) > len(rest):
            line = line.rstrip()[:-len(rest)]
        return line
    n = task.reference.rstrip("\n").count("\n") + 1
    return "\n".join(completion.split("\n")[:n])


def _norm(s: str) -> str:
    return "\n".join(line.rstrip() for line in s.strip().splitlines() if line.strip())


def identifiers(code: str, language: str) -> list[str]:
    tree = parse(code, language)
    if tree is None:
        return []
    out, stack = [], [tree.root_node]
    while stack:
        n = stack.pop()
        if n.type in IDENTIFIER_TYPES:
            out.append(n.text.decode("utf-8", "replace"))
        stack.extend(reversed(n.children))
    return out


COMPLETION_CHARS = 400


def score(task: FimTask, completion: str) -> dict[str, Any]:
    """One task's row: em, es, id_em, id_f1 (floats in [0, 1]), the task's strata and what was scored (the
    completion after :func:`postprocess`, cut to COMPLETION_CHARS: what a reader of the results file needs to
    see why a task failed)."""
    answer = postprocess(task, completion)
    pred, ref = _norm(answer), _norm(task.reference)
    pred_ids, ref_ids = identifiers(pred, task.language), identifiers(ref, task.language)
    p_set, r_set = set(pred_ids), set(ref_ids)
    tp = len(p_set & r_set)
    precision = tp / len(p_set) if p_set else float(not r_set)
    recall = tp / len(r_set) if r_set else float(not p_set)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"task_id": task.task_id, "kind": task.kind, "language": task.language, "cross_file": task.cross_file,
            "em": float(pred == ref), "es": fuzz.ratio(pred, ref) / 100.0,
            "id_em": float(pred_ids == ref_ids), "id_f1": f1, "repo": task.repo,
            "completion": answer[:COMPLETION_CHARS]}


def score_all(tasks: Sequence[FimTask], completions: Sequence[str]) -> list[dict[str, Any]]:
    return [score(t, c) for t, c in zip(tasks, completions, strict=True)]


def _means(rows: Sequence[Mapping]) -> dict[str, float]:
    return {"n": len(rows), **{m: round(sum(r[m] for r in rows) / len(rows), 4) for m in METRICS}}


def summarize(rows: Sequence[Mapping]) -> dict[str, Any]:
    """Overall means, per kind, per language, per (kind, language), per label, per (kind, label), and the
    headline score."""
    if not rows:
        raise ValueError("no scored tasks: the benchmark mined nothing from the held-out files (check the "
                         "holdout split and that its languages have tree-sitter grammars)")
    groups: dict[str, dict[str, list[Mapping]]] = {"by_kind": defaultdict(list), "by_language": defaultdict(list),
                                                   "by_kind_language": defaultdict(list),
                                                   "by_label": defaultdict(list), "by_kind_label": defaultdict(list)}
    for r in rows:
        groups["by_kind"][r["kind"]].append(r)
        groups["by_language"][r["language"]].append(r)
        groups["by_kind_language"][f"{r['kind']}/{r['language']}"].append(r)
        label = "cross_file" if r["cross_file"] else "in_file"
        groups["by_label"][label].append(r)
        groups["by_kind_label"][f"{r['kind']}/{label}"].append(r)
    out: dict[str, Any] = {"overall": _means(rows)}
    for name, g in groups.items():
        out[name] = {k: _means(v) for k, v in sorted(g.items())}
    kinds = out["by_kind"].values()
    out["company_score"] = round(sum((k["em"] + k["es"]) / 2 for k in kinds) / len(kinds), 4)
    return out


def markdown_table(summary: Mapping[str, Any], *, other: Mapping[str, Any] | None = None,
                   names: tuple[str, str] = ("base", "adapter")) -> str:
    """Rows kind x language (then per label and overall); with ``other`` (a second summary on the same
    tasks) the EM and ES of both side by side."""
    order = sorted(summary["by_kind_language"], key=lambda k: (KINDS.index(k.split("/")[0])
                                                               if k.split("/")[0] in KINDS else 99, k))
    sections = [(k, summary["by_kind_language"][k], (other or {}).get("by_kind_language", {}).get(k))
                for k in order]
    sections += [(k, v, (other or {}).get("by_label", {}).get(k)) for k, v in summary["by_label"].items()]
    sections.append(("overall", summary["overall"], (other or {}).get("overall")))
    if other is None:
        lines = ["| stratum | n | EM | ES | ID-EM | ID-F1 |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {k} | {v['n']} | {v['em']:.3f} | {v['es']:.3f} | {v['id_em']:.3f} | {v['id_f1']:.3f} |"
                  for k, v, _ in sections]
    else:
        a, b = names
        lines = [f"| stratum | n | EM {a} | EM {b} | ES {a} | ES {b} |", "|---|---:|---:|---:|---:|---:|"]
        for k, v, w in sections:
            w = w or {"em": float("nan"), "es": float("nan")}
            lines.append(f"| {k} | {v['n']} | {v['em']:.3f} | {w['em']:.3f} | {v['es']:.3f} | {w['es']:.3f} |")
    return "\n".join(lines)


def paired_difference(base: Sequence[Mapping], other: Sequence[Mapping], *, metric: str = "em",
                      n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict[str, float]:
    """Mean of ``other - base`` on the same tasks with a paired bootstrap interval (tasks resampled)."""
    by_id = {r["task_id"]: r[metric] for r in base}
    diffs = [r[metric] - by_id[r["task_id"]] for r in other if r["task_id"] in by_id]
    if len(diffs) != len(base) or not diffs:
        raise ValueError(f"paired comparison needs the same tasks on both sides ({len(base)} base rows, "
                         f"{len(diffs)} matched): score base and adapter on one task list")
    rng = random.Random(seed)
    n = len(diffs)
    boots = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    lo_i = max(0, math.floor((1 - confidence) / 2 * n_boot))
    hi_i = min(n_boot - 1, math.ceil((1 + confidence) / 2 * n_boot) - 1)
    return {"mean": round(sum(diffs) / n, 4), "low": round(boots[lo_i], 4), "high": round(boots[hi_i], 4),
            "n": n}


def _em(summary: Mapping[str, Any], stratum: str) -> float | None:
    row = summary["by_kind_label"].get(stratum)
    return row["em"] if row else None


def eval_metadata(tasks: Sequence[FimTask], base_rows: Sequence[Mapping],
                  adapter_rows: Sequence[Mapping]) -> dict[str, Any]:
    """The ``eval_scores`` metadata of one run that scored base and adapter on the same ``tasks``."""
    base, adapter = summarize(base_rows), summarize(adapter_rows)
    by_kind: dict[str, int] = defaultdict(int)
    for t in tasks:
        by_kind[t.kind] += 1
    return {
        "company_score": adapter["company_score"], "company_score_base": base["company_score"],
        "company_em": adapter["overall"]["em"], "company_es": adapter["overall"]["es"],
        "company_em_base": base["overall"]["em"], "company_es_base": base["overall"]["es"],
        "company_tasks": len(tasks), "company_tasks_by_kind": dict(sorted(by_kind.items())),
        "company_languages": sorted({t.language for t in tasks}),
        "company_em_delta": paired_difference(base_rows, adapter_rows, metric="em"),
        # the demo's target: single-line tasks that need another file of the repo
        "company_em_single_line_cross_file": _em(adapter, "single_line/cross_file"),
        "company_em_single_line_cross_file_base": _em(base, "single_line/cross_file"),
        "company_table": markdown_table(base, other=adapter),
    }


# Generation limits per kind: an inline span stops at the line's end; a span may take a body's worth.
MAX_NEW_TOKENS = {"single_line": 48, "call_args": 32, "condition": 32, "multi_line": 128, "function_body": 256}


def run_bench(tasks: Sequence[FimTask], generate: Callable[[list[str], int, list[str]], list[str]], fim: Any, *,
              index: Any | None = None, budget: int = 2000, count: Callable[[str], int] = len,
              max_new_tokens: int | None = None, heal: bool = False, **prompt_limits: int) -> list[dict[str, Any]]:
    """Score one model on ``tasks``: ``generate(prompts, max_new_tokens, stop) -> completions`` is called
    once per kind (its limits differ; ``max_new_tokens`` caps them); ``index`` adds the repository context
    (one CodeIndex, or repo -> CodeIndex); ``heal``: token healing as the gateway does it (core/data/fim.py
    heal_prefix; serving.token_healing); ``prompt_limits``: max_prefix_chars / max_suffix_chars of
    :func:`task_prompt`. Rows in ``tasks`` order."""
    rows: list[dict[str, Any] | None] = [None] * len(tasks)
    for kind in KINDS:
        pos = [i for i, t in enumerate(tasks) if t.kind == kind]
        if not pos:
            continue
        healed = [heal_prefix(tasks[i].prefix) if heal else (tasks[i].prefix, "") for i in pos]
        prompts = [task_prompt(replace(tasks[i], prefix=pre), fim, index=index, budget=budget, count=count,
                               **prompt_limits) for i, (pre, _) in zip(pos, healed)]
        # one call per kind: a stop inside any healed text is left out (score() keeps an inline kind's line)
        stop, _ = stops_outside(["\n"] if kind in INLINE_KINDS else [], *(removed for _, removed in healed))
        limit = MAX_NEW_TOKENS[kind] if max_new_tokens is None else min(MAX_NEW_TOKENS[kind], max_new_tokens)
        completions = generate(prompts, limit, stop)
        if len(completions) != len(pos):
            raise ValueError(f"generate returned {len(completions)} completions for {len(pos)} {kind} prompts")
        for i, c, (_, removed) in zip(pos, completions, healed, strict=True):
            rows[i] = score(tasks[i], unheal(c, removed))     # score() keeps the first line of inline kinds
    return [r for r in rows if r is not None]
