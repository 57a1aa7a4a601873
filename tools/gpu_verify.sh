#!/usr/bin/env bash
# The GPU verification in one call: install without dependencies, run the GPU suite on CUDA with
# NVML, cross-check the clocks, draw the report, print the summary. Within 8 minutes on one H100.
#
#   tools/gpu_verify.sh OUT [--quick | --lean] [--device cpu]
#
# OUT receives at most 7 files: log.txt (everything printed), summary.txt, quality-run.json,
# speed-run.json, records.csv (both runs), timing.json and report.tar.gz (both runs' reports).
# --quick: fewer rounds and quality samples (about half the time). --lean: for a rental of about 4
# minutes: DistilBERT at real size only for speed and energy, no compiled int8-dyn (its compile alone
# can take a minute), fewer samples, tight step limits. --device cpu: the dry run, every
# step but the GPU (toy sizes, no meters). Uses, when present: .whl/*.whl (torchao, installed into
# a private folder, no index, no dependencies) and .gpu-cache/ (the embedded models, built if absent).
# Each step has a time limit; a step that reaches it is interrupted (its run is still saved).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

OUT=${1:?usage: tools/gpu_verify.sh OUT [--quick] [--device cpu]}
shift
QUICK="" DEVICE=cuda MODE=full
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=--quick MODE=quick ;;
        --lean) QUICK=--lean MODE=lean ;;
        --device) DEVICE=${2:?--device needs cpu or cuda}; shift ;;
        *) echo "gpu_verify.sh: unknown argument $1; accepted: --quick, --lean, --device cpu|cuda" >&2; exit 2 ;;
    esac
    shift
done
case $DEVICE in cpu|cuda) ;; *) echo "gpu_verify.sh: --device $DEVICE: accepted: cpu, cuda" >&2; exit 2 ;; esac
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
exec > >(tee "$OUT/log.txt") 2>&1

START=$(date +%s)
PY=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/energybench-gpu-verify.XXXXXX)
REPORTS=$WORK/reports
FAILED=()
step() { echo; echo "=== [$(date -u +%H:%M:%S), +$(($(date +%s) - START)) s] $*"; }
limit() { # limit FULL QUICK LEAN: seconds for a step on the GPU in this mode; the CPU dry run has no budget
    if [ "$DEVICE" = cpu ]; then echo 1800; elif [ "$MODE" = lean ]; then echo "$3"; elif [ "$MODE" = quick ]; then
        echo "$2"; else echo "$1"; fi
}
run_limited() { # run_limited SECONDS NAME COMMAND...: interrupt (SIGINT, so pytest still saves) at the limit
    local seconds=$1 name=$2
    shift 2
    timeout -s INT -k 30 "$seconds" "$@"
    local status=$?
    if [ $status -eq 124 ] || [ $status -eq 130 ]; then
        echo "gpu_verify: step $name reached its ${seconds} s limit and was interrupted"
    fi
    [ $status -eq 0 ] || FAILED+=("$name (exit $status)")
    return 0
}

step "install (no dependencies): device $DEVICE ${QUICK:-full}, output $OUT"
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --target "$WORK/site" .whl/*.whl && export PYTHONPATH=$WORK/site:$PYTHONPATH
fi
if [ -d .gpu-cache ]; then export ENERGYBENCH_CACHE=$REPO/.gpu-cache; fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 ENERGYBENCH_CACHE=${ENERGYBENCH_CACHE:-$WORK/cache}
# the pytest plugin: its entry point where energybench is installed, else named on the command line
PLUGIN=()
if ! $PY -c "import importlib.metadata as m, sys; sys.exit(0 if any(e.name == 'energybench' for e in m.entry_points(group='pytest11')) else 1)"; then
    PLUGIN=(-p energybench.harness.plugin)
fi
$PY - <<'EOF'
import importlib.metadata as metadata, sys
import torch
import energybench
from energybench.models.torchao_quant import torchao_reason
def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
capability = torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {version('transformers')}, "
      f"torchao {version('torchao')} ({torchao_reason() or 'usable'}), nvidia-ml-py {version('nvidia-ml-py')}")
print(f"{gpu}, compute capability {capability}; energybench from {energybench.__file__}")
EOF
if [ "$DEVICE" = cuda ] && ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_verify: --device cuda but torch sees no CUDA device; run the dry run with --device cpu" >&2
    exit 2
fi

step "embedded models (cache $ENERGYBENCH_CACHE; built on the CPU if absent)"
run_limited "$(limit 300 300 60)" models $PY -c "
from energybench.models.embedded import load_or_build
for name in ('distilbert', 'gpt2'):
    built = load_or_build(name, progress=print)
    print(name, 'built now in', round(built.train_seconds or 0), 's' if built.built_now else 'loaded from', built.path)
"

step "quality: embedded DistilBERT and GPT-2, every GPU precision"
mapfile -t ARGS < <($PY tools/gpu_verify.py args quality --device "$DEVICE" $QUICK)
[ ${#ARGS[@]} -gt 0 ] || { echo "gpu_verify: tools/gpu_verify.py args failed" >&2; exit 1; }
echo "pytest ${ARGS[*]} ${PLUGIN[*]}"
run_limited "$(limit 120 90 40)" quality $PY -m pytest "${ARGS[@]}" "${PLUGIN[@]}" --reports-dir "$REPORTS/quality" -q -rs

step "speed and energy: shape-only DistilBERT-base and GPT-2 small at real size, every GPU precision"
mapfile -t ARGS < <($PY tools/gpu_verify.py args speed --device "$DEVICE" $QUICK)
echo "pytest ${ARGS[*]} ${PLUGIN[*]}"
run_limited "$(limit 270 220 100)" speed $PY -m pytest "${ARGS[@]}" "${PLUGIN[@]}" --reports-dir "$REPORTS/speed" -q -rs

step "CUDA-event latency vs torch.utils.benchmark, same model and input (target: within 3 %)"
if [ "$DEVICE" = cuda ]; then
    CASES=(--case distilbert:fp32 --case distilbert:bf16 --case gpt2:fp32)
    [ "$MODE" = quick ] && CASES=(--case distilbert:fp32 --case distilbert:bf16)
    [ "$MODE" = lean ] && CASES=(--case distilbert:fp32)
    TIMING=(--seq 128 --rounds 100 --min-run-s "$([ "$MODE" = lean ] && echo 1 || echo 2)")
else
    CASES=(--case distilbert:fp32) TIMING=(--seq 16 --rounds 5 --min-run-s 0.2)
fi
run_limited "$(limit 50 45 20)" timing $PY tools/cuda_timing_check.py --device "$DEVICE" "${CASES[@]}" "${TIMING[@]}" \
    --json "$OUT/timing.json"

step "report: figures and page of each run"
for name in quality speed; do
    run=$(ls -d "$REPORTS/$name"/runs/*/ 2>/dev/null | tail -1)
    if [ -z "$run" ]; then echo "no $name run was saved"; FAILED+=("$name: no run saved"); continue; fi
    cp "$run/run.json" "$OUT/$name-run.json"
    run_limited "$(limit 45 45 20)" "report $name" $PY -m energybench.cli report "$run"
done
(cd "$REPORTS" && tar czf "$OUT/report.tar.gz" --exclude='*.svg' */runs/*/report */runs/*/*.csv 2>/dev/null) \
    || echo "gpu_verify: no report to pack"

step "summary"
$PY tools/gpu_verify.py summary "$OUT/quality-run.json" "$OUT/speed-run.json" --records "$OUT/records.csv" \
    | tee "$OUT/summary.txt"
{
    echo
    if [ -f "$OUT/timing.json" ]; then
        $PY -c "
import json, sys
for r in json.load(open(sys.argv[1])):
    events = f\"{r['events_median_s'] * 1e3:.4f} ms\" if r['events_median_s'] else '-'
    print(f\"Timing {r['model']} {r['precision']} {r['shape']}: CUDA events {events}, wall {r['wall_median_s'] * 1e3:.4f} ms, \"
          f\"torch.utils.benchmark {r['timer_median_s'] * 1e3:.4f} ms, {r['compared']}/Timer {r['ratio']:.4f} \"
          f\"({'within' if r['within_tolerance'] else 'OUTSIDE'} 3 %)\")
" "$OUT/timing.json"
    fi
    echo "Steps that did not finish cleanly: ${FAILED[*]:-none}"
    echo "Total wall time: $(($(date +%s) - START)) s (device $DEVICE, $MODE)"
} | tee -a "$OUT/summary.txt"
rm -rf "$WORK"
# 0 when both runs were saved and summarized (failed or skipped tests are in the summary), else 1
[ -f "$OUT/quality-run.json" ] && [ -f "$OUT/speed-run.json" ] && [ -f "$OUT/summary.txt" ]
