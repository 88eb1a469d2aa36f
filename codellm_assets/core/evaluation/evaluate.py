"""Evaluate one model (base + optional adapter): HumanEval pass@k in the sandbox, the company benchmark (FIM
tasks from held-out files, optionally with repository context, plus the hand-written tasks with tests),
syntax-error and lint rates of the generated code, perplexity on held-out company files.

Per-task results are kept so the gate (``gate.py``) can compare two models task by task.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from codellm_assets.core.evaluation import buggy, company_fim, humaneval
from codellm_assets.core.evaluation.company_bench import BenchTask, ExecutionRequest, score_tasks
from codellm_assets.core.evaluation.sandbox.runner import run_sandboxed
from codellm_assets.settings import EvalSettings

HUMANEVAL_STOPS = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert "]
MIN_HOLDOUT_CHARS = 64  # shorter held-out files are skipped (the same ones for every tokenizer)


@dataclass
class ModelScores:
    label: str
    metrics: dict[str, float | None]
    humaneval_results: list[dict] = field(default_factory=list)
    company_results: list[dict] = field(default_factory=list)       # the hand-written tasks with tests
    fim_results: list[dict] = field(default_factory=list)           # repo_bench rows (the headline)
    fim_context_results: list[dict] = field(default_factory=list)   # the same tasks with repository context
    holdout_results: list[dict] = field(default_factory=list)
    isolation: str = ""
    seconds: float = 0.0


def holdout_sample(texts: Sequence[str], *, max_chars: int, max_files: int) -> list[str]:
    """The held-out texts scored: the first ``max_files`` long enough, cut at ``max_chars``."""
    return [t[:max_chars] for t in texts if len(t[:max_chars].strip()) >= MIN_HOLDOUT_CHARS][:max_files]


def holdout_nll(model, tokenizer, texts: Sequence[str], *, max_chars: int = 2000, max_files: int = 64,
                batch_size: int = 8) -> list[dict]:
    """Per held-out file: summed token NLL (nats) of its first ``max_chars`` characters, the characters
    and tokens predicted. Per character, so models with different tokenizers compare on the same text;
    per file, so the gate can pair them. Right padding: positions are those of the unpadded sequence."""
    import torch

    items = holdout_sample(texts, max_chars=max_chars, max_files=max_files)
    limit = getattr(model.config, "max_position_embeddings", None) or 2048
    rows, side = [], tokenizer.padding_side
    tokenizer.padding_side = "right"
    try:
        for start in range(0, len(items), batch_size):
            batch = items[start:start + batch_size]
            enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=limit)
            ids, mask = enc["input_ids"], enc["attention_mask"]
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            nll = -torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1) * mask[:, 1:]
            for i, text in enumerate(batch):
                kept = ids[i][mask[i].bool()]
                chars = len(tokenizer.decode(kept[1:], skip_special_tokens=True))
                rows.append({"id": hashlib.sha256(text.encode()).hexdigest()[:16], "nll": float(nll[i].sum()),
                             "chars": chars, "tokens": int(mask[i, 1:].sum())})
    finally:
        tokenizer.padding_side = side
    return rows


def humaneval_problems(settings: EvalSettings) -> dict[str, dict]:
    """The HumanEval tasks of this benchmark: ``humaneval_subset`` drawn once by ``humaneval_seed`` (not
    the first N, which are easier than the rest), in file order; the same tasks on every run."""
    problems = humaneval.load_problems()
    n = settings.humaneval_subset
    if not n or n >= len(problems):
        return problems
    chosen = set(random.Random(settings.humaneval_seed).sample(sorted(problems), n))
    return {tid: p for tid, p in problems.items() if tid in chosen}


def benchmark_hash(settings: EvalSettings, company_tasks: Sequence[BenchTask], holdout_texts: Sequence[str],
                   extra: dict | None = None) -> str:
    """Identity of what a model is scored on and how: a reference's scores are cached under it. ``extra``:
    more of it (the FIM benchmark's ``FimBench.identity()``)."""
    h = hashlib.sha256()
    if extra is not None:
        h.update(json.dumps(extra, sort_keys=True).encode())
    fields = ("humaneval_subset", "humaneval_seed", "samples_per_task", "temperature", "max_new_tokens", "k",
              "timeout_s", "holdout_files", "holdout_chars")
    h.update(json.dumps({f: getattr(settings, f) for f in fields}, sort_keys=True).encode())
    for tid, p in humaneval_problems(settings).items():
        h.update(f"{tid}\0{p['prompt']}\0{p['test']}\0".encode())
    for t in company_tasks:
        h.update(json.dumps(t.to_json(), sort_keys=True).encode())
    for text in holdout_sample(holdout_texts, max_chars=settings.holdout_chars, max_files=settings.holdout_files):
        h.update(hashlib.sha256(text.encode()).digest())
    h.update(json.dumps(HUMANEVAL_STOPS).encode())
    return h.hexdigest()[:32]


def sandbox_runner(timeout_s: float, isolation: str = "full") -> Callable[[ExecutionRequest, float], bool]:
    """Company tasks' tests, judged: the completion runs in the worker, its tests in the judge."""
    return lambda req, t: run_sandboxed(req.program, timeout_s=min(t, timeout_s), isolation=isolation,
                                        tests=req.tests, calls=req.calls).passed


def local_generator(model, tokenizer, batch_size: int = 16) -> Callable[..., list[list[str]]]:
    """Generation in this process (transformers; CPU here, a GPU in the GPU image), batched. Prompts go
    shortest first so a batch pads little (HumanEval prompts range from 100 to 1,500 characters)."""
    from codellm_assets.core.training.inference import generate_completions

    def generate(prompts: Sequence[str], **kw) -> list[list[str]]:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        outs = generate_completions(model, tokenizer, [prompts[i] for i in order], batch_size=batch_size, **kw)
        result: list[list[str]] = [[] for _ in prompts]
        for i, out in zip(order, outs):
            result[i] = out
        return result

    return generate


def evaluate_model(model, tokenizer, *, label: str, settings: EvalSettings, company_tasks: Sequence[BenchTask],
                   holdout_texts: Sequence[str], log: Callable[[str], None] = print,
                   generate: Callable[..., list[list[str]]] | None = None,
                   fim_bench: company_fim.FimBench | None = None, indexes: dict | None = None) -> ModelScores:
    """Scores one model. `generate` (e.g. `OpenAICompletions(...).generate`) replaces local generation;
    held-out perplexity needs the weights, so it is only measured when `model` is given. `fim_bench`: the
    FIM tasks (the headline company_score); `indexes` (repo -> CodeIndex): score them again with context."""
    generate_completions = generate or local_generator(model, tokenizer, settings.generation_batch_size)
    started = time.monotonic()
    problems = humaneval_problems(settings)
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
                              run_program=sandbox_runner(settings.timeout_s, settings.isolation))
        log(f"[{label}] company execution tasks {company['summary']}")
    fim_rows, fim_context = [], []
    if fim_bench is not None and fim_bench.tasks:
        fim_rows = fim_bench.run(generate_completions)
        fim_context = fim_bench.run(generate_completions, index=indexes) if indexes else []
    fim_metrics = company_fim.model_metrics(fim_rows, fim_context)
    log(f"[{label}] company FIM benchmark on {len(fim_rows)} tasks: {fim_metrics}")
    holdout = holdout_nll(model, tokenizer, holdout_texts, max_chars=settings.holdout_chars,
                          max_files=settings.holdout_files,
                          batch_size=settings.generation_batch_size) if model is not None else []
    nll, tokens, chars = (sum(r[k] for r in holdout) for k in ("nll", "tokens", "chars"))
    metrics = {**report.pass_at_k, **fim_metrics, "company_exec_tasks": company["summary"]["tasks"],
               "company_exec_edit_similarity": company["summary"].get("edit_similarity"),
               "company_exec_pass_rate": company["summary"].get("execution_pass_rate"),
               "syntax_error_rate": rates.get("syntax_error_rate"), "buggy_code_rate": rates.get("buggy_code_rate"),
               "lint_findings_per_sample": sum(len(a.lint_findings) for a in assessments) / max(len(assessments), 1),
               "holdout_perplexity": math.exp(nll / tokens) if tokens else None,
               "holdout_bits_per_char": nll / chars / math.log(2) if chars else None,
               "holdout_files": len(holdout), "humaneval_tasks": len(problems)}
    results = [{**r, "risk": a.risk, "syntax_error": a.syntax_error} for r, a in zip(report.results, assessments)]
    return ModelScores(label, metrics, results, company["results"], fim_rows, fim_context, holdout,
                       report.isolation, time.monotonic() - started)


def paired_record(scores: ModelScores) -> dict:
    """The per-task tables the gate pairs (see ``gate.METRICS``): small enough to store with the scores."""
    per_task: dict[str, list[bool]] = defaultdict(list)
    for r in scores.humaneval_results:
        per_task[r["task_id"]].append(bool(r["passed"]))
    return {"metrics": scores.metrics,
            "humaneval": [{"task_id": t, "samples": len(p), "correct": sum(p)} for t, p in per_task.items()],
            "company": list(scores.fim_results),
            "company_exec": [{"task_id": r["task_id"], "edit_similarity": r["edit_similarity"],
                              "passed": r["passed"]} for r in scores.company_results],
            "holdout": list(scores.holdout_results)}
