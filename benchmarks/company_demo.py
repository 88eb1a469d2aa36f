"""The demo the embedded default exists for: on the generated company repo, the LoRA adapter beats the base
that was pre-trained on public code only, on the repo-level FIM benchmark's cross-file tasks, and retrieval
adds on top. Reproduces the default run's pieces in process, with the settings of codellm.yaml:

    company repo (core/data/company_sample.py) + the public sample repos + this checkout
    -> scan (git_scan.scan_branch) -> time-split holdout per repo (newest dataset.holdout_fraction of files)
    -> tokenizer + tiny base pre-trained on public code (model.tiny_pretrain_*; the cache under --work is reused)
    -> LoRA fine-tune on the train split (training.*)
    -> repo_bench: base vs adapter vs adapter + repository context (a CodeIndex of the train files) on the
       same tasks mined from the company repo's held-out files (--as-run: and this checkout's, 10 per
       stratum, at most 100: the default run's benchmark), drawn and cut as eval_scores does it
       (company_fim.build_tasks drops a reference found verbatim in training; prompts cut to
       eval.company_prefix_chars / company_suffix_chars)

Before 2026-12-03 this script sent 3000 / 1000 characters of prefix / suffix (500-1100 tokens, past the
512-token window the tiny model is trained on) and did not drop verbatim references, so its figures below
and in the README's older lines were not the run's: on the same adapter, single-line cross-file EM was 0.20
that way, 0.32 with the run's cuts, and 0.0 (of 10) once verbatim references are dropped (279 of the 513
mined tasks are: the services' common lines occur in the train split).

Tuning discipline: sizes were tuned on the company generated with --seed (0, `quillon`); the same figures are
printed for a company generated with --heldout-seed (other library names and service domains), never tuned
on. Seconds are per phase (wall and CPU seconds of this process; on a shared machine CPU / 2 is closer to what
2 idle cores take).

    .venv/bin/python benchmarks/company_demo.py [--work DIR] [--set model.tiny_layers=4 ...] [--no-self]

Measured by the default `make run` itself (2026-12-02, 2 idle cores; EM on the run's 100 benchmark tasks,
the held-out files of this checkout and of the company repo; click and typer left out, the base read them):

    run  company repo             window  pretrain (loss)  LoRA (attn + MLP)  make run  EM base/ad.  ES base/adapter
    e2   96 services, weight 8     256    200 (4.48)      300 x 8, lr 2e-3     263 s    0 / 0        0.278 / 0.285
    e3   96 services, weight 8     512    500 (3.05)      150 x 8, lr 1e-2     436 s    0 / 0        0.234 / 0.256
    e4   e3 + line/word-edge cuts  512    500             150 x 8, lr 1e-2     441 s    0 / 0        0.198 / 0.247
    e5   192 services, weight 16   512    400             200 x 8, lr 1e-2     431 s    0 / 0        0.241 / 0.188
    e6   192 services, weight 6    512    400             150 x 8, lr 1e-2     343 s    0 / 0        0.268 / 0.232
    s1   e6, SPM (base and LoRA)   512    400 (3.41)      150 x 8, lr 1e-2     421 s    0 / 0.05     0.169 / 0.265
    s2   s1, LoRA 250 steps        512    400             250 x 8, lr 1e-2     +130 s   0 / 0.06     0.169 / 0.278
    s3   s1 + whole-line cuts      512    400             150 x 8, lr 1e-2     ~420 s   0 / 0.07     0.129 / 0.289
    b1   s3, base bf16 + cosine   512    600 (2.93)      150 x 8, lr 1e-2     461 s *  0 / 0.05     0.218 / 0.308
                                                                             (b1 is the default: README)

* fresh clone, base built in the run (245 s of it); s1-s3 had the base cached. This script on b1's pieces
(company repo only, 25 per stratum, 155 tasks): overall EM 0 / 0.058, single-line cross-file 0 / 0.20
[0.04, 0.36]; with s3's base (400 fp32 steps, loss 3.31): 0 / 0.065 and 0 / 0.16. Four layers instead of two
(bf16, 400 steps, 287 s) pre-trained to loss 3.51 only: deeper costs more per step than it gains in 400.

(e2 and e3 still drew click and typer tasks.) At weight 16 the adapter collapses onto a few company lines
(``return vault.settle_zephyr()`` for every cursor); at 6-8 it writes the company's idioms in the wrong
place. Pre-training 1000 steps x 8 x 256 (202 s) reaches loss 3.1; LoRA on it: EM 0 still. The base is the
limit, not the data path: a 1.6 M-parameter model after ~2 M tokens does not condition on prefix and suffix.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402

from codellm_assets.core.data.code_index import CodeIndex  # noqa: E402
from codellm_assets.core.data.company_sample import ensure_company_repo  # noqa: E402
from codellm_assets.core.data.git_scan import scan_branch  # noqa: E402
from codellm_assets.core.data.holdout import dates_for, split_holdout  # noqa: E402
from codellm_assets.core.data.samples import ensure_sample_repo  # noqa: E402
from codellm_assets.core.data.tokenization import build_training_dataset  # noqa: E402
from codellm_assets.core.evaluation import company_fim  # noqa: E402
from codellm_assets.core.evaluation import repo_bench as rb  # noqa: E402
from codellm_assets.core.training.base_model import (  # noqa: E402
    dataset_tokenizer_args,
    fim_spm_rate,
    generate_completions,
    get_preset,
    load_for_inference,
    resolve_base_model,
)
from codellm_assets.core.training.lora import train_lora  # noqa: E402
from codellm_assets.settings import PROJECT_ROOT, load_settings  # noqa: E402


class Clock:
    """Wall and CPU seconds per named phase."""

    def __init__(self):
        self.rows: list[tuple[str, float, float]] = []

    def __call__(self, name: str):
        clock = self

        class _Phase:
            def __enter__(self):
                self.w, self.c = time.perf_counter(), time.process_time()

            def __exit__(self, *exc):
                clock.rows.append((name, time.perf_counter() - self.w, time.process_time() - self.c))
        return _Phase()

    def table(self) -> str:
        lines = ["| phase | wall s | CPU s |", "|---|---:|---:|"]
        lines += [f"| {n} | {w:.1f} | {c:.1f} |" for n, w, c in self.rows]
        return "\n".join(lines)


def settings_with(overrides: list[str]):
    raw = yaml.safe_load((PROJECT_ROOT / "codellm.yaml").read_text())
    for item in overrides:
        key, _, value = item.partition("=")
        node = raw
        *path, leaf = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        yaml.safe_dump(raw, fh)
    try:
        return load_settings(fh.name, environ={})
    finally:
        Path(fh.name).unlink()


def scan_repos(s, work: Path, company_seed: int, include_self: bool) -> dict[str, tuple[Path, object]]:
    company = next((r for r in s.repos if r.seed_company_demo is not None), None)
    services = company.seed_company_demo.services if company else 48
    repos = {"company": ensure_company_repo(work / f"company-seed{company_seed}-{services}", services=services,
                                            seed=company_seed)}
    for r in s.repos:
        if r.seed_from_package:
            repos[r.name] = ensure_sample_repo(work / f"sample-{r.seed_from_package}", r.seed_from_package)
    if include_self:
        repos["codellm"] = PROJECT_ROOT
    return {name: (path, scan_branch(path, "HEAD", repo_name=name)) for name, path in repos.items()}


def split_per_repo(s, scans) -> tuple[list[dict], dict[str, list[dict]], dict[str, list[dict]]]:
    train, held, every = [], {}, {}
    for name, (path, scan) in scans.items():
        tr, ho = split_holdout(scan.records, fraction=s.dataset.holdout_fraction,
                               dates=dates_for([(name, path, scan.commit)]))
        train += tr
        held[name], every[name] = ho, scan.records
    return train, held, every


def generator(model, tok, batch: int):
    def generate(prompts, max_new_tokens, stop):
        return [c[0] for c in generate_completions(model, tok, prompts, max_new_tokens=max_new_tokens, stop=stop,
                                                   batch_size=batch)]
    return generate


def report(name: str, tasks, rows: dict[str, list[dict]]) -> dict:
    base, ad, ctx = (rb.summarize(rows[k]) for k in ("base", "adapter", "adapter+context"))
    print(f"\n### {name}: {len(tasks)} tasks\n")
    print(rb.markdown_table(base, other=ad))
    cross = {k: [r for r in v if r["cross_file"]] for k, v in rows.items()}
    em = {k: sum(r["em"] for r in v) / max(1, len(v)) for k, v in cross.items()}
    single = {k: [r for r in v if r["kind"] == "single_line"] for k, v in cross.items()}
    em1 = {k: sum(r["em"] for r in v) / max(1, len(v)) for k, v in single.items()}
    ratio = em["adapter"] / em["base"] if em["base"] else float("inf")
    d_ad = rb.paired_difference(cross["base"], cross["adapter"]) if cross["base"] else {}
    d_ctx = rb.paired_difference(cross["adapter"], cross["adapter+context"]) if cross["base"] else {}
    d1 = rb.paired_difference(single["base"], single["adapter"]) if single["base"] else {}
    print(f"\ncross-file EM: base {em['base']:.3f}, adapter {em['adapter']:.3f} (x{ratio:.1f}), adapter+context "
          f"{em['adapter+context']:.3f} | single-line cross-file EM ({len(single['base'])} tasks): base "
          f"{em1['base']:.3f}, adapter {em1['adapter']:.3f}, adapter+context {em1['adapter+context']:.3f}")
    print(f"paired EM difference, 95% bootstrap: adapter - base on cross-file {d_ad}; single-line cross-file "
          f"{d1}; context - no context (adapter) {d_ctx}")
    print(f"company_score: base {base['company_score']}, adapter {ad['company_score']}, adapter+context "
          f"{ctx['company_score']}")
    return {"em": em, "em1": em1, "ratio": ratio, "d": d_ad, "d_ctx": d_ctx}


def run_company(s, args, work: Path, seed: int, clock: Clock) -> dict:
    tag = f"seed {seed}"
    with clock(f"{tag}: build + scan repos, time split"):
        scans = scan_repos(s, work, seed, args.self_repo)
        train, held, every = split_per_repo(s, scans)
    print(f"\n## company {tag}: {len(every['company'])} files, {len(held['company'])} held out; train files "
          f"{len(train)} ({', '.join(f'{n} {len(v) - len(held[n])}' for n, v in every.items())})")
    with clock(f"{tag}: tokenizer + dataset"):
        data = work / f"dataset-seed{seed}"
        company = next((r for r in s.repos if r.seed_company_demo is not None), None)
        summary = build_training_dataset(
            train, data, seq_len=s.dataset.seq_len, validation_fraction=s.dataset.validation_fraction,
            holdout_fraction=0.0, fim_rate=s.dataset.fim_rate, seed=s.dataset.seed,
            fim_spm_rate=fim_spm_rate(s.model, s.dataset.fim_spm_rate),
            repo_weights={"company": company.train_weight} if company else None,
            context_rate=s.dataset.context_rate, context_tokens=s.dataset.context_tokens,
            vocab_size=s.dataset.tokenizer_vocab_size,
            **dataset_tokenizer_args(s.model, vocab_size=s.dataset.tokenizer_vocab_size))
    print(f"train tokens {summary.tokens['train']}, sequences {summary.sequences}")
    with clock(f"{tag}: base (public pre-training; cached after the first)"):
        base = resolve_base_model(s.model, tokenizer_dir=data / "tokenizer", dataset_dir=data / "dataset",
                                  cache_dir=work / "base", seed=s.training.seed, threads=s.training.threads or 2)
    preset = get_preset(s.model.preset)
    with clock(f"{tag}: LoRA fine-tune ({s.training.max_steps} steps)"):
        result = train_lora(base_model_dir=base, dataset_dir=data / "dataset", out_dir=work / f"lora-seed{seed}",
                            training=s.training, target_modules=preset.lora_target_modules,
                            r=s.training.lora_r or preset.lora_r, alpha=s.training.lora_alpha or preset.lora_alpha)
    print(f"val loss base {result.val_loss_base} -> adapter {result.val_loss_adapter}; "
          f"{result.tokens_per_s:.0f} tokens/s")
    # drawn as company_benchmark draws them: a reference found verbatim in a training file is dropped
    repos = [r for r in args.bench_repos if r in every]
    tasks, drawn = company_fim.build_tasks([f for r in repos for f in every[r]], [f for r in repos for f in held[r]],
                                           (r["content"] for r in train), per_stratum=args.per_stratum, seed=0,
                                           max_tasks=args.max_tasks)
    print(f"tasks from {repos}: {drawn['mined']} mined, {drawn['dropped_verbatim_in_training']} dropped as "
          f"verbatim in training ({drawn['dropped_verbatim_by_kind']}), {len(tasks)} drawn")
    index = {r: CodeIndex.build([f for f in train if f["repo"] == r], repo=r, commit=scans[r][1].commit)
             for r in repos}
    rows = {}
    with clock(f"{tag}: benchmark ({len(tasks)} tasks x 3)"):
        for name, adapter, idx in (("base", None, None), ("adapter", result.adapter_dir, None),
                                   ("adapter+context", result.adapter_dir, index)):
            model, tok = load_for_inference(base, adapter, device="cpu")
            rows[name] = rb.run_bench(tasks, generator(model, tok, args.batch), preset.fim, index=idx,
                                      budget=args.context_budget, heal=s.serving.token_healing,
                                      max_prefix_chars=s.eval.company_prefix_chars,
                                      max_suffix_chars=s.eval.company_suffix_chars)   # as eval_scores cuts them
    (work / f"rows-seed{seed}.json").write_text(json.dumps(
        {name: [r | {"reference": t.reference} for r, t in zip(v, tasks, strict=True)] for name, v in rows.items()},
        indent=1))      # every completion beside its reference: what a reader needs to see why a task failed
    return report(f"company {tag}", tasks, rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=None, help="keep repos, datasets and the base here (reused)")
    ap.add_argument("--set", action="append", default=[], help="override a codellm.yaml key: section.key=value")
    ap.add_argument("--seed", type=int, default=0, help="the company tuned on")
    ap.add_argument("--heldout-seed", type=int, default=7, help="a company never tuned on; -1: skip")
    ap.add_argument("--per-stratum", type=int, default=None, help="tasks per (kind, label); default: eval's")
    ap.add_argument("--context-budget", type=int, default=None, help="characters of repository context; "
                    "default: eval.company_context_chars")
    ap.add_argument("--bench-repos", type=lambda v: v.split(","), default=["company"],
                    help="repos whose held-out files give the tasks (comma-separated; 'company' is the generated one)")
    ap.add_argument("--as-run", action="store_true", help="the default run's benchmark: tasks from the company "
                    "repo and this checkout, eval.company_per_stratum per stratum, at most eval.company_max_tasks")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--no-self", dest="self_repo", action="store_false", help="leave this checkout out")
    args = ap.parse_args()
    s = settings_with(args.set)
    args.max_tasks = 0
    if args.as_run:
        args.bench_repos, args.max_tasks = ["company", "codellm"], s.eval.company_max_tasks
        args.per_stratum = args.per_stratum or s.eval.company_per_stratum
    args.per_stratum = args.per_stratum or s.eval.company_max_tasks // 4
    args.context_budget = args.context_budget or s.eval.company_context_chars
    work = args.work or Path(tempfile.mkdtemp(prefix="company-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    m, t, d = s.model, s.training, s.dataset
    print(f"tiny {m.tiny_hidden_size}x{m.tiny_layers} (heads {m.tiny_heads}), pretrain {m.tiny_pretrain_steps} "
          f"steps x {m.tiny_pretrain_seq_len} on {m.tiny_pretrain_source}; LoRA {t.max_steps} steps, batch "
          f"{t.batch_size}, lr {t.learning_rate}, seq_len {d.seq_len}, fim_rate {d.fim_rate}; "
          f"{args.per_stratum} tasks per stratum, context {args.context_budget} chars; work {work}")
    clock = Clock()
    out = {args.seed: run_company(s, args, work, args.seed, clock)}
    if args.heldout_seed >= 0:
        out[args.heldout_seed] = run_company(s, args, work, args.heldout_seed, clock)
    print("\n## seconds per phase\n")
    print(clock.table())
    print("\n| company | cross-file EM base | adapter | ratio | +context | single-line x-file EM adapter | "
          "paired diff [95%] |\n|---|---:|---:|---:|---:|---:|---|")
    for seed, r in out.items():
        role = "tuned on" if seed == args.seed else "held out"
        print(f"| seed {seed} ({role}) | {r['em']['base']:.3f} | {r['em']['adapter']:.3f} | {r['ratio']:.1f} | "
              f"{r['em']['adapter+context']:.3f} | {r['em1']['adapter']:.3f} | "
              f"{r['d'].get('mean')} [{r['d'].get('low')}, {r['d'].get('high')}] |")


if __name__ == "__main__":
    main()
