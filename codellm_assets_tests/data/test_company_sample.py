"""The generated company repo: deterministic history, and the benchmark's whole core path on it (time split,
cross-file tasks whose defining files were trained on, retrieval of the defining chunk)."""

from __future__ import annotations

from collections import Counter

from codellm_assets.core.data.code_index import CodeIndex
from codellm_assets.core.data.company_sample import ensure_company_repo
from codellm_assets.core.data.git_scan import resolve_head, scan_branch
from codellm_assets.core.data.holdout import dates_for, split_holdout
from codellm_assets.core.evaluation.repo_bench import mine_repo_tasks, sample_tasks


def test_company_repo_is_deterministic(tmp_path):
    a, b = ensure_company_repo(tmp_path / "a", services=8), ensure_company_repo(tmp_path / "b", services=8)
    assert resolve_head(a, repo_name="a") == resolve_head(b, repo_name="b")
    assert ensure_company_repo(a) == a                     # idempotent


def test_benchmark_core_on_the_company_repo(tmp_path):
    repo = ensure_company_repo(tmp_path / "acme", services=16)
    scan = scan_branch(repo, "HEAD", repo_name="acme")
    train, held = split_holdout(scan.records, fraction=0.2, dates=dates_for([("acme", repo, scan.commit)]))
    assert len(held) == 4 and all(r["path"].startswith("src/services/") for r in held)   # the newest batch
    assert all(r["path"].startswith("src/quillon/") for r in train[:4])
    tasks = mine_repo_tasks(scan.records, held)
    cross = [t for t in tasks if t.cross_file]
    trained = {r["path"] for r in train}
    assert len(cross) > 20 and all(set(t.defining_paths) & trained for t in cross)
    assert Counter(t.kind for t in cross).keys() >= {"single_line", "multi_line", "function_body", "call_args"}
    picked = sample_tasks(tasks, per_stratum=5, seed=0)
    index = CodeIndex.build(train, repo="acme", commit=scan.commit)   # the trained corpus, never the holdout
    assert {t.kind for t in picked} == {t.kind for t in tasks} and len(picked) <= 5 * 10
    line = next(t for t in cross if t.kind == "single_line" and "stamp_quorble" in t.reference)
    ctx = index.context(line.prefix, line.suffix, path=line.path, language="python", budget=1500)
    assert "src/quillon/ledger_vault.py" in ctx and "def stamp_quorble" in ctx
