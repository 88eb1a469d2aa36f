#!/usr/bin/env bash
# One prepared GPU check (< 10 min on one H200), no downloads (no hub there): writes every figure to ONE JSON.
#   1. what is installed: GPU, torch+CUDA, transformers, peft, bitsandbytes, vLLM (GPU build), the project's
#      serving deps; wheels the machine lacks are installed from WHEELS_DIR (carried as files), never fetched.
#   2. benchmarks/gpu_train_check.py: random-initialised Starcoder2 / Qwen2 (~1.5 B, ~7 B) from configs,
#      LoRA and QLoRA (nf4) training steps: tokens/s, peak memory; a servable 1.5 B Qwen2 + 4 adapters.
#   3. vLLM (GPU) serving that base + 4 adapters; benchmarks/gateway.py --backend vllm --vllm-url: 1/8/32
#      clients direct vs through the gateway, and the multi-LoRA cost (0/1/2/4 adapters in use).
# Usage (repo root):  bash benchmarks/gpu_check.sh [OUT_DIR]
#   PYTHON (default python3): torch with CUDA + the project's deps; VLLM_PYTHON (default $PYTHON): has vllm.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/codellm-gpu-check}
PYTHON=${PYTHON:-python3}
VLLM_PYTHON=${VLLM_PYTHON:-$PYTHON}
WHEELS_DIR=${WHEELS_DIR:-}
PORT=${PORT:-8011}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 TOKENIZERS_PARALLELISM=false
started=$(date +%s)
log() { echo "[$(( $(date +%s) - started )) s] $*"; }

# ---- 1. what is installed ---------------------------------------------------------------------------------
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "no GPU (nvidia-smi)"; exit 1; }
missing() {  # $1 python, then module names: prints the ones that do not import
  local py=$1; shift
  "$py" - "$@" <<'PY'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
PY
}
need_train="torch transformers peft bitsandbytes tokenizers accelerate"
need_serve="fastapi uvicorn aiohttp httpx sqlalchemy prometheus_client pydantic typer yaml"
for py_mods in "$PYTHON:$need_train $need_serve" "$VLLM_PYTHON:vllm"; do
  py=${py_mods%%:*}; mods=${py_mods#*:}
  gone=$(missing "$py" $mods)
  if [ -n "$gone" ]; then
    if [ -n "$WHEELS_DIR" ]; then
      log "installing from $WHEELS_DIR into $py: $gone"
      "$py" -m pip install -q --no-index --find-links "$WHEELS_DIR" $(echo "$gone" | sed 's/yaml/pyyaml/; s/prometheus_client/prometheus-client/')
      gone=$(missing "$py" $mods)
    fi
    [ -z "$gone" ] || { echo "missing in $py: $gone (carry their wheels and set WHEELS_DIR)"; exit 1; }
  fi
done
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'torch has no CUDA'; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" || exit 1
"$VLLM_PYTHON" -c "import vllm; print('vllm', vllm.__version__)" || exit 1
"$PYTHON" -c "import transformers, peft, bitsandbytes; print('transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__)"

# ---- 2. training steps ------------------------------------------------------------------------------------
log "training checks"
timeout 330 "$PYTHON" benchmarks/gpu_train_check.py --out "$OUT/train.json" --serve-dir "$OUT/serve" \
  --steps "${STEPS:-6}" || log "training check failed or timed out (figures so far in the log above)"
[ -d "$OUT/serve/base" ] || { echo "no servable model written; stopping"; exit 1; }

# ---- 3. vLLM (GPU) + gateway --------------------------------------------------------------------------------
log "starting vLLM on the GPU"
VLLM_ALLOW_RUNTIME_LORA_UPDATING=True setsid "$VLLM_PYTHON" -m vllm.entrypoints.openai.api_server \
  --model "$OUT/serve/base" --served-model-name base --host 127.0.0.1 --port "$PORT" \
  --max-model-len 2048 --dtype bfloat16 --gpu-memory-utilization 0.5 --enforce-eager \
  --enable-lora --max-lora-rank 16 --max-loras 4 \
  --lora-modules lora-1="$OUT/serve/lora-1" lora-2="$OUT/serve/lora-2" lora-3="$OUT/serve/lora-3" \
  lora-4="$OUT/serve/lora-4" >"$OUT/vllm.log" 2>&1 &
vpid=$!
trap 'kill -TERM -- -$vpid 2>/dev/null; sleep 3; kill -KILL -- -$vpid 2>/dev/null' EXIT
t0=$(date +%s)
until curl -sf "127.0.0.1:$PORT/v1/models" >/dev/null; do
  kill -0 $vpid 2>/dev/null || { tail -30 "$OUT/vllm.log"; echo "vLLM exited"; exit 1; }
  [ $(( $(date +%s) - t0 )) -lt 240 ] || { tail -30 "$OUT/vllm.log"; echo "vLLM not up in 240 s"; exit 1; }
  sleep 2
done
vllm_start=$(( $(date +%s) - t0 )); log "vLLM ready in $vllm_start s"
(cd benchmarks && timeout 240 "$PYTHON" gateway.py --backend vllm --vllm-url "http://127.0.0.1:$PORT" \
  --base-model "$OUT/serve/base" --clients 1,8,32 --duration 8 --rounds 1 --max-tokens 64 \
  --lora-clients 32 --json "$OUT/serve.json") || log "serving benchmark failed"

# ---- one JSON ---------------------------------------------------------------------------------------------
"$PYTHON" - "$OUT" "$vllm_start" "$(( $(date +%s) - started ))" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
load = lambda n: json.loads((out / n).read_text()) if (out / n).exists() else {"error": f"{n} missing"}
figures = {"train": load("train.json"), "serve": load("serve.json"), "vllm_start_s": int(sys.argv[2]),
           "total_s": int(sys.argv[3])}
(out / "gpu_check.json").write_text(json.dumps(figures, indent=2))
print(f"figures: {out / 'gpu_check.json'}")
PY
