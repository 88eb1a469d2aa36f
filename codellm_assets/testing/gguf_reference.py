"""A reference Llama forward pass in numpy over a GGUF file's tensors, with llama.cpp's conventions: tensors by
llama.cpp name, dequantized with gguf's own quants module, RoPE rotating adjacent pairs (llama.cpp's LLAMA
graph) and the hyper-parameters from the file's metadata. Where llama.cpp itself cannot be installed (no
llama-cpp-python wheel), this is what shows that a written GGUF computes what the transformers model computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class GGUFLlama:
    def __init__(self, path: str | Path):
        from gguf import GGUFReader
        from gguf.quants import dequantize

        r = GGUFReader(str(path))
        self.w = {t.name: dequantize(t.data, t.tensor_type).astype(np.float64).reshape(
            [int(x) for x in reversed(t.shape)]) for t in r.tensors}

        def field(key):
            return r.fields[key].contents()

        self.n_layers = int(field("llama.block_count"))
        self.n_head = int(field("llama.attention.head_count"))
        self.n_kv = int(field("llama.attention.head_count_kv"))
        self.head_dim = int(field("llama.rope.dimension_count"))
        self.theta = float(field("llama.rope.freq_base"))
        self.eps = float(field("llama.attention.layer_norm_rms_epsilon"))

    def _norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * weight

    def _rope(self, x: np.ndarray, pairs: str) -> np.ndarray:
        """x: (tokens, heads, head_dim). pairs='adjacent' (llama.cpp) or 'halves' (HF rotate_half, for contrast)."""
        t, d = x.shape[0], self.head_dim
        inv = self.theta ** (-np.arange(0, d, 2) / d)
        ang = np.arange(t)[:, None] * inv[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        if pairs == "adjacent":
            a, b = x[..., 0::2], x[..., 1::2]
            out = np.empty_like(x)
            out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
            return out
        a, b = x[..., : d // 2], x[..., d // 2:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)

    def logits(self, ids: list[int], pairs: str = "adjacent") -> np.ndarray:
        w, t = self.w, len(ids)
        x = w["token_embd.weight"][ids]
        mask = np.triu(np.full((t, t), -np.inf), 1)
        for i in range(self.n_layers):
            p = f"blk.{i}."
            h = self._norm(x, w[p + "attn_norm.weight"])
            q = self._rope((h @ w[p + "attn_q.weight"].T).reshape(t, self.n_head, -1), pairs)
            k = self._rope((h @ w[p + "attn_k.weight"].T).reshape(t, self.n_kv, -1), pairs)
            v = (h @ w[p + "attn_v.weight"].T).reshape(t, self.n_kv, -1)
            rep = self.n_head // self.n_kv
            k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
            scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(self.head_dim) + mask
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            att = np.einsum("hqk,khd->qhd", scores / scores.sum(-1, keepdims=True), v).reshape(t, -1)
            x = x + att @ w[p + "attn_output.weight"].T
            h = self._norm(x, w[p + "ffn_norm.weight"])
            gate = h @ w[p + "ffn_gate.weight"].T
            x = x + ((gate / (1 + np.exp(-gate))) * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
        out = w.get("output.weight", w["token_embd.weight"])
        return self._norm(x, w["output_norm.weight"]) @ out.T

    def greedy(self, ids: list[int], max_new_tokens: int) -> list[int]:
        ids, new = list(ids), []
        for _ in range(max_new_tokens):
            nxt = int(self.logits(ids)[-1].argmax())
            ids.append(nxt)
            new.append(nxt)
        return new
