"""Settings of the evaluation stage: the benchmarks and the promotion gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from codellm_assets.settings.base import _Model


class EvalSettings(_Model):
    humaneval_subset: int = Field(164, ge=0, description="HumanEval tasks scored, drawn once by "
                                  "humaneval_seed (the same tasks every run); 0: all 164")
    humaneval_seed: int = Field(0, description="which tasks a subset holds (part of the benchmark's identity)")
    samples_per_task: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0)
    max_new_tokens: int = Field(64, ge=1)
    generation_batch_size: int = Field(16, ge=1, description="prompts per generate() call (local models, "
                                       "shortest prompts first)")
    k: list[int] = Field(default_factory=lambda: [1])
    timeout_s: float = Field(5.0, gt=0)
    workers: int = Field(0, ge=0, description="0: number of cores")
    holdout_files: int = Field(64, ge=0, description="held-out company files scored for likelihood")
    holdout_chars: int = Field(2000, ge=64, description="characters of each held-out file scored")
    gate_margin: float = Field(0.02, ge=0, description="allowed regression of pass@1 / company score "
                               "(absolute; relative on held-out perplexity per character)")
    gate_floor: float = Field(0.2, ge=0, le=1, description="company score below which (on both sides) the gate "
                              "decides on held-out bits per character instead: generation of a tiny model is noise")
    gate_confidence: float = Field(0.95, gt=0.5, lt=1, description="two-sided confidence of the paired bootstrap "
                                   "interval; the gate passes only if its worse end is within the margin")
    gate_bootstrap_samples: int = Field(2000, ge=100, description="paired bootstrap resamples")
    gate_seed: int = Field(0, description="seed of the bootstrap (the verdict is reproducible)")
    gate_min_tasks: int = Field(30, ge=1, description="fewer paired tasks than this (pass@1, company score): "
                                "the comparison fails, not enough evidence")
    gate_min_files: int = Field(10, ge=1, description="fewer paired held-out files than this: the likelihood "
                                "comparison fails (a per-file bits-per-char difference is far less noisy "
                                "than a pass/fail)")
    company_tasks_file: str | None = Field(None, description="hand-written function tasks with tests (JSONL, seed "
                                           "format), relative to this settings file: the benchmark's execution "
                                           "part (sandboxed pass rate, reported); also fed to decontamination")
    company_per_stratum: int = Field(10, ge=1, description="FIM tasks drawn per (kind, cross-file / in-file) "
                                     "stratum from the held-out files, seeded by company_seed (5 kinds x 2 "
                                     "labels: up to 10x this many tasks)")
    company_seed: int = Field(0, description="seeds the draw of the FIM tasks (part of the benchmark's identity)")
    company_max_tasks: int = Field(100, ge=0, description="FIM tasks at most after the per-stratum draw, taken "
                                   "in turn from each stratum (0: no cap); >= gate_min_tasks for a decisive gate")
    company_max_new_tokens: int = Field(256, ge=1, description="caps the per-kind generation limits of the FIM "
                                        "tasks (single line 48 ... function body 256 tokens)")
    company_prefix_chars: int = Field(3000, ge=0, description="characters of the file before the cursor in a "
                                      "FIM prompt (whole lines, nearest kept)")
    company_suffix_chars: int = Field(1000, ge=0, description="characters after the cursor in a FIM prompt")
    company_context_chars: int = Field(2000, ge=0, description="budget of the retrieved repository context the "
                                       "'with context' score puts before the prefix")
    isolation: Literal["full", "reduced", "any"] = Field(
        "full", description="sandbox for generated code: full (namespaces; refuse to score without them), "
        "reduced (no namespaces, on purpose), any (the strongest the machine gives)")

