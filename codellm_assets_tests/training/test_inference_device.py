"""The eval model goes to the GPU when torch sees one (it stayed on the CPU in fp32 before)."""

import torch

from codellm_assets.core.training.inference import inference_device, load_for_inference


def test_auto_device_is_the_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert inference_device("auto") == inference_device(None) == "cuda"
    assert inference_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert inference_device() == "cpu"


def test_without_a_gpu_the_model_loads_on_the_cpu_in_fp32(tmp_path):
    from codellm_assets.testing.tiny_model import build_tiny_model

    model, _ = load_for_inference(build_tiny_model(tmp_path / "m"))
    p = next(model.parameters())
    assert p.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert p.dtype == (torch.float32 if p.device.type == "cpu" else p.dtype)
