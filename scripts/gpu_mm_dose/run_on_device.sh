#!/usr/bin/env bash
# Issue 32, item 7, on a lent GPU machine: the one command the device tool runs from the repository
# root, with the folder prepare.py wrote carried (carry: ["scripts/gpu_mm_dose/carry"]). Results go
# to $OUT/mm_dose (the device's $OUT comes back); extra arguments go to mm_dose_gpu.py.
# Here (no GPU): OUT=/tmp/check bash scripts/gpu_mm_dose/run_on_device.sh --minutes 1 --train-subset 256 ...
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT to the folder the results go to}"
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
"$PY" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
exec "$PY" scripts/gpu_mm_dose/mm_dose_gpu.py --minutes "${MINUTES:-8}" --out "$OUT/mm_dose" "$@"
