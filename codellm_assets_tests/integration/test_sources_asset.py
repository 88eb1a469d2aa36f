"""source_documents -> source_corpus -> deduped_corpus through dg.materialize, against loopback replay servers:
a refused token fails only its partition (naming the source, the partition and the variable), the other source
materializes, its secrets are scrubbed, a re-run fetches only what changed, and dedup takes the documents."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from codellm_assets.defs import checks, corpus, ingest
from codellm_assets.defs import sources as source_defs
from codellm_assets.testing.replay_servers import ReplayServer
from codellm_assets_tests.integration.conftest import resources_for, write_config

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures" / "sources"
PER_SOURCE = [source_defs.source_documents, source_defs.source_corpus, checks.source_no_leftover_secrets]


@pytest.fixture
def servers():
    with ReplayServer.from_fixture(FIXTURES / "jira.json", auth=("Authorization", "Bearer jira-ok")) as jira, \
            ReplayServer.from_fixture(FIXTURES / "github.json", auth=("Authorization", "Bearer gh-ok")) as github:
        yield jira, github


@pytest.fixture
def config(tmp_path, servers, monkeypatch, instance):
    jira, github = servers
    monkeypatch.setenv("TICKETS_TOKEN", "jira-ok")
    monkeypatch.setenv("REVIEWS_TOKEN", "revoked-last-week")     # refused by the server: a 401
    instance.add_dynamic_partitions("sources", ["tickets", "reviews"])
    return write_config(tmp_path, [], sources={"connectors": [
        {"name": "tickets", "kind": "jira", "base_url": jira.url, "projects": ["ABC"], "token_env": "TICKETS_TOKEN",
         "page_size": 1},
        {"name": "reviews", "kind": "github_reviews", "base_url": github.url, "repo": "acme/app",
         "token_env": "REVIEWS_TOKEN", "page_size": 1}]})


def _dedup(config, instance):
    return dg.materialize([ingest.repo_snapshots, corpus.clean_files, corpus.scrubbed_corpus, corpus.deduped_corpus],
                          selection=["deduped_corpus"], resources=resources_for(config), instance=instance)


def _run(config, instance, partition, assets=PER_SOURCE):
    return dg.materialize(assets, resources=resources_for(config), instance=instance, partition_key=partition,
                          raise_on_error=False)


def _meta(result, key):
    return {k: v.value for k, v in result.asset_materializations_for_node(key)[-1].metadata.items()}


def _failure(result) -> str:
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    return failure.event_specific_data.error.message


def test_bad_token_fails_only_its_partition_and_the_other_source_flows_to_dedup(config, instance, servers):
    jira, _ = servers
    bad = _run(config, instance, "reviews")
    assert not bad.success
    msg = _failure(bad)
    assert "source 'reviews'" in msg and "partition 'reviews'" in msg and "REVIEWS_TOKEN" in msg and "401" in msg
    assert not bad.asset_materializations_for_node("source_documents")

    good = _run(config, instance, "tickets")
    assert good.success
    docs = _meta(good, "source_documents")
    assert docs["documents"] == 3 and docs["changed_items"] == 3 and docs["cursor"] == "2026-03-03T10:00:00Z"
    assert _meta(good, "source_corpus")["redactions_by_type"]["aws_access_key"] == 1
    (check,) = good.get_asset_check_evaluations()
    assert check.passed and check.metadata["leftovers"].value == 0
    stored = pl.read_parquet(Path(config).parent / "home" / "data" / "source_corpus" / "tickets.parquet")
    assert len(stored) == 3 and not stored["content"].str.contains("AKIAQ3EGRQ7XJH2L5M4N").any()
    assert set(stored["path"]) == {f"source://tickets/issue/ABC-{n}" for n in (1, 2, 3)}

    # a re-run asks from the stored cursor and re-fetches only the changed issue; the edit replaces, not adds
    jira.load(FIXTURES / "jira_update.json")
    jira.log.clear()
    again = _run(config, instance, "tickets")
    assert again.success
    meta = _meta(again, "source_documents")
    assert (meta["changed_items"], meta["unchanged_items"], meta["documents"]) == (1, 1, 3)
    assert meta["previous_cursor"] == "2026-03-03T10:00:00Z" and meta["cursor"] == "2026-03-04T10:00:00Z"
    assert 'updated >= "2026/03/03 10:00"' in jira.log[0].query["jql"]

    dedup = _dedup(config, instance)
    assert dedup.success
    meta = _meta(dedup, "deduped_corpus")
    assert meta["sources"] == ["tickets"] and meta["blocked_sources"] == {} and meta["files_kept"] == 3
    out = pl.read_parquet(Path(config).parent / "home" / "data" / "deduped_corpus.parquet")
    assert set(out["repo"]) == {"tickets"} and out["content"].str.contains("40 ms").any()


def test_a_source_whose_leftover_check_did_not_pass_is_left_out_of_dedup(config, instance):
    assert _run(config, instance, "tickets", assets=PER_SOURCE[:2]).success   # materialized, never checked
    meta = _meta(_dedup(config, instance), "deduped_corpus")
    assert meta["sources"] == [] and "tickets" in meta["blocked_sources"] and meta["files_kept"] == 0


def test_codellm_run_runs_each_source_and_one_refused_token_stops_nothing_else(config, tmp_path, monkeypatch):
    from codellm_assets.runner import run_graph
    from codellm_assets.settings import load_settings

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "run-home"))
    results = run_graph(load_settings(config), config_path=str(config),
                        selection="key:source_documents or key:source_corpus")
    by_partition = {r.partition: r for r in results}
    assert set(by_partition) == {"tickets", "reviews"}
    assert by_partition["tickets"].success and by_partition["tickets"].name == "source_documents+source_corpus"
    assert not by_partition["reviews"].success
    assert "REVIEWS_TOKEN" in by_partition["reviews"].error and "partition 'reviews'" in by_partition["reviews"].error


def test_sources_sensor_adds_partitions_and_polls_each_source_once_per_interval(config, instance):
    from codellm_assets.resources import SettingsResource

    instance.delete_dynamic_partition("sources", "reviews")
    resources = {"settings": SettingsResource(config_path=str(config))}
    first = source_defs.sources_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert [r.partition_key for r in first.run_requests] == ["tickets", "reviews"]
    assert first.dynamic_partitions_requests[0].partition_keys == ["reviews"]
    instance.add_dynamic_partitions("sources", ["reviews"])      # what the daemon does with the request
    again = source_defs.sources_sensor(dg.build_sensor_context(instance=instance, resources=resources,
                                                               cursor=first.cursor))
    assert again.run_requests == [] and again.dynamic_partitions_requests == []


def test_a_malformed_page_fails_the_partition_and_leaves_the_stored_documents_and_cursor(config, instance,
                                                                                         servers, tmp_path):
    from codellm_assets.testing.replay_servers import Reply, Route

    jira, _ = servers
    assert _run(config, instance, "tickets").success
    stored = Path(config).parent / "home" / "data" / "source_documents" / "tickets.parquet"
    before = stored.read_bytes()
    jira.load(FIXTURES / "jira_update.json")
    jira.add([Route("GET", "/rest/api/2/search", [Reply(200, body="<html>gateway timeout</html>")],
                    query={"startAt": "1"})])
    broken = _run(config, instance, "tickets")
    assert not broken.success
    msg = _failure(broken)
    assert "source 'tickets'" in msg and "not JSON" in msg and f"{jira.url}/rest/api/2/search?" in msg
    assert stored.read_bytes() == before
    assert source_defs.stored_cursor(instance, "tickets") == "2026-03-03T10:00:00Z"
