"""Loads every definition and snapshots the asset graph (the shape a user sees in the UI).

Update the snapshot deliberately with CODELLM_UPDATE_SNAPSHOTS=1 when the graph is meant to change.
"""

import json
import os
from pathlib import Path

import dagster as dg

from codellm_assets.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def graph_snapshot() -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitioned": node.partitions_def is not None,
            "materializable": node.is_materializable,
            "automation": node.automation_condition is not None,
            "checks": sorted(c.name for c in node.check_keys),
        }
    return {
        "assets": assets,
        "blocking_checks": sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys
                                  if graph.get(k).blocking),
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")),
        "sensors": sorted(s.name for s in defs.sensors),
    }


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_asset_graph_snapshot():
    snap = graph_snapshot()
    if os.environ.get("CODELLM_UPDATE_SNAPSHOTS") or not SNAPSHOT.exists():
        SNAPSHOT.write_text(json.dumps(snap, indent=2, sort_keys=True) + "\n")
    assert snap == json.loads(SNAPSHOT.read_text())


def test_graph_has_every_stage_in_order():
    graph = defs.resolve_asset_graph()
    order = [k.to_user_string() for k in graph.toposorted_asset_keys]
    chain = ["repo_snapshots", "clean_files", "scrubbed_corpus", "deduped_corpus", "training_dataset",
             "lora_adapter", "eval_scores", "registered_model", "deployed_endpoint"]
    assert [order.index(n) for n in chain] == sorted(order.index(n) for n in chain)
    groups = {graph.get(dg.AssetKey(n)).group_name for n in order}
    assert {"data", "training", "evaluation", "deployment", "monitoring"} <= groups


def test_sensors_and_automation_are_on_by_default():
    statuses = {s.name: s.default_status for s in defs.sensors}
    assert all(st == dg.DefaultSensorStatus.RUNNING for st in statuses.values()), statuses
    assert "codellm_automation" in statuses
