"""Evaluation through an OpenAI-compatible endpoint: a real stand-in server (vLLM's API shape) on loopback."""

import subprocess
import sys
import time

import httpx
import pytest

from codellm_assets.core.evaluation.company_bench import load_handwritten_tasks
from codellm_assets.core.evaluation.evaluate import evaluate_model
from codellm_assets.core.evaluation.remote_generate import OpenAICompletions, RemoteGenerationError
from codellm_assets.settings import PROJECT_ROOT, EvalSettings


@pytest.fixture
def standin(free_port):
    proc = subprocess.Popen([sys.executable, "-m", "codellm_assets.testing.standin", "--port", str(free_port),
                             "--base-model", "base", "--lora", "codellm/2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{free_port}"
    for _ in range(100):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_generates_n_samples_per_prompt_and_applies_every_stop(standin):
    gen = OpenAICompletions(standin, "codellm/2")
    assert "codellm/2" in gen.served_models()
    out = gen.generate(["def f():\n", "x = "], max_new_tokens=5, num_samples=2)
    assert len(out) == 2 and all(len(samples) == 2 for samples in out)
    assert all(isinstance(t, str) and t for samples in out for t in samples)
    text = out[0][0]
    cut = gen.generate(["def f():\n"], max_new_tokens=5, stop=[text.split()[2]])[0][0]
    assert cut == text[:text.find(text.split()[2])]
    with pytest.raises(RemoteGenerationError, match="no-such-model"):
        OpenAICompletions(standin, "no-such-model").generate(["x"], max_new_tokens=1)


def test_evaluate_model_through_the_endpoint(standin):
    tasks = load_handwritten_tasks(PROJECT_ROOT / "benchmarks" / "company_tasks.jsonl")[:2]
    gen = OpenAICompletions(standin, "codellm/2")
    scores = evaluate_model(None, None, label="champion", settings=EvalSettings(humaneval_subset=2, max_new_tokens=4),
                            company_tasks=tasks, holdout_texts=["def a():\n    return 1\n"], generate=gen.generate)
    assert scores.metrics["pass@1"] == 0.0 and scores.metrics["humaneval_tasks"] == 2
    assert scores.metrics["holdout_perplexity"] is None          # no weights behind an API
    assert len(scores.company_results) == 2 and scores.metrics["company_exec_tasks"] == 2
    assert scores.metrics["company_exec_edit_similarity"] is not None
    assert scores.metrics["company_score"] is None     # no FIM tasks given: nothing for the gate to pass on


def test_fim_tasks_through_the_endpoint(standin, make_git_repo):
    from codellm_assets.core.data.git_scan import scan_branch
    from codellm_assets.core.evaluation.company_fim import FimBench, build_tasks
    from codellm_assets_tests.evaluation.test_repo_bench import SOURCES

    lib_path, lib, use_path, use = SOURCES["go"]
    records = scan_branch(make_git_repo("acme", {lib_path: lib, use_path: use}), "HEAD", repo_name="acme").records
    tasks, _ = build_tasks(records, [r for r in records if r["path"] == use_path], [], per_stratum=1, seed=0,
                           max_tasks=0)
    gen = OpenAICompletions(standin, "codellm/2")
    bench = FimBench(tasks, fim={"prefix": "<fim_prefix>", "suffix": "<fim_suffix>", "middle": "<fim_middle>"},
                     max_new_tokens=4)
    scores = evaluate_model(None, None, label="champion", settings=EvalSettings(humaneval_subset=1, max_new_tokens=4),
                            company_tasks=[], holdout_texts=[], generate=gen.generate, fim_bench=bench)
    assert [r["task_id"] for r in scores.fim_results] == [t.task_id for t in tasks]
    assert scores.metrics["company_score"] is not None and {r["language"] for r in scores.fim_results} == {"go"}
