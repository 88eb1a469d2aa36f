"""The generated company repo: deterministic history, and the benchmark's whole core path on it (time split,
cross-file tasks whose defining files were trained on, retrieval of the defining chunk)."""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest

from codellm_assets.core.data.code_index import CodeIndex
from codellm_assets.core.data.company_sample import (
    NAME_POOLS,
    company_files,
    company_names,
    ensure_company_repo,
    rename,
)
from codellm_assets.core.data.git_scan import resolve_head, scan_branch
from codellm_assets.core.data.holdout import dates_for, split_holdout
from codellm_assets.core.evaluation.repo_bench import mine_repo_tasks, sample_tasks
from codellm_assets.defs.ingest import local_repo_path
from codellm_assets.settings import CompanyDemoSettings, RepoSettings, Settings


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


# ---- seeds: another seed is another company -----------------------------------------------------------------

SEED0_NAMES = ("quillon", "LedgerVault", "stamp_quorble", "settle_zephyr", "TariffGrid", "load_tariff_grid",
               "courier_mesh", "dispatch_parcel", "NORTH_REGION", "billing")


def _text(batches) -> str:
    return "\n".join(f"{p}\n{c}" for b in batches for p, c in b.items())


def test_seed_zero_is_quillon_and_another_seed_renames_every_distinctive_name():
    zero, other = _text(company_files(services=12, seed=0)), _text(company_files(services=12, seed=3))
    assert all(name in zero for name in SEED0_NAMES)
    assert not [name for name in SEED0_NAMES if name in other]
    assert _text(company_files(services=12, seed=3)) == other                   # deterministic per seed
    names, domains = company_names(3)
    assert f"{names['stamp']}_{names['quorble']}" in other and domains[0] in other


@pytest.mark.parametrize("text,expected", [
    ("vault.stamp_quorble(entry)", "vault.etch_traxel(entry)"),
    ("from quillon.tariff_grid import load_tariff_grid", "from brantic.fee_matrix import load_fee_matrix"),
    ("NORTH_REGION = 'north'", "EAST_REGION = 'east'"),
    ("unrelated = 1", "unrelated = 1"),
])
def test_rename_replaces_whole_names_longest_first(text, expected):
    names = {k: k for k in NAME_POOLS} | {"stamp": "etch", "quorble": "traxel", "quillon": "brantic",
                                          "tariff_grid": "fee_matrix", "NORTH": "EAST", "north": "east"}
    assert rename(text, names) == expected


def _settings(tmp_path, **seed) -> Settings:
    return Settings(base_dir=str(tmp_path), home=str(tmp_path / "var"), repos=[RepoSettings(
        name="acme", path="samples/acme", seed_company_demo=CompanyDemoSettings(**seed), branches=["main"])])


def test_the_company_repo_is_seeded_from_settings_on_first_use(tmp_path):
    s = _settings(tmp_path, seed=5, services=12)
    path = local_repo_path(s, s.repos[0])
    assert path == tmp_path / "samples" / "acme" and (path / ".git").is_dir()
    log = subprocess.run(["git", "-C", str(path), "log", "--format=%ct %s", "main"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert len(log) == 4 and len({line.split()[0] for line in log}) == 4       # library + 3 daily batches
    again = _settings(tmp_path / "other", seed=5, services=12)
    assert resolve_head(local_repo_path(again, again.repos[0]), "main") == resolve_head(path, "main")
    scan = scan_branch(path, "main", repo_name="acme")
    train, held = split_holdout(scan.records, fraction=0.1, dates=dates_for([("acme", path, scan.commit)]))
    cross = [t for t in mine_repo_tasks(scan.records, held) if t.cross_file]
    library = {r["path"] for r in scan.records if not r["path"].startswith("src/services/")}
    assert cross and all(set(t.defining_paths) & library for t in cross)       # uses of the library, another file
    assert "quillon" not in (path / "src" / "services" / sorted(p.name for p in
                                                                (path / "src" / "services").iterdir())[0]).read_text()
    third = _settings(tmp_path / "third", seed=6, services=12)
    assert resolve_head(local_repo_path(third, third.repos[0]), "main") != resolve_head(path, "main")


@pytest.mark.parametrize("seed", [0, 7])
def test_the_services_survive_the_default_dedup(seed):
    # One template for every service kept 15 of 99 files after dedup: the fine-tune had next to nothing
    # of the company to learn from. The services share the library's idioms, not their whole text.
    from codellm_assets.core.data.dedup import Doc, dedup_documents
    from codellm_assets.settings import PROJECT_ROOT, load_settings

    files = [(p, t) for batch in company_files(services=96, seed=seed) for p, t in batch.items()]
    result = dedup_documents([Doc(id=p, text=t, repo="acme", path=p) for p, t in files],
                             load_settings(PROJECT_ROOT / "codellm.yaml", environ={}).dedup)
    assert len(result.kept_ids) >= 0.95 * len(files)
    names, _ = company_names(seed)
    stamp = f".{names['stamp']}_{names['quorble']}("
    assert sum(t.count(stamp) for p, t in files if "/services/" in p) > 96     # the idiom recurs across files
