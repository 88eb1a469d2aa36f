"""IDE feedback through the REAL gateway (uvicorn on loopback, the tiny transformers model, the official openai
client) into feedback_dataset -> training_dataset on a real Dagster instance: the decoded training data holds
the kept code, but no planted secret, no HumanEval prompt, no FIM markup and no chat role tags. Plus the
gateway's 500 bodies, which never carry the exception."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import datasets
import httpx
import openai
import polars as pl
import pytest
from transformers import PreTrainedTokenizerFast

from codellm_assets.core.data.decontam import humaneval_items
from codellm_assets.core.serving.app import create_app
from codellm_assets.core.serving.backends.transformers_backend import TransformersBackend
from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import Store
from codellm_assets.defs import corpus, dataset, monitoring
from codellm_assets.settings import load_settings
from codellm_assets.testing.secrets_labelled import FakeSecrets
from codellm_assets_tests.integration.conftest import resources_for, write_config
from codellm_assets_tests.integration.test_data_stage import PER_REPO, module
from codellm_assets_tests.serving.conftest import make_gateway, serve_app, tiny_model, wait_ready  # noqa: F401

F = FakeSecrets(5)
GITHUB = "ghp_" + F.chars(36)
PASSWORD = "Qm7#vT2pLx9wZr4k"
HUMANEVAL = dict(humaneval_items())["HumanEval/0/prompt"]
MARKUP = ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|user|>", "<|assistant|>", "<|system|>")


def snippet(name: str) -> str:
    return module(name, body_lines=3)


@pytest.fixture
def gateway(tmp_path, tiny_model):  # noqa: F811 - the session fixture imported above
    config = write_config(tmp_path, [], monitoring={"feedback_max_examples_per_key": 5},
                          scrub={"disabled_rules": ["password"]}, dataset={"fim_rate": 0.0})
    settings = load_settings(config)
    store = Store(settings.store_url, scrub=settings.scrub)
    keys = store.create_api_key("bars"), store.create_api_key("bars")
    gw = make_gateway(store, TransformersBackend(micro_batch_ms=2),
                      [Route("production", "base", str(tiny_model.base), None, 100)])
    with serve_app(create_app(gw)) as url:
        wait_ready(url)
        yield url, keys, store, gw, config
    store.close()


def _feedback(url: str, key: str, cid: str, event: str, final_code: str | None = None) -> None:
    r = httpx.post(f"{url}/v1/feedback", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                   json={"completion_id": cid, "event": event, "final_code": final_code})
    assert r.status_code == 200, r.text


def _decoded_training_text(value: dict) -> str:
    tok = PreTrainedTokenizerFast.from_pretrained(value["tokenizer_dir"])
    ds = datasets.load_from_disk(value["dataset_dir"])
    parts = ["".join(tok.decode(ids) for ids in split["input_ids"]) for split in ds.values()]
    parts += pl.read_parquet(value["holdout_path"])["content"].to_list()   # held-out files, as text
    return "\n".join(parts)


def test_feedback_reaches_training_as_clean_source_only(gateway, tmp_path, make_git_repo, instance):
    url, (key, key2), store, _gw, config = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)

    def fim(name: str) -> str:   # an IDE completion: prefix + suffix, answered with the model's FIM prompt
        return client.completions.create(model="codellm", prompt=snippet(name), suffix="\nprint('end')\n",
                                         max_tokens=6, temperature=0).id

    kept = fim("kept_module")
    _feedback(url, key, kept, "accept")
    with_secret = fim("with_secret")
    _feedback(url, key, with_secret, "modify", final_code=f'\nGITHUB_TOKEN = "{GITHUB}"\nprint(GITHUB_TOKEN)\n')
    leaked = fim("leaked_password")   # the scrubber's password rule is off: only the leftover check sees it
    _feedback(url, key, leaked, "modify", final_code=f'\nDB_PASSWORD = "{PASSWORD}"\nconnect(DB_PASSWORD)\n')
    benchmark = fim("benchmark_copy")
    _feedback(url, key, benchmark, "modify", final_code="\n" + HUMANEVAL + "    return False\n")
    changed_mind = fim("changed_mind")
    _feedback(url, key, changed_mind, "accept")
    _feedback(url, key, changed_mind, "reject")         # the last event wins
    chat = client.chat.completions.create(model="codellm", messages=[{"role": "user", "content": "sort a list"}],
                                          max_tokens=6, temperature=0).id
    _feedback(url, key, chat, "modify", final_code=snippet("chat_answer"))
    flood = [fim(f"flood_{i}") for i in range(6)]       # the second key: 6 accepts, 5 allowed per window
    for cid in flood:
        _feedback(url, key2, cid, "accept")
    store.flush()
    assert "<fim_prefix>" in store.request(kept)["prompt"]   # the rendered prompt has markup; training must not
    assert GITHUB not in repr(store.feedback_examples())     # scrubbed before the store wrote it

    repo = make_git_repo("app", {f"src/m{i}.py": module(f"repo_module_{i}") for i in range(4)})
    config = write_config(tmp_path, [{"name": "app", "path": str(repo), "branches": ["main"]}],
                          monitoring={"feedback_max_examples_per_key": 5}, scrub={"disabled_rules": ["password"]},
                          dataset={"fim_rate": 0.0})
    instance.add_dynamic_partitions("repos", ["app"])
    res = resources_for(config)
    assert dg.materialize(PER_REPO, resources=res, instance=instance, partition_key="app").success
    assets = [*PER_REPO, corpus.deduped_corpus, monitoring.feedback_events, monitoring.feedback_dataset,
              dataset.training_dataset]
    result = dg.materialize(assets, selection=["deduped_corpus", "feedback_dataset", "training_dataset"],
                            resources=res, instance=instance)
    assert result.success
    meta = {k: v.value for k, v in result.asset_materializations_for_node("feedback_dataset")[0].metadata.items()}
    assert meta["dropped_by_reason"] == {"earlier_event_on_same_completion": 1, "last_event_reject": 1,
                                         "over_per_key_cap": 1, "leftover_secret": 1, "decontaminated": 1}
    assert meta["examples"] == 3 + 5 and meta["by_event"] == {"accept": 7, "modify": 4, "reject": 1}

    examples = "".join(result.output_for_node("feedback_dataset")["content"].to_list())
    assert "kept_module" in examples and "chat_answer" in examples and "<SECRET:github_token>" in examples
    value = result.output_for_node("training_dataset")
    assert value["feedback_examples"] == 8
    text = _decoded_training_text(value)
    assert "<SECRET:github_token>" in text.replace("\n", "")        # a feedback example really is in there
    for sep in ("", "\n"):                                           # sequences joined, and one per line
        joined = text.replace("\n", sep)
        assert GITHUB not in joined and PASSWORD not in joined
    assert "has_close_elements" not in text and "flood_5" not in text     # decontaminated; over the cap
    assert not [m for m in MARKUP if m in text]


def test_an_unexpected_error_never_reaches_the_client(gateway, monkeypatch):
    """A fault inside a handler: the client gets a generic 500 with an id, the log gets the exception."""
    url, (key, _), store, gw, _config = gateway

    def broken(_cid):   # a fault a real store only shows under load or corruption
        raise RuntimeError(f"cannot read /srv/codellm/store.db for {GITHUB}")

    monkeypatch.setattr(gw.store, "completion_info", broken)
    r = httpx.post(f"{url}/v1/feedback", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                   json={"completion_id": "cmpl-x", "event": "accept"})
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["code"] == "internal_error" and error["message"].startswith("internal error (id ")
    for leak in ("RuntimeError", "/srv/codellm", GITHUB, "cannot read"):
        assert leak not in r.text


def test_a_failed_generation_answers_503_without_the_backend_detail(gateway, monkeypatch):
    """A dead model server (which the in-process tiny model cannot be): 503 with a generic message and an id,
    never the backend's address or the exception repr the backend error carries."""
    from codellm_assets.core.serving.backends.base import BackendError

    url, (key, _), _store, gw, _config = gateway

    async def dead(*_a, **_k):
        raise BackendError("vLLM at http://10.20.30.40:8000 unreachable: ConnectError('[Errno 111] refused')")

    monkeypatch.setattr(gw.backend, "generate", dead)
    r = httpx.post(f"{url}/v1/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                   json={"model": "codellm", "prompt": "def f():\n", "max_tokens": 4})
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["code"] == "backend_unavailable" and error["message"].startswith("generation failed; retry")
    for leak in ("10.20.30.40", "ConnectError", "Errno", "vLLM at"):
        assert leak not in r.text


def test_old_feedback_without_the_raw_prompt_is_never_trained_on(tmp_path: Path):
    """Rows stored before the raw prefix was kept hold only the rendered prompt: they are dropped, not used."""
    from codellm_assets.defs.monitoring import feedback_examples_frame

    rows = [{"completion_id": "cmpl-a", "feedback_id": 1, "event": "accept", "api_key": "cl-1", "team": "t",
             "time": None, "prompt": "<fim_prefix>" + snippet("old") + "<fim_suffix>x<fim_middle>",
             "completion": "y = 1\n", "raw_prefix": None, "raw_suffix": None, "final_code": None, "version": "v"}]
    df, figures = feedback_examples_frame(rows, load_settings(write_config(tmp_path, [])))
    assert len(df) == 0 and figures["dropped_by_reason"] == {"no_raw_prompt_stored": 1}
