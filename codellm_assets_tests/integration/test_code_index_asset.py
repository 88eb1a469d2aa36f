"""The code_index asset through dg.materialize on real temp git repos: snapshots -> clean -> scrubbed ->
deduped -> code_index. It indexes the scrubbed corpus (a secret in a repo is a placeholder in the index),
reuses an unchanged repo's index and rebuilds a changed one, and is a leaf: nothing trains on it."""

from __future__ import annotations

import dagster as dg

from codellm_assets.core.data.code_index_store import load_current, read_pointer
from codellm_assets.core.serving.repo_context import RepoContext
from codellm_assets.definitions import defs
from codellm_assets.defs import code_index as code_index_defs
from codellm_assets.defs import corpus
from codellm_assets.settings import load_settings
from codellm_assets_tests.conftest import commit_files
from codellm_assets_tests.integration import test_data_stage
from codellm_assets_tests.integration.conftest import resources_for, write_config
from codellm_assets_tests.integration.test_data_stage import AWS_ID, DATA, PER_REPO, module

two_repos = test_data_stage.two_repos      # the same two repos as the data-stage tests (a fixture)


def _run(selection, config, instance, partition=None):
    res = dg.materialize([*DATA, code_index_defs.code_index], selection=selection, resources=resources_for(config),
                         instance=instance, partition_key=partition, raise_on_error=False)
    assert res.success
    return res


def _meta(result):
    mats = result.asset_materializations_for_node("code_index")
    return {k: v.value for k, v in mats[-1].metadata.items()}


def test_code_index_asset_indexes_scrubbed_code_and_rebuilds_only_changed_repos(tmp_path, two_repos, instance):
    a, b = two_repos
    config = write_config(tmp_path, [{"name": "alpha", "path": str(a), "branches": ["main"]},
                                     {"name": "beta", "path": str(b), "branches": ["main"]}])
    instance.add_dynamic_partitions("repos", ["alpha", "beta"])
    for repo in ("alpha", "beta"):
        _run(PER_REPO[:3], config, instance, repo)
    downstream = [corpus.deduped_corpus, code_index_defs.code_index]
    first = _meta(_run(downstream, config, instance))
    assert (first["repos"], first["rebuilt"], first["reused"]) == (2, 2, 0) and first["chunks"] > 0
    assert first["chunks_by_repo"]["alpha"] > 0 and first["bytes"] > 0 and first["build_seconds"] >= 0

    settings = load_settings(str(config))
    root = settings.code_index_dir
    assert root == tmp_path / "home" / "data" / "code_index"
    alpha = load_current(root)["alpha"]
    text = "\n".join(c.text for c in alpha.chunks)
    assert AWS_ID not in text and "<SECRET:aws_access_key>" in text      # the scrubbed corpus, never raw
    assert RepoContext.from_settings(settings).index("alpha") is not None   # what `codellm serve` reads

    again = _meta(_run(downstream, config, instance))
    assert (again["rebuilt"], again["reused"]) == (0, 2)

    commit_files(a, {"src/four.py": module("four")}, "alpha grows")
    old_dir = read_pointer(root)["repos"]["alpha"]["dir"]
    _run(PER_REPO[:3], config, instance, "alpha")
    changed = _meta(_run(downstream, config, instance))
    assert (changed["rebuilt"], changed["reused"]) == (1, 1)
    assert read_pointer(root)["repos"]["alpha"]["dir"] != old_dir
    assert any(c.path == "src/four.py" for c in load_current(root, ["alpha"])["alpha"].chunks)


def test_code_index_is_a_leaf_of_the_graph():
    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey("code_index"))
    assert node.parent_keys == {dg.AssetKey("deduped_corpus")}
    assert node.child_keys == set()          # a new index never feeds (or re-runs) training
    assert node.automation_condition is not None


def test_codellm_serve_adds_the_repos_context(tmp_path, make_git_repo):
    """`codellm serve` as a user starts it reads the indexes the asset wrote (settings.code_index_dir) and
    matches Tabby's git_url against the git remote of the configured repo's path."""
    import httpx

    from codellm_assets.core.data.code_index_store import build_repo_indexes
    from codellm_assets.core.data.git_scan import scan_branch
    from codellm_assets.core.serving.routes import Route
    from codellm_assets.core.serving.store import Store
    from codellm_assets.testing.tiny_model import build_tiny_model
    from codellm_assets_tests.conftest import git
    from codellm_assets_tests.data.test_code_index import LEDGER, NOISE, USER
    from codellm_assets_tests.integration.conftest import start_gateway, stop_gateway
    from codellm_assets_tests.serving.conftest import pick_port

    repo = make_git_repo("acme", {"billing/ledger.py": LEDGER, "app/close.py": USER, **NOISE})
    git(repo, "remote", "add", "origin", "git@git.acme.io:fin/acme.git")
    port = pick_port()
    config = write_config(tmp_path, [{"name": "acme", "path": str(repo), "branches": ["main"]}],
                          serving={"port": port, "repo_context_tokens": 400})
    settings = load_settings(str(config))
    build_repo_indexes(scan_branch(repo, "HEAD", repo_name="acme").records, settings.code_index_dir)
    store = Store(settings.store_url)
    store.set_routes([Route("production", "base", str(build_tiny_model(tmp_path / "base")), None, 100)])
    key = store.create_api_key("fin")
    store.close()
    proc = start_gateway(config, port, tmp_path / "gateway.log")
    try:
        body = {"language": "python", "segments": {
            "prefix": "def close_quarter(client, entries):\n    totals = reconcile_ledger(",
            "suffix": ")\n", "filepath": "app/close.py", "git_url": "https://git.acme.io/fin/acme.git"}}
        r = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json=body, timeout=60,
                       headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
    finally:
        stop_gateway(proc)
    store = Store(settings.store_url)
    try:
        row = store.request(r.json()["id"])
    finally:
        store.close()
    assert row["repo"] == "acme" and row["context_chunks"] >= 1
    assert "# billing/ledger.py\n" in row["prompt"] and "# def reconcile_ledger(client, entries):" in row["prompt"]
