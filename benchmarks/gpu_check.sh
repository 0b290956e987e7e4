#!/usr/bin/env bash
# The one prepared GPU check: every CUDA path of alexbench in a single device call.
#
#   benchmarks/gpu_check.sh OUTDIR                 on a lent GPU machine (from the repo root)
#   benchmarks/gpu_check.sh --cpu-dry-run OUTDIR   the same steps on the CPU with tiny settings
#                                                  (CI runs this, so the script is known to work)
#
# It installs nothing and runs with the machine's own python (${PYTHON:-python3}); the repository
# is put on PYTHONPATH. If the onnxruntime-gpu wheel was carried and unpacked into /tmp/site (see
# ../shared/device/ort-gpu-parts.sh), /tmp/site goes first so ONNX Runtime's CUDA provider exists.
# One step failing never stops the others: each step is logged to OUTDIR/<step>.log under its own
# timeout, OUTDIR/summary.txt lists every step's exit code and duration, and OUTDIR/gpu-check.tar.gz
# holds every log and results file (no model weights: they stay in a temp dir, deleted at the end).
# Exit status: 0 when every step exited 0, else 1.
#
# Budget on an H100 (the device call allows 10 minutes; this aims at under 8), by step, with its
# timeout: cuda tests ~90 s (150), info ~10 s (60), ceilings ~20 s (120), verify ~60 s incl. the
# 224 px exports (240), bench ~60 s for ~40 cells at 0.3 s + throughput loop each (300), compile
# ~90 s: two shapes compiled in torch's default mode (240), CUDA graphs ~25 s (150), transfers
# ~15 s (120), training ~20 s per precision (180). About 410 s; a step that runs long is cut by its
# timeout and reported, the rest still run.
set -u

DRY=0
if [ "${1:-}" = "--cpu-dry-run" ]; then
  DRY=1
  shift
fi
if [ $# -ne 1 ]; then
  echo "usage: $0 [--cpu-dry-run] OUTDIR" >&2
  exit 2
fi
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
PY=${PYTHON:-python3}
if [ -d /tmp/site ]; then
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$ROOT:${PYTHONPATH:-}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export XDG_CACHE_HOME="$WORK/cache" # ceilings measured here, on this machine, not read from a cache

if [ "$DRY" = 1 ]; then
  DEV=cpu
  MODEL=(--num-classes 10 --image-size 64)
  PRECS=fp32,bf16
  BATCHES=1,2
  BIG=2
  RUN=(--min-time 0.05 --min-iters 3 --warmup 1)
  TRAIN=(--synthetic-size 64 --batch-size 16 --image-size 64 --epochs 1)
  TRAIN_PRECS=(bf16)
else
  DEV=cuda
  MODEL=()
  PRECS=fp32,tf32,fp16,bf16
  BATCHES=1,64,256
  BIG=256
  RUN=(--min-time 0.3 --min-iters 20 --warmup 5)
  TRAIN=(--synthetic-size 2048 --batch-size 128 --image-size 64 --epochs 1)
  TRAIN_PRECS=(fp16 bf16)
fi
ART=(--artifacts "$WORK/exports" "${MODEL[@]}")
AB=("$PY" -m alexbench)
SUMMARY="$OUT/summary.txt"
FAILED=0
: >"$SUMMARY"

# step NAME TIMEOUT_S COMMAND...: run it, log it, record its exit code and duration.
step() {
  local name=$1 limit=$2
  shift 2
  local start rc
  start=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  if [ "$name" = cuda-tests ] && [ "$rc" = 5 ]; then
    rc=0 # pytest: no tests collected (none marked cuda here) is not a failure
  fi
  printf '%-22s rc=%-3s %4ss  %s\n' "$name" "$rc" "$(($(date +%s) - start))" "$*" >>"$SUMMARY"
  if [ "$rc" != 0 ]; then
    FAILED=$((FAILED + 1))
  fi
}

{
  echo "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) mode=$([ "$DRY" = 1 ] && echo cpu-dry-run || echo gpu)"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)" 2>&1
  "$PY" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" 2>&1
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
} >>"$SUMMARY"

step cuda-tests 150 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests
step info 60 "${AB[@]}" info
step ceilings 120 "${AB[@]}" ceilings --device "$DEV" --force
step verify 240 "${AB[@]}" verify --device "$DEV" --precision "$PRECS" \
  --backend eager,torchscript,pt2,onnxruntime --report "$OUT/verify-report.json" "${ART[@]}"
step bench 300 "${AB[@]}" bench --device "$DEV" --batch "$BATCHES" --precision "$PRECS" \
  --backend eager,pt2,torchscript,onnxruntime --results-dir "$OUT/bench" "${RUN[@]}" "${ART[@]}"
# torch.compile compiles per shape and precision: two shapes, one precision keep it in budget.
step bench-compile 240 "${AB[@]}" bench --device "$DEV" --batch "1,$BIG" \
  --precision "$([ "$DRY" = 1 ] && echo fp32 || echo bf16)" --backend compile \
  --compile-mode default --results-dir "$OUT/bench-compile" "${RUN[@]}" "${ART[@]}"
step bench-cuda-graphs 150 "${AB[@]}" bench --device "$DEV" --batch "$BATCHES" \
  --precision "$([ "$DRY" = 1 ] && echo fp32 || echo fp16,bf16)" --backend eager,pt2,onnxruntime \
  --cuda-graphs --results-dir "$OUT/bench-cuda-graphs" "${RUN[@]}" "${ART[@]}"
step bench-transfers 120 "${AB[@]}" bench --device "$DEV" --batch "1,$BIG" \
  --precision fp32 --backend eager,onnxruntime --include-transfers \
  --results-dir "$OUT/bench-transfers" "${RUN[@]}" "${ART[@]}"
for p in "${TRAIN_PRECS[@]}"; do
  step "train-$p" 180 "${AB[@]}" train --dataset synthetic --device "$DEV" --precision "$p" \
    "${TRAIN[@]}" --out "$WORK/runs/$p"
  cp "$WORK/runs/$p/history.json" "$OUT/train-$p-history.json" 2>/dev/null
done

echo "failed steps: $FAILED" >>"$SUMMARY"
# One tarball of everything small (logs, results, reports), for a device call's few return files.
(cd "$OUT" && find . -type f ! -name gpu-check.tar.gz -size -16M -print0 |
  tar --null -czf gpu-check.tar.gz -T -)
if [ "$DRY" = 0 ] && [ -s "$OUT/gpu-check.tar.gz" ]; then
  # A device call returns at most 8 files: leave the tarball and the summary, nothing else.
  find "$OUT" -mindepth 1 ! -name gpu-check.tar.gz ! -name summary.txt -delete
fi
cat "$SUMMARY"
[ "$FAILED" = 0 ]
