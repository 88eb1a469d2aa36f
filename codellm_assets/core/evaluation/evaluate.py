"""Evaluate one model (base + optional adapter): HumanEval pass@k in the sandbox, the company benchmark,
syntax-error and lint rates of the generated code, perplexity on held-out company files.

Also the gate: a challenger may not regress from the champion (or, without one, the base) by more than
a margin on pass@1 or the company score.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from codellm_assets.core.evaluation import buggy, humaneval
from codellm_assets.core.evaluation.company_bench import BenchTask, score_tasks
from codellm_assets.core.evaluation.sandbox.runner import run_sandboxed
from codellm_assets.settings import EvalSettings

HUMANEVAL_STOPS = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert "]
GATED_METRICS = ("pass@1", "company_score")


@dataclass
class ModelScores:
    label: str
    metrics: dict[str, float | None]
    humaneval_results: list[dict] = field(default_factory=list)
    company_results: list[dict] = field(default_factory=list)
    isolation: str = ""
    seconds: float = 0.0


def holdout_perplexity(model, tokenizer, texts: Sequence[str], *, max_tokens: int = 256,
                       max_files: int = 32) -> float | None:
    """exp(mean token NLL) over the first `max_tokens` tokens of up to `max_files` held-out files."""
    import torch

    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for text in list(texts)[:max_files]:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens)["input_ids"]
            if ids.shape[1] < 2:
                continue
            out = model(input_ids=ids, labels=ids)
            n = ids.shape[1] - 1
            total_nll += float(out.loss) * n
            total_tokens += n
    return math.exp(total_nll / total_tokens) if total_tokens else None


def _sandbox_runner(timeout_s: float, isolation: str = "full") -> Callable[[str, float], bool]:
    return lambda program, t: run_sandboxed(program, timeout_s=min(t, timeout_s), isolation=isolation).passed


def local_generator(model, tokenizer) -> Callable[..., list[list[str]]]:
    """Generation in this process (transformers; CPU here, a GPU in the GPU image)."""
    from codellm_assets.core.training.inference import generate_completions

    return lambda prompts, **kw: generate_completions(model, tokenizer, prompts, **kw)


def evaluate_model(model, tokenizer, *, label: str, settings: EvalSettings, company_tasks: Sequence[BenchTask],
                   holdout_texts: Sequence[str], log: Callable[[str], None] = print,
                   generate: Callable[..., list[list[str]]] | None = None) -> ModelScores:
    """Scores one model. `generate` (e.g. `OpenAICompletions(...).generate`) replaces local generation;
    held-out perplexity needs the weights, so it is only measured when `model` is given."""
    generate_completions = generate or local_generator(model, tokenizer)
    started = time.monotonic()
    problems = humaneval.load_problems(settings.humaneval_subset)
    prompts = [p["prompt"] for p in problems.values()]
    gen = generate_completions(prompts, max_new_tokens=settings.max_new_tokens,
                               temperature=settings.temperature, stop=HUMANEVAL_STOPS,
                               num_samples=settings.samples_per_task)
    samples = [{"task_id": tid, "completion": c} for tid, cs in zip(problems, gen) for c in cs]
    ks = [k for k in settings.k if k <= settings.samples_per_task] or [1]
    report = humaneval.score_samples(samples, k=ks, workers=settings.workers, timeout_s=settings.timeout_s,
                                     problems=problems, isolation=settings.isolation)
    log(f"[{label}] HumanEval {report.pass_at_k} on {len(problems)} tasks ({report.isolation})")
    assessments = [buggy.assess_code(s["completion"], prompt=problems[s["task_id"]]["prompt"])
                   for s in samples]
    rates = buggy.batch_rates(assessments)

    company = {"summary": {"tasks": 0, "company_score": None}, "results": []}
    if company_tasks:
        outs = generate_completions([t.prompt for t in company_tasks],
                                    max_new_tokens=settings.max_new_tokens, temperature=0.0,
                                    stop=HUMANEVAL_STOPS)
        company = score_tasks(company_tasks, [o[0] for o in outs],
                              run_program=_sandbox_runner(settings.timeout_s, settings.isolation))
        log(f"[{label}] company benchmark {company['summary']}")
    ppl = holdout_perplexity(model, tokenizer, holdout_texts) if model is not None else None
    metrics = {**report.pass_at_k, "company_score": company["summary"]["company_score"],
               "company_exact_match": company["summary"].get("exact_match"),
               "company_edit_similarity": company["summary"].get("edit_similarity"),
               "company_execution_pass_rate": company["summary"].get("execution_pass_rate"),
               "syntax_error_rate": rates.get("syntax_error_rate"), "buggy_code_rate": rates.get("buggy_code_rate"),
               "lint_findings_per_sample": sum(len(a.lint_findings) for a in assessments) / max(len(assessments), 1),
               "holdout_perplexity": ppl, "humaneval_tasks": len(problems)}
    results = [{**r, "risk": a.risk, "syntax_error": a.syntax_error} for r, a in zip(report.results, assessments)]
    return ModelScores(label, metrics, results, company["results"], report.isolation, time.monotonic() - started)


@dataclass
class GateVerdict:
    passed: bool
    reference: str
    rows: list[dict]


def gate(challenger: dict, reference: dict, *, reference_label: str, margin: float, floor: float = 0.0) -> GateVerdict:
    """Blocking when a gated metric drops by more than `margin` below the reference (absolute).

    Below `floor` on both sides a generation metric is noise (a tiny CPU model writes no working code):
    the company comparison then falls back to held-out perplexity on company code, which such a model
    does measure, and the challenger may not be worse than the reference by more than `margin` (relative).
    """
    rows, passed = [], True
    for name in GATED_METRICS:
        ours, theirs = challenger.get(name), reference.get(name)
        if ours is None or theirs is None:
            rows.append({"metric": name, "challenger": ours, reference_label: theirs, "ok": True,
                         "note": "not comparable (missing on one side)"})
            continue
        if name == "company_score" and max(ours, theirs) < floor:
            rows.append({"metric": name, "challenger": round(ours, 4), reference_label: round(theirs, 4),
                         "ok": True, "note": f"both below the floor {floor}: judged on held-out perplexity"})
            ppl_ours, ppl_theirs = challenger.get("holdout_perplexity"), reference.get("holdout_perplexity")
            if ppl_ours is not None and ppl_theirs is not None:
                ok = ppl_ours <= ppl_theirs * (1 + margin)
                passed &= ok
                rows.append({"metric": "holdout_perplexity", "challenger": round(ppl_ours, 3),
                             reference_label: round(ppl_theirs, 3), "delta": round(ppl_ours - ppl_theirs, 3),
                             "ok": ok, "note": "lower is better"})
            continue
        ok = ours >= theirs - margin
        passed &= ok
        rows.append({"metric": name, "challenger": round(ours, 4), reference_label: round(theirs, 4),
                     "delta": round(ours - theirs, 4), "ok": ok})
    return GateVerdict(passed, reference_label, rows)
