"""A model trained suffix-prefix-middle (the tiny preset) is served SPM by every client path: the layout is
read from the model's directory (core/data/fim.py LAYOUT_FILE), the gateway renders it, and a PSM template
the client rendered itself (Continue) is laid out again, so the model always sees what it was trained on."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from codellm_assets.core.data.fim import read_layout, write_layout
from codellm_assets.core.serving.app import create_app
from codellm_assets.core.serving.backends.base import FimTokens, detect_fim
from codellm_assets.core.serving.backends.transformers_backend import TransformersBackend
from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import Store
from codellm_assets_tests.serving.conftest import TinyModel, make_gateway, serve_app, wait_ready
from codellm_assets_tests.serving.test_ide_protocols import Gw

PREFIX, SUFFIX = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"
# the prompt is healed (serving.token_healing): cut back to the last visible character before the cursor
SPM_PROMPT = f"<fim_prefix><fim_suffix>{SUFFIX}<fim_middle>{PREFIX.rstrip(' ')}"


class _Vocab:
    def get_vocab(self) -> dict[str, int]:
        return {"<fim_prefix>": 0, "<fim_suffix>": 1, "<fim_middle>": 2}


@pytest.mark.parametrize(("layout", "context", "expected"), [
    (None, "", "<fim_prefix>P<fim_suffix>S<fim_middle>"),
    ("psm", "C", "<fim_prefix>CP<fim_suffix>S<fim_middle>"),       # context right before the code
    ("spm", "", "<fim_prefix><fim_suffix>S<fim_middle>P"),
    ("spm", "C", "<fim_prefix><fim_suffix>S<fim_middle>CP"),       # ... which in SPM comes last
])
def test_layout_recorded_in_the_model_dir_decides_the_template(tmp_path: Path, layout: str | None, context: str,
                                                                expected: str) -> None:
    if layout:
        write_layout(tmp_path, layout)
    fim = detect_fim(_Vocab(), tmp_path)
    assert fim is not None and fim.spm == (layout == "spm") and fim.psm == detect_fim(_Vocab())
    assert fim.build("P", "S", context) == expected


def test_an_unreadable_or_unknown_layout_is_psm(tmp_path: Path) -> None:
    (tmp_path / "fim_layout.json").write_text("{not json")
    assert read_layout(tmp_path) is None and not detect_fim(_Vocab(), tmp_path).spm
    (tmp_path / "fim_layout.json").write_text('{"layout": "msp"}')
    assert read_layout(tmp_path) is None
    with pytest.raises(ValueError, match="msp"):
        write_layout(tmp_path, "msp")


@pytest.fixture(scope="module")
def spm_gw(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    tmp = tmp_path_factory.mktemp("spm")
    base = tmp / "base"
    shutil.copytree(tiny_model.base, base)
    write_layout(base, "spm")
    store = Store(f"sqlite:///{tmp / 'store.db'}")
    key = store.create_api_key("bars")
    gateway = make_gateway(store, TransformersBackend(micro_batch_ms=0),
                           [Route("production", "base", str(base), None, 100)])
    with serve_app(create_app(gateway)) as url:
        wait_ready(url)
        yield Gw(url, store, gateway, key)
    store.close()


def test_every_client_shape_reaches_an_spm_model_as_spm(spm_gw: Gw) -> None:
    gw = spm_gw
    assert gw.gw.backend.fim("base") == FimTokens("<fim_prefix>", "<fim_suffix>", "<fim_middle>", spm=True)
    openai = gw.post("/v1/completions", {"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 8, "temperature": 0})
    tabby = gw.post("/v1/completions", {"language": "python", "segments": {"prefix": PREFIX, "suffix": SUFFIX},
                                        "temperature": 0})
    infill = gw.post("/infill", {"input_prefix": PREFIX, "input_suffix": SUFFIX, "prompt": "", "n_predict": 8,
                                 "temperature": 0})
    # Continue renders its (PSM) template itself and sends it as the prompt: laid out again as SPM.
    continue_ = gw.post("/v1/completions", {"model": "codellm-starcoder", "max_tokens": 8, "temperature": 0,
                                            "prompt": f"<fim_prefix>{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>"})
    texts = []
    for r in (openai, tabby, infill, continue_):
        assert r.status_code == 200, r.text
        row = gw.row(r.json()["id"])
        assert row["prompt"] == SPM_PROMPT and row["status"] == "ok"
        texts.append(row["completion"])
    assert texts[0] == texts[3] and texts[0].startswith(texts[2][:4])     # the same prompt, the same answer
    assert gw.row(continue_.json()["id"])["raw_prefix"] == PREFIX           # the IDE's own text is kept
    ids = [m["id"] for m in gw.get("/v1/models").json()["data"]]
    assert "codellm-starcoder" in ids                                       # Continue still finds its template
