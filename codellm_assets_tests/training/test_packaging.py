"""Packaging on the tiny Llama kit: the merged model equals base + adapter token for token, the GGUF file reads
back with gguf's reader and computes what transformers computes, checksums refuse damaged artifacts, and every
artifact is recorded on a real (SQLite) MLflow model version, from the core and from `codellm package`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from codellm_assets.core.training import registry, registry_packages
from codellm_assets.core.training.packaging import (
    MANIFEST_NAME,
    ArtifactVerificationError,
    PackagingError,
    bnb4_available,
    compare_greedy,
    fetch_package,
    greedy_tokens,
    load_merged,
    merge_adapter,
    package_version,
    quantize_bnb4,
    verify_artifact,
)
from codellm_assets.core.training.packaging_gguf import convert_to_gguf, read_gguf
from codellm_assets.testing.gguf_reference import GGUFLlama
from codellm_assets.testing.registered_tiny import RegisteredTiny, register_tiny
from codellm_assets.testing.tiny_model import build_tiny_adapter, build_tiny_model

PROMPT = "def add(a, b):\n    return"
LAYER_TENSORS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                 "ffn_down")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pack-tiny")
    base = build_tiny_model(root / "base")
    return {"root": root, "base": base, "adapter": build_tiny_adapter(base, root / "adapter")}


@pytest.fixture(scope="module")
def merged(tiny):
    return merge_adapter(tiny["base"], tiny["adapter"], tiny["root"] / "merged", provenance={"version": "t"})


@pytest.fixture(scope="module")
def ggufs(tiny, merged) -> dict:
    return {t: convert_to_gguf(merged.path, tiny["root"] / f"tiny-{t}.gguf", outtype=t) for t in ("f32", "f16", "q8_0")}


def _damaged_copy(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copyfile(src, dst)
        shutil.copyfile(src.with_name(src.name + ".sha256"), dst.with_name(dst.name + ".sha256"))
    return dst


# ---- merged -------------------------------------------------------------------------------------------------

def test_merged_greedy_tokens_equal_base_plus_adapter(tiny, merged):
    result = compare_greedy(tiny["base"], tiny["adapter"], merged.path, merged_sha256=merged.sha256)
    assert result["equal"], result["differ"]
    assert result["prompts"] >= 4 and all(len(t) == 16 for t in result["merged_tokens"])
    # the adapter matters: the bare base continues differently, so equality above is not trivial
    from transformers import AutoModelForCausalLM

    merged_model, tok = load_merged(merged.path)
    bare = greedy_tokens(AutoModelForCausalLM.from_pretrained(tiny["base"]).eval(), tok, [PROMPT])
    assert bare != greedy_tokens(merged_model, tok, [PROMPT])


def test_merged_directory_is_a_plain_transformers_model(merged):
    names = {p.name for p in merged.path.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", MANIFEST_NAME} <= names
    assert not any(n.startswith("adapter_") for n in names)
    config = json.loads((merged.path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    from safetensors import safe_open
    with safe_open(str(merged.path / "model.safetensors"), framework="pt") as f:
        assert not [k for k in f.keys() if "lora" in k]
    manifest = json.loads((merged.path / MANIFEST_NAME).read_text())
    assert manifest["format"] == "merged" and manifest["version"] == "t"
    assert verify_artifact(merged.path, merged.sha256) == merged.sha256


# ---- gguf ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("outtype, weight_type", [("f32", "F32"), ("f16", "F16"), ("q8_0", "Q8_0")])
def test_gguf_reads_back_with_llama_names_shapes_and_metadata(tiny, merged, ggufs, outtype, weight_type):
    from transformers import AutoConfig, AutoTokenizer

    art = ggufs[outtype]
    info = read_gguf(art.path, art.sha256)
    config = AutoConfig.from_pretrained(merged.path)
    tok = AutoTokenizer.from_pretrained(merged.path)
    assert info["architecture"] == "llama"
    assert info["context_length"] == config.max_position_embeddings == 512
    assert (info["embedding_length"], info["block_count"], info["head_count"]) == (64, 2, 4)
    assert (info["tokenizer_model"], info["tokenizer_pre"]) == ("gpt2", "gpt-2")
    vocab = {i: t for t, i in tok.get_vocab().items()}
    assert info["tokens"] == [vocab[i] for i in range(config.vocab_size)]
    assert info["token_types"][tok.eos_token_id] == 3 and info["token_types"][300] == 1  # CONTROL, NORMAL
    merges = json.loads((merged.path / "tokenizer.json").read_text())["model"]["merges"]
    assert info["merges"] == len(merges) > 0
    assert info["eos_token_id"] == tok.eos_token_id and info["bos_token_id"] == tok.eos_token_id
    expected = {"token_embd.weight": [600, 64], "output_norm.weight": [64], "output.weight": [600, 64]}
    for b in range(2):
        for t in LAYER_TENSORS:
            shape = {"attn_norm": [64], "ffn_norm": [64], "ffn_gate": [128, 64], "ffn_up": [128, 64],
                     "ffn_down": [64, 128]}.get(t, [64, 64])
            expected[f"blk.{b}.{t}.weight"] = shape
    assert {n: t["shape"] for n, t in info["tensors"].items()} == expected
    assert {t["type"] for n, t in info["tensors"].items() if "norm" in n} == {"F32"}
    assert {t["type"] for n, t in info["tensors"].items() if "norm" not in n} == {weight_type}
    assert art.details["tensors"] == len(expected)


@pytest.mark.parametrize("outtype, atol", [("f32", 1e-5), ("f16", 5e-3), ("q8_0", 3e-2)])
def test_gguf_computes_what_transformers_computes(merged, ggufs, outtype, atol):
    """A numpy Llama with llama.cpp's conventions over the file's tensors (no llama-cpp-python wheel here)."""
    model, tok = load_merged(merged.path, merged.sha256)
    ids = tok(PROMPT).input_ids
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].double().numpy()
    ref = GGUFLlama(ggufs[outtype].path)
    got = ref.logits(ids)
    assert np.abs(got - want).max() < atol
    assert ref.greedy(ids, 8) == greedy_tokens(model, tok, [PROMPT], 8)[0]
    # q/k are stored permuted for llama.cpp's adjacent-pair RoPE: HF's rotate-half on them is visibly wrong
    assert np.abs(ref.logits(ids, pairs="halves") - want).max() > 0.2  # measured 0.40; Q8_0 error 0.013


def test_gguf_refuses_models_it_cannot_convert(tiny, merged):
    other = tiny["root"] / "not-llama"
    shutil.copytree(merged.path, other)
    config = json.loads((other / "config.json").read_text())
    config.update(model_type="gpt2", architectures=["GPT2LMHeadModel"])
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(PackagingError, match="LlamaForCausalLM only.*convert_hf_to_gguf"):
        convert_to_gguf(other, tiny["root"] / "x.gguf")
    shutil.copytree(merged.path, tiny["root"] / "metaspace")
    tok = json.loads((tiny["root"] / "metaspace" / "tokenizer.json").read_text())
    tok["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁"}
    (tiny["root"] / "metaspace" / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(PackagingError, match="GPT-2 pre-tokenization"):
        convert_to_gguf(tiny["root"] / "metaspace", tiny["root"] / "y.gguf")
    assert not (tiny["root"] / "x.gguf").exists() and not (tiny["root"] / "y.gguf").exists()


# ---- checksums ----------------------------------------------------------------------------------------------

def test_corrupt_merged_model_is_refused_naming_the_file(tiny, merged):
    bad = _damaged_copy(merged.path, tiny["root"] / "merged-corrupt")
    weights = bad / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactVerificationError, match=r"model\.safetensors: checksum mismatch: sha256 [0-9a-f]{64}, "
                                                        r"expected [0-9a-f]{64}"):
        load_merged(bad, merged.sha256)


def test_truncated_artifacts_are_refused(tiny, merged, ggufs):
    bad = _damaged_copy(merged.path, tiny["root"] / "merged-truncated")
    weights = bad / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])
    with pytest.raises(ArtifactVerificationError, match=f"model.safetensors: truncated: {size // 2} bytes, "
                                                        f"expected {size}"):
        load_merged(bad)
    gg = _damaged_copy(ggufs["q8_0"].path, tiny["root"] / "truncated.gguf")
    gg.write_bytes(gg.read_bytes()[:-100])
    with pytest.raises(ArtifactVerificationError, match=r"truncated\.gguf: checksum mismatch"):
        read_gguf(gg)


def test_checksum_must_match_the_recorded_one_and_exist(tiny, merged, ggufs):
    edited = _damaged_copy(merged.path, tiny["root"] / "merged-edited")
    manifest = json.loads((edited / MANIFEST_NAME).read_text())
    manifest["version"] = "someone else's"
    (edited / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactVerificationError,
                       match=f"{MANIFEST_NAME}: checksum mismatch.*expected {merged.sha256}"):
        verify_artifact(edited, merged.sha256)
    lone = tiny["root"] / "lone.gguf"
    shutil.copyfile(ggufs["f16"].path, lone)
    with pytest.raises(ArtifactVerificationError, match="no lone.gguf.sha256 beside it; refusing"):
        read_gguf(lone)
    assert read_gguf(lone, ggufs["f16"].sha256)["architecture"] == "llama"


# ---- 4-bit --------------------------------------------------------------------------------------------------

@pytest.mark.skipif(bnb4_available() is None, reason="a GPU with bitsandbytes is present: the gpu test runs instead")
def test_bnb4_without_gpu_is_a_clear_error(tiny, merged):
    with pytest.raises(PackagingError, match="4-bit packaging \\(bnb4\\) is unavailable: (no CUDA GPU|bitsandbytes)"):
        quantize_bnb4(merged.path, tiny["root"] / "bnb4")
    assert not (tiny["root"] / "bnb4").exists()


@pytest.mark.gpu
@pytest.mark.skipif(bnb4_available() is not None, reason=f"bnb4: {bnb4_available()}")
def test_bnb4_quantizes_and_reloads_4bit_on_gpu(tiny, merged):
    from transformers import AutoModelForCausalLM

    art = quantize_bnb4(merged.path, tiny["root"] / "bnb4", expected_sha256=merged.sha256)
    assert json.loads((art.path / "config.json").read_text())["quantization_config"]["bnb_4bit_quant_type"] == "nf4"
    verify_artifact(art.path, art.sha256)
    model = AutoModelForCausalLM.from_pretrained(art.path, device_map={"": 0})
    assert any("4bit" in type(m).__name__ for m in model.modules())
    ids = torch.tensor([[5, 6, 7]], device="cuda")
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape[1] == 7


# ---- registry + CLI -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> RegisteredTiny:
    return register_tiny(tmp_path_factory.mktemp("pack-reg"))


def test_package_version_records_artifacts_on_the_model_version(registered, tmp_path):
    out = tmp_path / "packaged"
    for fmt in ("merged", "gguf"):
        art, tags = package_version(tracking_uri=registered.tracking_uri, model_name="codellm",
                                    version=registered.version, fmt=fmt, out_root=out)
        info = registry.get_version(registered.tracking_uri, "codellm", registered.version)
        recorded = registry_packages.package_tags(info, fmt)
        assert recorded["sha256"] == art.sha256 == verify_artifact(art.path)
        assert recorded["local_path"] == str(art.path)
        assert recorded["artifact"].endswith(f"packages/{fmt}/{art.path.name}")
        run = registry._client(registered.tracking_uri).get_run(registered.run_id)
        assert run.data.tags[f"codellm.package.{fmt}.sha256"] == art.sha256
        path, digest = fetch_package(registered.tracking_uri, "codellm", "challenger", fmt, tmp_path / f"dl-{fmt}")
        assert digest == art.sha256 and path != art.path  # the uploaded copy, verified
    assert art.path.name == f"codellm-v{registered.version}-q8_0.gguf"
    assert read_gguf(path)["name"] == f"codellm-v{registered.version}"


def test_a_corrupted_upload_is_refused_at_fetch(registered, tmp_path):
    art, _ = package_version(tracking_uri=registered.tracking_uri, model_name="codellm", version=registered.version,
                             fmt="gguf", out_root=tmp_path / "p", gguf_type="f16")
    uploaded = next(registered.artifact_root.rglob(f"packages/gguf/{art.path.name}"))
    uploaded.write_bytes(uploaded.read_bytes()[:1000])
    with pytest.raises(ArtifactVerificationError, match=f"{art.path.name}: checksum mismatch.*expected {art.sha256}"):
        fetch_package(registered.tracking_uri, "codellm", registered.version, "gguf", tmp_path / "dl")


def test_package_unknown_version_is_a_clear_error(registered, tmp_path):
    with pytest.raises(registry.RegistryError, match="codellm has no version 99"):
        package_version(tracking_uri=registered.tracking_uri, model_name="codellm", version="99", fmt="merged",
                        out_root=tmp_path)


def test_cli_package_and_verify(registered, tmp_path):
    from codellm_assets.cli import app

    cfg = tmp_path / "codellm.yaml"
    cfg.write_text(yaml.safe_dump({"home": str(tmp_path / "home"),
                                   "registry": {"tracking_uri": registered.tracking_uri}}))
    runner = CliRunner()
    for fmt, name in (("merged", "merged"), ("gguf", f"codellm-v{registered.version}-q8_0.gguf")):
        res = runner.invoke(app, ["package", "--version", registered.version, "--format", fmt, "--config", str(cfg)])
        assert res.exit_code == 0, res.output
        path = Path(next(line for line in res.stdout.splitlines() if line.startswith("path: "))[6:])
        assert path == tmp_path / "home" / "models" / "packaged" / f"codellm-v{registered.version}" / name
        sha = next(line for line in res.stdout.splitlines() if line.startswith("sha256: "))[8:]
        assert sha == verify_artifact(path)
        assert f"codellm.package.{fmt}.artifact: " in res.stdout
        res = runner.invoke(app, ["package", "--version", registered.version, "--format", fmt, "--verify",
                                  "--config", str(cfg)])
        assert res.exit_code == 0 and f"sha256: {sha}" in res.stdout, res.output
    bad = runner.invoke(app, ["package", "--version", "1", "--format", "onnx", "--config", str(cfg)])
    assert bad.exit_code == 2 and "choose one of merged, gguf, bnb4" in bad.output
    missing = runner.invoke(app, ["package", "--version", "7", "--config", str(cfg)])
    assert missing.exit_code == 1 and "codellm has no version 7" in missing.output
