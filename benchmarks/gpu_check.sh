#!/usr/bin/env bash
# The one prepared check for a lent GPU machine: every CUDA path of alexbench in a single call.
#
#   PYTHONPATH=. bash benchmarks/gpu_check.sh OUTDIR          on the GPU machine (~7.5 min)
#   bash benchmarks/gpu_check.sh --cpu-dry-run OUTDIR         the same steps on the CPU, tiny
#                                                             (CI runs this: tests/test_gpu_check.py)
#
# It installs nothing. Each step runs under `timeout`, logs to its own file, and never stops the
# script. OUTDIR holds at most three files at any time (a device call brings back at most 8, and
# none more than 2 folders down): summary.txt (each step, its exit code and duration; ONNX
# Runtime's version and whether its CUDA provider loads) and gpu-check.tar.gz (every log, results
# JSON/CSV, verify report, training history, ceilings, junit XML; no model files), both rewritten
# after every step, and running-step.log, the log of the step under way (moved into the tarball
# when it ends), so that a run killed mid-step still returns what it finished and why it hung.
# The logs and results are gathered, and models, checkpoints and pytest's temporary files kept,
# in a scratch folder under $TMPDIR (or /tmp), deleted at the end. Exit status: 0 if every step
# exited 0, else 1.
#
# Environment: PYTHON (default python3: the machine's own, or the venv's in the dry run);
# GPU_CHECK_BUDGET_S (seconds for the whole run: no step starts, and a running step is stopped,
# past it; default 480 on the GPU, 420 in the dry run: set it to what the device call's limit
# allows, about 60 s less than its timeout_s, which leaves time for packing and the transfer
# back; a step is stopped 20 s before the budget ends, RESERVE plus timeout's GRACE); GPU_CHECK_KEEP=1 gathers into OUTDIR/gpu-check
# instead and keeps it. If /tmp/site exists (onnxruntime-gpu unpacked there by
# benchmarks/ort_gpu_wheel.sh) it goes first on PYTHONPATH, then the repository.
#
# Budget on one H100 (planned seconds; the cap is each step's timeout). The steps run in this
# order, torch.compile's last, so that a slow compile can only cut compile cells short:
#   pytest-cuda          ~75  (cap 150)  collection, small-model exports, 1 compile, 3 bench CLIs
#   info, ort-probe      ~15  (cap 60 each)  ort-probe runs a one-node model on ORT's CUDA provider
#   ceilings --force     ~20  (cap 120)  GEMM n=4096..12288 per dtype, HBM read ladder to 1 GiB
#   verify               ~70  (cap 240)  exports the 224 px artifacts first (~233 MB ONNX, its fp16
#                                        variant, .pt, .pt2), then eager, torchscript, pt2,
#                                        onnxruntime x 4 precisions at batch 8 (and 1, 2, 7)
#   bench, bench-graphs, bench-transfers  ~45 each (cap 150)  the same 4 backends x fp32, tf32,
#                        fp16, bf16 x batch 1,64,256 = 48 cells (45 run: torchscript's fp16/bf16
#                        trace the cast model at load, ~1 s each; onnxruntime bf16 is unsupported,
#                        with the reason); bench-graphs without onnxruntime (36 cells), which does
#                        not apply graphs. --min-time 0.1 --min-iters 20: ~0.4 s a cell (latency
#                        loop, then a throughput loop as long) + ~1 s a session + ~10 s start-up
#   train-fp16, train-bf16  ~15 each (cap 120)  synthetic 1024 images, 64 px, batch 128, 1 epoch
#   profile              ~15  (cap 60)   torch.profiler, eager bf16 at batch 1 and 256
#   -- ~355 s without torch.compile. compile's `default` mode is Inductor's default on CUDA (no
#   autotuning; max-autotune would cost 20-60 s per shape): ~5 s a compile, and a shape and
#   dtype compiled once is an FX-graph-cache hit later in the run:
#   verify-compile       ~45  (cap 150)  compile x 4 precisions at batch 2 (compiles 2 and 1)
#   bench-compile        ~45  (cap 180)  fp32, bf16 x batch 1,64,256: 4 new compiles, 2 cache hits
#   bench-compile-graphs ~20  (cap 120)  bf16 x 1,256 with --cuda-graphs (Inductor's
#                                        reduce-overhead: new graphs, cached Triton kernels)
#   bench-compile-transfers ~15 (cap 90) bf16 x 1,256 with --include-transfers (cache hits)
#   -- total ~480 s. GPU_CHECK_BUDGET_S=480 is a hard stop: a step still running then is
#   stopped (bench saves its finished cells), later ones are listed as not run; packing ~2 s.
set -u

usage() {
    echo "usage: $0 [--cpu-dry-run] OUTDIR" >&2
    exit 2
}

DRY=0
if [ "${1:-}" = "--cpu-dry-run" ]; then
    DRY=1
    shift
fi
[ $# -eq 1 ] || usage
case "$1" in -*) usage ;; esac

for tool in timeout tar awk; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "gpu_check: '$tool' is not on PATH" >&2
        exit 2
    }
done
REPO=$(cd "$(dirname "$0")/.." && pwd) || exit 2
cd "$REPO" || exit 2
mkdir -p "$1" || exit 2
OUTDIR=$(cd "$1" && pwd) || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX") || exit 2
if [ "${GPU_CHECK_KEEP:-0}" = 1 ]; then
    STAGE=$OUTDIR/gpu-check
else
    STAGE=$WORK/gpu-check # outside OUTDIR: a kill must not leave dozens of files there
fi
SUMMARY=$OUTDIR/summary.txt
TARBALL=$OUTDIR/gpu-check.tar.gz
RUNNING=$OUTDIR/running-step.log
rm -rf "$OUTDIR/gpu-check" "$SUMMARY" "$TARBALL" "$RUNNING"
mkdir -p "$STAGE/logs" "$STAGE/results" || exit 2

PY=${PYTHON:-python3}
ORT_GPU="no /tmp/site"
if [ -d /tmp/site ]; then
    ORT_GPU="/tmp/site is first on PYTHONPATH"
    compgen -G '/tmp/site/onnxruntime_gpu-*.dist-info' >/dev/null ||
        ORT_GPU="$ORT_GPU, but holds no onnxruntime_gpu-*.dist-info"
    PYTHONPATH="/tmp/site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
else
    PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi
# XDG_CACHE_HOME: the ceilings cache (and matplotlib's) start empty and stay out of $HOME.
# COLUMNS: rich draws the tables in the logs this wide instead of 80 columns.
export PYTHONPATH PYTHONUNBUFFERED=1 COLUMNS=200 XDG_CACHE_HOME="$WORK/cache"

if [ "$DRY" = 1 ]; then
    MODE="cpu-dry-run"
    BUDGET=${GPU_CHECK_BUDGET_S:-420}
    DEV=cpu
    PRECISIONS=fp32,bf16
    BATCHES=1,2
    # --cuda-graphs and --include-transfers do not apply on a CPU (recorded per cell): one cell
    # each shows the flags pass through and are recorded, for less of the suite's time.
    FLAG_GRID=(--precision fp32 --batch 1)
    MODEL=(--num-classes 10 --image-size 64)
    RUN=(--warmup 1 --min-time 0.05 --min-iters 3)
    VERIFY_BATCH=4
    TRAIN_PRECISIONS=bf16 # no fp16 training on a CPU (fp32 training: tests/test_train.py)
    # bf16 training runs at about 2 images/s on a CPU without AVX-512 BF16: the fewest images.
    TRAIN=(--dataset synthetic --synthetic-size 10 --batch 4 --image-size 64 --epochs 1)
    CV_PRECISIONS=fp32
    CB=(--precision fp32 --batch 1)
    CG=(--precision fp32 --batch 1)
    CT=(--precision fp32 --batch 1)
    CEIL=(--quick) # the full CPU measurement took 34 s of the suite's dry run; quick: 8 to 12
    PROF=(--precision bf16 --batch 1,2 --image-size 64 --num-classes 10 --iters 5)
else
    MODE="cuda"
    BUDGET=${GPU_CHECK_BUDGET_S:-480}
    DEV=cuda
    PRECISIONS=fp32,tf32,fp16,bf16
    BATCHES=1,64,256
    FLAG_GRID=(--precision "$PRECISIONS" --batch "$BATCHES")
    MODEL=(--seed 0) # the seeded 1000-class 224 px model: named, as a new --artifacts folder needs
    RUN=(--warmup 3 --min-time 0.1 --min-iters 20)
    VERIFY_BATCH=8
    TRAIN_PRECISIONS="fp16 bf16"
    TRAIN=(--dataset synthetic --synthetic-size 1024 --batch 128 --image-size 64 --epochs 1)
    CV_PRECISIONS=fp32,tf32,fp16,bf16
    CB=(--precision "fp32,bf16" --batch "1,64,256")
    CG=(--precision bf16 --batch "1,256")
    CT=(--precision bf16 --batch "1,256")
    CEIL=()
    PROF=(--precision bf16 --batch 1,256) # the two targets' cells, eager (no compile)
fi
BACKENDS=eager,torchscript,pt2,onnxruntime
ALEX=("$PY" -m alexbench --debug) # --debug: a crash leaves its traceback in the log (exit 1)
ART=(--artifacts "$WORK/exports")
RESERVE=10  # seconds kept back for the summary and the tarball
GRACE=10    # timeout's -k: a step that ignores SIGTERM is killed this much later
MIN_STEP=20 # no step is started with less time than this left

interrupted=0
CHILD="" # the step under way: the trap stops it too, even if the signal came before `wait`
trap 'interrupted=1; [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null' INT TERM
trap 'rm -rf "$WORK"' EXIT

# Per-step records, in order (indexed arrays: no bash 4 associative arrays needed).
NAMES=()
RCS=()
SECS=()
LIMITS=()
NOTES=()
LOGS=()
ORT_LINE="(not recorded)"

clock() {
    if [ -n "${EPOCHREALTIME:-}" ]; then
        echo "${EPOCHREALTIME/,/.}"
    else
        date +%s
    fi
}

is_ok() { # RC "ACCEPTED CODES"
    local c
    for c in $2; do
        [ "$1" = "$c" ] && return 0
    done
    return 1
}

pack() {
    [ -f "$SUMMARY" ] && cp "$SUMMARY" "$STAGE/summary.txt"
    # Model files never belong here; the patterns guard against a step that put one in anyway.
    if tar -C "$(dirname "$STAGE")" --exclude='*.onnx' --exclude='*.pt' --exclude='*.pt2' \
        --exclude='*.pth' -czf "$TARBALL.part" gpu-check; then
        mv -f "$TARBALL.part" "$TARBALL"
    else
        rm -f "$TARBALL.part"
    fi
}

write_summary() {
    local i failed=() notrun=() n=${#NAMES[@]} status
    {
        echo "alexbench gpu_check ($MODE)"
        echo "started:     $STARTED"
        echo "updated:     $(date -u +%Y-%m-%dT%H:%M:%SZ), ${SECONDS}s elapsed of a ${BUDGET}s budget"
        echo "repo:        $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no git'))"
        echo "python:      $PY ($PY_VERSION)"
        echo "gpu:         $GPU_LINE"
        echo "ort-gpu:     $ORT_GPU"
        echo "onnxruntime: $ORT_LINE"
        echo
        printf '%-24s %5s %8s %6s  %-6s %s\n' step rc seconds limit result log
        for ((i = 0; i < n; i++)); do
            status=ok
            if [ "${NOTES[i]#not run}" != "${NOTES[i]}" ]; then
                # Not run is not failed: a slow but healthy machine must not read as broken.
                status=NOTRUN
                notrun+=("${NAMES[i]} (${NOTES[i]})")
            elif [ "${NOTES[i]#cut by the budget}" != "${NOTES[i]}" ] ||
                [ "${NOTES[i]#interrupted}" != "${NOTES[i]}" ]; then
                status=CUT
                notrun+=("${NAMES[i]} (${NOTES[i]})")
            elif [ "${NOTES[i]}" != ok ]; then
                status=FAIL
                failed+=("${NAMES[i]} (rc ${RCS[i]}${NOTES[i]:+, ${NOTES[i]}})")
            fi
            printf '%-24s %5s %8s %6s  %-6s %s\n' "${NAMES[i]}" "${RCS[i]}" "${SECS[i]}" \
                "${LIMITS[i]}" "$status" "${LOGS[i]}"
        done
        echo
        if [ "${#failed[@]}" -gt 0 ]; then
            echo "RESULT: FAIL, ${#failed[@]} of $n steps failed:"
            printf '  %s\n' "${failed[@]}"
        elif [ "${#notrun[@]}" -gt 0 ]; then
            echo "RESULT: INCOMPLETE, no step failed but ${#notrun[@]} of $n were not run or cut short:"
        else
            echo "RESULT: PASS, all $n steps exited 0"
        fi
        if [ "${#notrun[@]}" -gt 0 ]; then
            printf '  not run or cut: %s\n' "${notrun[@]}"
        fi
    } >"$SUMMARY.part" && mv -f "$SUMMARY.part" "$SUMMARY"
}

# step NAME CAP "OK CODES" CMD...: run CMD under `timeout`, logged to logs/NN-NAME.log.
step() {
    local name=$1 cap=$2 ok=$3
    shift 3
    local idx=${#NAMES[@]}
    local rel
    rel=$(printf 'logs/%02d-%s.log' $((idx + 1)) "$name")
    # The log is written in OUTDIR while the step runs (a kill leaves it there), then moved in.
    local log=$RUNNING limit=$cap left=$((BUDGET - SECONDS - RESERVE - GRACE)) rc note t0 t1
    [ "$left" -lt "$limit" ] && limit=$left
    {
        echo "# step:    $name"
        echo "# command: $*"
        echo "# limit:   ${limit}s (cap ${cap}s, ${left}s of the budget left)"
        echo "# started: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } >"$log"
    if [ "$interrupted" = 1 ] || [ "$limit" -lt "$MIN_STEP" ]; then
        rc=-
        note="not run: budget spent"
        [ "$interrupted" = 1 ] && note="not run: interrupted"
        limit=-
        t0=0
        t1=0
    else
        t0=$(clock)
        # In the background, so that a signal to this script reaches the step at once.
        # `timeout` makes its own process group: a kill of this script's group does not reach
        # the step (the device tool ends every process of the call when it returns).
        timeout -k "$GRACE" "$limit" "$@" >>"$log" 2>&1 </dev/null &
        CHILD=$!
        wait "$CHILD"
        rc=$?
        if [ "$interrupted" = 1 ]; then
            kill -TERM "$CHILD" 2>/dev/null
            wait "$CHILD"
            rc=$?
        fi
        CHILD=""
        t1=$(clock)
        if is_ok "$rc" "$ok"; then
            note=ok
        elif [ "$interrupted" = 1 ]; then
            note="interrupted by a signal"
        elif { [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && [ "$limit" -lt "$cap" ]; then
            # Stopped by the run's budget, not by its own cap: not a failure of the step.
            note="cut by the budget after ${limit}s (cap ${cap}s)"
        elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
            note="timed out after ${limit}s"
        elif grep -q '^Traceback (most recent call last)' "$log"; then
            note="traceback in log"
        else
            note=""
        fi
    fi
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    echo "# rc: $rc, ${secs}s${note:+ ($note)}" >>"$log"
    mv -f "$log" "$STAGE/$rel"
    NAMES+=("$name")
    RCS+=("$rc")
    SECS+=("$secs")
    LIMITS+=("$limit")
    NOTES+=("$note")
    LOGS+=("$rel")
    echo "[gpu_check ${SECONDS}s] $name: rc $rc, ${secs}s${note:+ ($note)}"
    write_summary
    pack
}

# keep DEST SRC...: copy small outputs into the staging folder (a missing one is fine: the
# step's exit code says why).
keep() {
    local dest=$1 f
    shift
    mkdir -p "$dest"
    for f in "$@"; do
        [ -f "$f" ] && cp "$f" "$dest/"
    done
    return 0
}

STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
PY_VERSION=$("$PY" -c 'import sys; print(sys.version.split()[0])' 2>&1 | tail -n 1)
GPU_LINE="none (no nvidia-smi)"
if command -v nvidia-smi >/dev/null 2>&1; then
    GPU_LINE=$(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total \
        --format=csv,noheader 2>&1 | head -n 1)
    timeout 20 nvidia-smi >"$STAGE/logs/00-nvidia-smi.log" 2>&1
fi
echo "[gpu_check] $MODE: OUTDIR=$OUTDIR, scratch $WORK, budget ${BUDGET}s"

# 1. The cuda-marked tests. On a CPU they are collected and skipped (rc 0); rc 5 would mean that
#    pytest selected none, which the dry run accepts and a GPU run does not. A test module that
#    cannot import there (the image lacks a package) fails the step but not the cuda tests.
PYTEST_OK=0
[ "$DRY" = 1 ] && PYTEST_OK="0 5"
step pytest-cuda 150 "$PYTEST_OK" "$PY" -m pytest -q -m cuda -p no:cacheprovider \
    --continue-on-collection-errors --basetemp "$WORK/pytest" \
    --junitxml "$STAGE/results/pytest-cuda.xml" --durations 15 tests

# 2. Versions, devices, providers.
step info 60 0 "${ALEX[@]}" info
step ort-probe 60 0 "$PY" benchmarks/ort_probe.py
ORT_LINE=$(grep -v '^#' "$STAGE/${LOGS[${#LOGS[@]} - 1]}" | tail -n 1)
# An ONNX Runtime without its CUDA provider (the image's CPU build, when the onnxruntime-gpu
# parts did not arrive) runs none of the cuda cells, and a backend named but measured in no
# cell exits 4: left out of the sweep, and said in the summary.
if [ "$DEV" = cuda ] && ! "$PY" -c 'import onnxruntime as o, sys
sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' 2>/dev/null; then
    BACKENDS=eager,torchscript,pt2
    ORT_LINE="$ORT_LINE (no CUDA provider: onnxruntime left out of the cuda steps)"
fi
write_summary

# 3. Ceilings, measured on this machine (the CPU stands in for the GPU in the dry run).
#    Its --json document is the record: ceilings measured while other processes used the CPU
#    (a dry run beside other work) are not cached, and the cache folder would hold nothing.
step ceilings 120 0 bash -c 'out=$1; shift; "$@" >"$out"' ceilings "$STAGE/results/ceilings.json" \
    "${ALEX[@]}" ceilings --device "$DEV" --force "${CEIL[@]}" --json

# 4. Parity of every non-compile runtime at every precision (exports the artifacts first).
step verify 240 0 "${ALEX[@]}" verify --device "$DEV" --backend "$BACKENDS" \
    --precision "$PRECISIONS" --batch "$VERIFY_BATCH" "${ART[@]}" \
    --out "$STAGE/results/verify-report.json" ${MODEL[@]+"${MODEL[@]}"}
keep "$STAGE/results/exports" "$WORK/exports/manifest.json"

# 5. The sweep: plain, with CUDA graphs, with transfers (torch.compile's cells in step 7).
bench() { # NAME CAP OPTIONS...
    local name=$1 cap=$2
    shift 2
    step "$name" "$cap" 0 "${ALEX[@]}" bench --device "$DEV" "${ART[@]}" \
        --out "$STAGE/results/$name" ${MODEL[@]+"${MODEL[@]}"} "$@"
}
GRID=(--backend "$BACKENDS" --precision "$PRECISIONS" --batch "$BATCHES" "${RUN[@]}")
bench bench 150 "${GRID[@]}"
# ONNX Runtime does not apply --cuda-graphs (recorded per cell): its cells would be the plain
# sweep's again, three more loads of the model for nothing.
bench bench-graphs 150 --backend "${BACKENDS%,onnxruntime}" "${FLAG_GRID[@]}" "${RUN[@]}" \
    --cuda-graphs
bench bench-transfers 150 --backend "$BACKENDS" "${FLAG_GRID[@]}" "${RUN[@]}" --include-transfers

# 6. One short synthetic epoch per training precision (checkpoints stay in the scratch folder).
for p in $TRAIN_PRECISIONS; do
    step "train-$p" 120 0 "${ALEX[@]}" train "${TRAIN[@]}" --precision "$p" --device "$DEV" \
        --out "$WORK/train-$p"
    keep "$STAGE/results/train-$p" "$WORK/train-$p/history.json" "$WORK/train-$p/history.csv" \
        "$WORK/train-$p/curves.png"
done

# 7. Where the time goes in the targets' cells (kernels, matrix share, host time per call), so
#    that a target missed in this run comes back with its profile.
step profile 60 0 "$PY" benchmarks/profile_cells.py --device "$DEV" "${PROF[@]}" \
    --out "$STAGE/results/profile.json"

# 8. torch.compile: parity at every precision, then a few bench cells per mode (see the budget).
step verify-compile 150 0 "${ALEX[@]}" verify --device "$DEV" --backend compile \
    --precision "$CV_PRECISIONS" --batch 2 "${ART[@]}" \
    --out "$STAGE/results/verify-compile-report.json" ${MODEL[@]+"${MODEL[@]}"}
bench bench-compile 180 --backend compile "${CB[@]}" "${RUN[@]}"
bench bench-compile-graphs 120 --backend compile "${CG[@]}" "${RUN[@]}" --cuda-graphs
bench bench-compile-transfers 90 --backend compile "${CT[@]}" "${RUN[@]}" --include-transfers

write_summary
pack
[ "${GPU_CHECK_KEEP:-0}" = 1 ] || rm -rf "$STAGE"
echo
cat "$SUMMARY"
grep -q '^RESULT: PASS' "$SUMMARY"
