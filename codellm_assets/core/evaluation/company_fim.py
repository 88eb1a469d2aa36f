"""The company benchmark as the graph runs it: FIM tasks from held-out files (the headline), decontaminated
against training, scored with and without repository context; the hand-written tasks with tests beside it.

Two parts, side by side:

* **FIM tasks** (:mod:`repo_bench`, the headline ``company_score`` the gate uses): mined from the held-out
  files (``dataset.holdout_split``: the newest commits by default), labelled cross-file against every file
  of the repo. A task whose reference span appears verbatim (whitespace-normalised) in a training file is
  dropped: the model may have seen that very code, so it would measure recall of the corpus. Spans shorter
  than ``MIN_VERBATIM_CHARS`` are kept: an idiom (``return self``, ``i += 1``) occurs in any corpus and is no
  evidence. Checked while the tasks are drawn per (kind, cross-file label), seeded: a dropped task's
  place goes to the next one of its stratum.
* **Execution tasks**: the hand-written function tasks with tests (``eval.company_tasks_file``), run in the
  sandbox; their pass rate is reported as ``company_exec_pass_rate``, not gated (a handful of tasks).

Repository context: one :class:`CodeIndex` per repo over the training files (:func:`build_indexes`); the
challenger is scored again with it, so "with context" and "without" are measured on the same tasks.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codellm_assets.core.evaluation import repo_bench
from codellm_assets.core.evaluation.fim_mining import KINDS, FimTask

MIN_VERBATIM_CHARS = 24
NO_FIM = {"prefix": "", "suffix": "", "middle": ""}   # a model without infilling: left-to-right, no suffix
_WORD = re.compile(r"\w+")


def _squash(text: str) -> str:
    return " ".join(text.split())


class VerbatimIndex:
    """Whitespace-normalised training texts: does a span occur verbatim in one of them?"""

    def __init__(self, texts: Iterable[str]):
        squashed = [_squash(t) for t in texts]
        self.words = {w for t in squashed for w in _WORD.findall(t)}
        self.text = "\0".join(squashed)

    def contains(self, span: str) -> bool:
        s = _squash(span)
        if len(s) < MIN_VERBATIM_CHARS or not all(w in self.words for w in _WORD.findall(s)):
            return False
        return s in self.text


class Decontaminator:
    """The verbatim rule of the module doc as a predicate, counting what it drops per kind."""

    def __init__(self, index: VerbatimIndex):
        self.index, self.checked, self.dropped, self.examples = index, 0, Counter(), []

    def __call__(self, task: FimTask) -> bool:
        self.checked += 1
        if not self.index.contains(task.reference):
            return True
        self.dropped[task.kind] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{task.task_id} {task.repo}:{task.path}:{task.line}")
        return False


def cap_tasks(tasks: Sequence[FimTask], n: int) -> list[FimTask]:
    """At most ``n`` tasks (0: all), taken in turn from each (kind, label) stratum so none is starved."""
    if not n or len(tasks) <= n:
        return list(tasks)
    strata: dict[tuple[str, bool], list[FimTask]] = defaultdict(list)
    for t in tasks:
        strata[(t.kind, t.cross_file)].append(t)
    out: list[FimTask] = []
    queues = [strata[k] for k in sorted(strata)]
    while len(out) < n:
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    keep = {t.task_id for t in out}
    return [t for t in tasks if t.task_id in keep]


def build_tasks(all_files: Sequence[Mapping], held_out: Sequence[Mapping], training_texts: Iterable[str], *,
                per_stratum: int, seed: int, max_tasks: int) -> tuple[list[FimTask], dict[str, Any]]:
    """The FIM tasks of the benchmark and an account of how they were chosen."""
    mined = repo_bench.mine_repo_tasks(all_files, held_out)
    # Checked while drawing (a drop draws the next task of its stratum): the verbatim search costs tasks x
    # corpus, so only the tasks the draw reaches are searched, not every mined one.
    clean = Decontaminator(VerbatimIndex(training_texts))
    tasks = cap_tasks(repo_bench.sample_tasks(mined, per_stratum=per_stratum, seed=seed, keep=clean), max_tasks)
    return tasks, {"mined": len(mined), "checked_verbatim": clean.checked,
                   "dropped_verbatim_in_training": sum(clean.dropped.values()),
                   "dropped_verbatim_by_kind": dict(sorted(clean.dropped.items())),
                   "dropped_examples": clean.examples, "sampled": len(tasks)}


def task_counts(tasks: Sequence[FimTask]) -> dict[str, Any]:
    """Tasks per kind x (cross-file, in-file) and per language."""
    by_kind: dict[str, dict[str, int]] = {}
    for t in tasks:
        row = by_kind.setdefault(t.kind, {"cross_file": 0, "in_file": 0})
        row["cross_file" if t.cross_file else "in_file"] += 1
    return {"by_kind": {k: by_kind[k] for k in KINDS if k in by_kind},
            "by_language": dict(sorted(Counter(t.language for t in tasks).items()))}


def load_tasks(path: str | Path) -> list[FimTask]:
    return [FimTask(**json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip()]


# ---- repository context ------------------------------------------------------------------------------

def build_indexes(files: Iterable[Mapping], *, file_cache: Path | None = None) -> dict[str, Any]:
    """One CodeIndex per repo over ``files`` (corpus records: repo, commit, path, content); ``file_cache``:
    the blob cache root holding each file's definitions (CodeIndex.build)."""
    from codellm_assets.core.data.code_index import CodeIndex

    by_repo: dict[str, list[Mapping]] = defaultdict(list)
    for f in files:
        by_repo[str(f["repo"])].append(f)
    out = {}
    for repo, rs in sorted(by_repo.items()):
        try:
            out[repo] = CodeIndex.build(rs, repo=repo, commit=str(rs[0].get("commit", "")), cache_root=file_cache)
        except ValueError:   # nothing to chunk (empty files only): that repo's tasks get no context
            continue
    return out


def save_indexes(indexes: Mapping[str, Any], directory: Path) -> None:
    """Each repo's index under ``directory/<repo>`` (CodeIndex.save: atomic per repo); a repo no longer
    indexed (taken out of the settings) loses its directory."""
    import shutil

    for repo, index in indexes.items():
        index.save(Path(directory) / repo)
    for stale in (d for d in Path(directory).glob("[!.]*") if d.is_dir() and d.name not in indexes):
        shutil.rmtree(stale, ignore_errors=True)


def load_indexes(directory: str | Path) -> dict[str, Any]:
    """repo -> CodeIndex saved by :func:`save_indexes` (none when the directory is absent)."""
    from codellm_assets.core.data.code_index import META_FILE, CodeIndex

    root = Path(directory)
    if not root.is_dir():
        return {}
    return {d.name: CodeIndex.load(d) for d in sorted(root.iterdir()) if (d / META_FILE).is_file()}


# ---- scoring ------------------------------------------------------------------------------------------

@dataclass
class FimBench:
    """The FIM tasks and how prompts are made from them: the model's FIM tokens (None: no infilling, the
    prompt is the prefix alone), character limits and the generation cap."""

    tasks: list[FimTask]
    fim: Mapping[str, str] | None
    prefix_chars: int = repo_bench.MAX_PREFIX_CHARS
    suffix_chars: int = repo_bench.MAX_SUFFIX_CHARS
    context_chars: int = 2000
    max_new_tokens: int | None = None
    heal: bool = False            # token healing, as serving.token_healing does it in the gateway
    notes: list[str] = field(default_factory=list)

    def identity(self) -> dict[str, Any]:
        """What a score depends on besides the model: part of the benchmark's hash."""
        h = hashlib.sha256()
        for t in self.tasks:
            h.update(json.dumps(t.to_json(), sort_keys=True).encode())
        return {"fim_tasks": h.hexdigest(), "fim": dict(self.fim or NO_FIM), "prefix_chars": self.prefix_chars,
                "suffix_chars": self.suffix_chars, "max_new_tokens": self.max_new_tokens, "heal": self.heal,
                "limits": repo_bench.MAX_NEW_TOKENS}

    def run(self, generate: Callable[..., list[list[str]]], index: Any | None = None) -> list[dict[str, Any]]:
        """Score rows of one model; ``generate`` is evaluate's (prompts, max_new_tokens=, temperature=,
        stop=) -> samples per prompt (local transformers or an OpenAI-compatible server)."""
        def greedy(prompts: list[str], max_new_tokens: int, stop: list[str]) -> list[str]:
            outs = generate(prompts, max_new_tokens=max_new_tokens, temperature=0.0, stop=stop or None)
            return [o[0] if o else "" for o in outs]

        return repo_bench.run_bench(self.tasks, greedy, self.fim or NO_FIM, index=index, budget=self.context_chars,
                                    max_new_tokens=self.max_new_tokens, heal=self.heal and bool(self.fim),
                                    max_prefix_chars=self.prefix_chars,
                                    max_suffix_chars=self.suffix_chars if self.fim else 0)


def model_metrics(rows: Sequence[Mapping], context_rows: Sequence[Mapping] = ()) -> dict[str, float | None]:
    """The metrics one model's FIM rows give (None when there are none: the gate then fails closed)."""
    out: dict[str, float | None] = {"company_score": None, "company_em": None, "company_es": None,
                                    "company_id_f1": None}
    if rows:
        s = repo_bench.summarize(rows)
        out.update(company_score=s["company_score"], company_em=s["overall"]["em"], company_es=s["overall"]["es"],
                   company_id_f1=s["overall"]["id_f1"])
    if context_rows:
        c = repo_bench.summarize(context_rows)
        out.update(company_score_context=c["company_score"], company_em_context=c["overall"]["em"],
                   company_es_context=c["overall"]["es"])
    return out


# ---- the report eval_scores shows -----------------------------------------------------------------------

BAR_CELLS = 20


def bar(value: float | None) -> str:
    """A text bar for a value in [0, 1] (the Dagster UI renders markdown, not charts)."""
    if value is None:
        return "–"
    full, half = divmod(round(max(0.0, min(1.0, value)) * BAR_CELLS * 2), 2)
    return "█" * full + ("▌" if half else "") + f" {value:.3f}"


def _strata(summary: Mapping[str, Any]) -> list[str]:
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(summary["by_kind_label"], key=lambda k: (order.get(k.split("/")[0], 99), k))


def comparison_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """EM and ES per (kind, label) stratum and overall, one column pair per model (same tasks)."""
    names = list(summaries)
    first = summaries[names[0]]
    head = "| stratum | n | " + " | ".join(f"EM {n}" for n in names) + " | " + " | ".join(f"ES {n}" for n in names)
    lines = [head + " |", "|---|---:|" + "---:|" * (2 * len(names))]
    for key, pick in [*((k, ("by_kind_label", k)) for k in _strata(first)), ("overall", ("overall",))]:
        rows = [s[pick[0]] if len(pick) == 1 else s[pick[0]].get(pick[1]) for s in summaries.values()]
        cells = [f"{r['em']:.3f}" if r else "–" for r in rows] + [f"{r['es']:.3f}" if r else "–" for r in rows]
        lines.append(f"| {key} | {(rows[0] or {}).get('n', 0)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def em_chart(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Exact match and edit similarity per stratum as text bars, one line per model: the plot of the
    benchmark in the UI (a small model's EM is often 0 everywhere; its ES still shows the difference)."""
    first = next(iter(summaries.values()))
    lines = ["| stratum | model | exact match | edit similarity |", "|---|---|---|---|"]
    for key in [*_strata(first), "overall"]:
        for name, s in summaries.items():
            row = s["overall"] if key == "overall" else s["by_kind_label"].get(key)
            lines.append(f"| {key} | {name} | `{bar(row['em'] if row else None)}` | "
                         f"`{bar(row['es'] if row else None)}` |")
    return "\n".join(lines)


def report(tasks: Sequence[FimTask], base_rows: Sequence[Mapping], adapter_rows: Sequence[Mapping],
           context_rows: Sequence[Mapping] = ()) -> dict[str, Any]:
    """eval_scores' company figures: repo_bench.eval_metadata (base vs adapter), the adapter with
    repository context, the paired EM intervals, the side-by-side table and the chart (markdown)."""
    out = repo_bench.eval_metadata(tasks, base_rows, adapter_rows)
    summaries = {"base": repo_bench.summarize(base_rows), "adapter": repo_bench.summarize(adapter_rows)}
    if context_rows:
        ctx = summaries["adapter+context"] = repo_bench.summarize(context_rows)
        out.update(company_score_context=ctx["company_score"], company_em_context=ctx["overall"]["em"],
                   company_es_context=ctx["overall"]["es"],
                   company_em_context_delta=repo_bench.paired_difference(adapter_rows, context_rows),
                   company_em_single_line_cross_file_context=(ctx["by_kind_label"].get("single_line/cross_file")
                                                              or {}).get("em"))
    out["company_table"] = comparison_table(summaries)
    out["company_chart"] = em_chart(summaries)
    return out

