"""A merged Llama-architecture model as one GGUF file for llama.cpp / Ollama, written with the ``gguf`` package
(llama.cpp's own gguf-py): its tensor-name map, writer, Q8_0 quantizer and reader.

What this writes follows llama.cpp's ``convert_hf_to_gguf.py`` for ``LlamaForCausalLM`` with a GPT-2-style
byte-level BPE tokenizer: the hyper-parameters under ``llama.*``, tokenizer model ``gpt2`` with pre-tokenizer
``gpt-2``, the tokens, their types (special added tokens CONTROL, other added tokens USER_DEFINED), the merges
and the special ids; q/k projection rows permuted from HF's rotate-half RoPE layout to llama.cpp's interleaved
one; 1-D tensors (norms) kept F32. Other architectures or pre-tokenizers are refused with a pointer to
llama.cpp's converter, which knows them all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from codellm_assets.core.training.packaging import (
    PackagedArtifact,
    PackagingError,
    verify_artifact,
    write_sidecar,
)

GGUF_TYPES = ("f32", "f16", "q8_0")
CONVERTER_HINT = "convert it with llama.cpp's convert_hf_to_gguf.py (it knows every architecture and tokenizer)"


def _hparams(model_dir: Path) -> dict[str, Any]:
    config = json.loads((model_dir / "config.json").read_text())
    archs = config.get("architectures") or []
    if config.get("model_type") != "llama" or archs != ["LlamaForCausalLM"]:
        raise PackagingError(f"{model_dir}: GGUF export here supports LlamaForCausalLM only, this model is "
                             f"{archs or config.get('model_type')}; {CONVERTER_HINT}")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise PackagingError(f"{model_dir}: RoPE scaling {rope.get('rope_type')!r} is not exported here; "
                             f"{CONVERTER_HINT}")
    return {**config, "rope_theta": rope.get("rope_theta", config.get("rope_theta", 10000.0))}


def _check_tokenizer(tok_json: dict[str, Any], model_dir: Path) -> None:
    """Only GPT-2 pre-tokenization (byte-level with the GPT-2 regex) maps to llama.cpp's ``gpt-2``."""
    model = tok_json.get("model") or {}
    pre = tok_json.get("pre_tokenizer") or {}
    pres = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    if (model.get("type") != "BPE" or tok_json.get("normalizer") or len(pres) != 1
            or pres[0].get("type") != "ByteLevel" or not pres[0].get("use_regex", True)):
        raise PackagingError(f"{model_dir}/tokenizer.json: only a byte-level BPE with GPT-2 pre-tokenization is "
                             f"exported here (model {model.get('type')}, pre-tokenizer {pre.get('type')}); "
                             f"{CONVERTER_HINT}")


def _vocab(model_dir: Path, vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens and token types by id, as convert_hf_to_gguf's ``get_vocab_base`` makes them."""
    import gguf
    from tokenizers import Tokenizer

    tok_json = json.loads((model_dir / "tokenizer.json").read_text())
    _check_tokenizer(tok_json, model_dir)
    vocab = Tokenizer.from_file(str(model_dir / "tokenizer.json")).get_vocab(with_added_tokens=True)
    if max(vocab.values()) >= vocab_size:
        raise PackagingError(f"{model_dir}: the tokenizer has ids up to {max(vocab.values())} but the model's "
                             f"vocab_size is {vocab_size}")
    added = {t["content"]: bool(t.get("special")) for t in tok_json.get("added_tokens", [])}
    by_id = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(token)
        if token in added:
            types.append(gguf.TokenType.CONTROL if added[token] else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _add_tokenizer(writer: Any, model_dir: Path, vocab_size: int, config: dict[str, Any]) -> None:
    import gguf

    tokens, types = _vocab(model_dir, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=vocab_size)
    if not special.merges:
        raise PackagingError(f"{model_dir}/tokenizer.json: no BPE merges; a gpt2 tokenizer cannot work without them")
    eos = special.special_token_ids.get("eos", config.get("eos_token_id"))
    if eos is None:
        raise PackagingError(f"{model_dir}: no eos token (tokenizer_config.json or config.json)")
    special.special_token_ids["eos"] = int(eos)
    # No BOS (GPT-2 style): llama.cpp's gpt2 default would be id 11; name <|endoftext|> as GPT-2 does, never add it
    special.special_token_ids.setdefault("bos", int(eos))
    special.add_special_token.setdefault("bos", False)
    special.add_to_gguf(writer, quiet=True)


def _permute(w: Any, n_head: int, n_head_kv: int) -> Any:
    """HF stores q/k rows for rotate-half RoPE; llama.cpp's LLAMA graph rotates interleaved pairs."""
    heads = n_head_kv if n_head != n_head_kv else n_head
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensors(model_dir: Path, config: dict[str, Any], outtype: str):
    """(gguf name, data, raw ggml type or None) per tensor, in the file's order."""
    import gguf
    from gguf import quants
    from safetensors import safe_open

    n_layers, n_head = config["num_hidden_layers"], config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    parts = sorted(model_dir.glob("*.safetensors"))
    if not parts:
        raise PackagingError(f"{model_dir}: no *.safetensors weights (package the merged model first)")
    for part in parts:
        with safe_open(str(part), framework="pt") as f:
            for name in f.keys():
                if name.endswith(".rotary_emb.inv_freq"):
                    continue
                if name == "lm_head.weight" and config.get("tie_word_embeddings"):
                    continue  # llama.cpp reuses token_embd when output.weight is absent
                new_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
                if new_name is None:
                    raise PackagingError(f"{part}: tensor {name!r} has no llama.cpp name; {CONVERTER_HINT}")
                data = f.get_tensor(name).float()
                if name.endswith("q_proj.weight"):
                    data = _permute(data, n_head, n_head)
                elif name.endswith("k_proj.weight"):
                    data = _permute(data, n_head, n_kv)
                data = data.numpy()
                if data.ndim == 1 or outtype == "f32":
                    yield new_name, data, None
                elif outtype == "q8_0" and data.shape[-1] % 32 == 0:
                    yield new_name, quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), \
                        gguf.GGMLQuantizationType.Q8_0
                else:  # f16, or a row length Q8_0's 32-wide blocks do not divide (convert_hf_to_gguf falls back too)
                    yield new_name, data.astype("float16"), None


def convert_to_gguf(model_dir: str | os.PathLike[str], out_file: str | os.PathLike[str], *, outtype: str = "q8_0",
                    name: str | None = None) -> PackagedArtifact:
    """Write the merged model in ``model_dir`` as ``out_file`` (+ ``.sha256`` sidecar), atomically."""
    import gguf

    if outtype not in GGUF_TYPES:
        raise PackagingError(f"GGUF type {outtype!r} is not one of {GGUF_TYPES}")
    model_dir, out_file = Path(model_dir), Path(out_file)
    config = _hparams(model_dir)
    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.partial")
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    try:
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name or model_dir.name)
        writer.add_vocab_size(config["vocab_size"])
        writer.add_context_length(config["max_position_embeddings"])
        writer.add_embedding_length(config["hidden_size"])
        writer.add_block_count(config["num_hidden_layers"])
        writer.add_feed_forward_length(config["intermediate_size"])
        writer.add_head_count(n_head)
        writer.add_head_count_kv(config.get("num_key_value_heads") or n_head)
        writer.add_rope_dimension_count(head_dim)
        if head_dim != config["hidden_size"] // n_head:
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        writer.add_rope_freq_base(float(config["rope_theta"]))
        writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
        writer.add_file_type(ftype)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _add_tokenizer(writer, model_dir, config["vocab_size"], config)
        n_tensors = 0
        for tensor_name, data, raw_dtype in _tensors(model_dir, config, outtype):
            writer.add_tensor(tensor_name, data, raw_dtype=raw_dtype)
            n_tensors += 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    tmp.replace(out_file)
    digest = write_sidecar(out_file)
    return PackagedArtifact("gguf", out_file, digest, out_file.stat().st_size, 1,
                            {"gguf_type": outtype, "tensors": n_tensors})


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def read_gguf(path: str | os.PathLike[str], expected_sha256: str | None = None) -> dict[str, Any]:
    """Verify a GGUF file (its sidecar, or ``expected_sha256``), then read it back with gguf's ``GGUFReader``:
    the metadata a loader needs and every tensor's name, shape (HF order: rows first) and type."""
    from gguf import GGUFReader

    verify_artifact(path, expected_sha256)
    r = GGUFReader(str(path))
    arch = _field(r, "general.architecture")
    return {
        "architecture": arch,
        "name": _field(r, "general.name"),
        "file_type": _field(r, "general.file_type"),
        "context_length": _field(r, f"{arch}.context_length"),
        "embedding_length": _field(r, f"{arch}.embedding_length"),
        "block_count": _field(r, f"{arch}.block_count"),
        "head_count": _field(r, f"{arch}.attention.head_count"),
        "tokenizer_model": _field(r, "tokenizer.ggml.model"),
        "tokenizer_pre": _field(r, "tokenizer.ggml.pre"),
        "tokens": _field(r, "tokenizer.ggml.tokens"),
        "token_types": _field(r, "tokenizer.ggml.token_type"),
        "merges": len(_field(r, "tokenizer.ggml.merges") or []),
        "bos_token_id": _field(r, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _field(r, "tokenizer.ggml.eos_token_id"),
        "tensors": {t.name: {"shape": [int(x) for x in reversed(t.shape)], "type": t.tensor_type.name}
                    for t in r.tensors},
    }

