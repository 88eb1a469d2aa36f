"""The MLflow pyfunc model of a registered adapter (MLflow "models from code": this file is logged with it).

A model version holds the LoRA adapter (and the tokenizer) as artifacts and only a *reference* to the base
model (path or hub id + content fingerprint) in its model config: adapters are kilobytes to megabytes,
bases are gigabytes and shared by every version, exactly as vLLM serves them (one base, many LoRAs).
``predict`` loads base + adapter and generates completions, so ``mlflow.pyfunc.load_model("models:/codellm@
challenger")`` is a working model wherever the base is reachable (override its location with the
``CODELLM_BASE_MODEL_DIR`` environment variable on another machine).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class AdapterModel(PythonModel):
    """Base model + LoRA adapter; ``predict(list_of_prompts) -> list_of_completions``."""

    def load_context(self, context) -> None:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = context.model_config or {}
        base = os.environ.get("CODELLM_BASE_MODEL_DIR") or cfg["base_model"]
        expected = cfg.get("base_fingerprint")
        if expected and Path(base).is_dir():
            from codellm_assets.core.training.checkpoints import base_model_fingerprint

            if base_model_fingerprint(base) != expected:
                raise RuntimeError(
                    f"base model at {base} is not the one this adapter was trained on "
                    f"(fingerprint {expected}); set CODELLM_BASE_MODEL_DIR to the right base"
                )
        tokenizer_dir = context.artifacts.get("tokenizer") or base
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        model = AutoModelForCausalLM.from_pretrained(base)
        self.model = PeftModel.from_pretrained(model, context.artifacts["adapter"]).eval()

    def predict(self, context, model_input: list[str], params: dict[str, Any] | None = None) -> list[str]:
        import torch

        params = params or {}
        max_new_tokens = int(params.get("max_new_tokens", 64))
        temperature = float(params.get("temperature", 0.0))
        outputs = []
        for prompt in model_input:
            ids = self.tokenizer(prompt, return_tensors="pt")
            with torch.no_grad():
                out = self.model.generate(
                    **ids,
                    max_new_tokens=max_new_tokens,
                    do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None,
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                )
            outputs.append(
                self.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
            )
        return outputs


mlflow.models.set_model(AdapterModel())
