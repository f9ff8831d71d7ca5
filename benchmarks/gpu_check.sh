#!/usr/bin/env bash
# The device check (issue 30): on one CUDA GPU, in at most 8 minutes,
#   1. pytest -m gpu (tests/test_gpu.py: mixed-precision pretraining, resume after kill -9, probe,
#      BLiMP and stanza parses on the GPU against the CPU);
#   2. benchmarks/pretrain_speed.py on BERT-base, bf16, at 32 x 512 and 64 x 128: every path (SDPA,
#      eager, eager + R post_dropout, fused + R pre_dropout) with tokens/s, the ratio to SDPA, peak
#      GPU memory and MFU, and a torch.profiler summary where SDPA's step is below 40% MFU;
#   3. benchmarks/blimp_speed.py and benchmarks/probe_speed.py on BERT-base (12 x 12 x 768);
# and writes every table to $OUT (default ./gpu_check_out), one file per check plus summary.txt.
# Per-check timeouts (180 + 2 x 90 + 60 + 45 s) keep the whole run under 8 minutes.
#
#     bash benchmarks/gpu_check.sh                  # on the GPU machine
#     SMOKE=1 bash benchmarks/gpu_check.sh          # or --smoke: tiny model, a few steps, fp32, CPU
#
# The smoke mode keeps the script working where there is no GPU (tests/test_gpu_check.py runs it):
# it skips pytest -m gpu, with a line saying so, and runs every benchmark at toy size on the CPU.
# It has no real peak for a CPU, so it gives pretrain_speed.py a nominal one ($SMOKE_PEAK_TFLOPS,
# 0.05) that exercises the MFU code (its MFU figures mean nothing), and it always writes the
# profiler summary: whether a CPU's step clears 40% of a nominal peak depends on the host's speed.
# Environment: OUT, PYTHON (default python), SASBERT_PEAK_TFLOPS (overrides the peak table in
# pretrain_speed.py), GPU_CHECK_DEVICE (default cuda).
# Ends with one headline line: the fused + R / SDPA step time ratio at both shapes.

set -u -o pipefail
cd "$(dirname "$0")/.."
SMOKE=${SMOKE:-0}
for arg in "$@"; do
    case "$arg" in
    --smoke) SMOKE=1 ;;
    *)
        echo "usage: [SMOKE=1] bash benchmarks/gpu_check.sh [--smoke]" >&2
        exit 2
        ;;
    esac
done
OUT=${OUT:-./gpu_check_out}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
failed=0
start=$SECONDS

say() { echo "$*" | tee -a "$SUMMARY"; }

# check NAME TIMEOUT_S COMMAND...: runs it, its output to $OUT/NAME.txt (and here), its last line
# and status to the summary.
check() {
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    echo "== $name: $*" | tee "$OUT/$name.txt"
    timeout "$limit" "$@" 2>&1 | tee -a "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    local last
    last=$(grep -v '^\s*$' "$OUT/$name.txt" | tail -n 1)
    if [ "$rc" -eq 0 ]; then
        say "ok     $name ($((SECONDS - t0)) s): $last"
    else
        failed=$((failed + 1))
        say "FAILED $name (exit $rc$([ "$rc" -eq 124 ] && echo ", over ${limit} s"), $((SECONDS - t0)) s): $last"
    fi
}

"$PYTHON" - >"$OUT/environment.txt" 2>&1 <<'PY'
import platform, torch, transformers
print("python", platform.python_version(), "| torch", torch.__version__, "| transformers", transformers.__version__)
print("cuda available:", torch.cuda.is_available(), "| torch cuda", torch.version.cuda)
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}")
PY
cat "$OUT/environment.txt"
command -v nvidia-smi >/dev/null && nvidia-smi >>"$OUT/environment.txt" 2>&1

if [ "$SMOKE" = 1 ]; then
    say "gpu_check: smoke mode (CPU, fp32, tiny model, a few steps); tables in $OUT"
    DEVICE=cpu
    export SASBERT_PEAK_TFLOPS=${SMOKE_PEAK_TFLOPS:-0.05}
    say "SKIPPED pytest -m gpu: needs CUDA (smoke mode runs on the CPU)"
    say "note: smoke MFU uses a nominal CPU peak of $SASBERT_PEAK_TFLOPS TFLOP/s (not a measured one)"
    PRETRAIN=(--preset tiny --vocab-size 1000 --steps 2 --warmup 1 --device cpu --precision fp32
        --profile-below 1e9)
    SHAPES=("4 32" "8 16")
    BASE_BLIMP=(--layers 1 --heads 2 --hidden 32 --pairs-per-paradigm 1 --batch-size 64 --device cpu)
    BASE_PROBE=(--layers 1 --heads 2 --hidden 32 --sentences 20 --repeats 1 --device cpu)
else
    DEVICE=${GPU_CHECK_DEVICE:-cuda}
    if ! grep -q '^cuda available: True' "$OUT/environment.txt"; then
        say "gpu_check: no CUDA device visible to torch; on a CPU run SMOKE=1 bash benchmarks/gpu_check.sh"
        exit 1
    fi
    say "gpu_check: $(grep '^cuda:0' "$OUT/environment.txt"); tables in $OUT"
    check pytest_gpu 180 "$PYTHON" -m pytest -m gpu -p no:cacheprovider -q tests/test_gpu.py
    PRETRAIN=(--preset base --vocab-size 30522 --steps 10 --warmup 3 --device "$DEVICE" --precision bf16)
    SHAPES=("32 512" "64 128")
    BASE_BLIMP=(--layers 12 --heads 12 --hidden 768 --pairs-per-paradigm 2 --batch-size 1024 --device "$DEVICE")
    BASE_PROBE=(--layers 12 --heads 12 --hidden 768 --sentences 300 --repeats 3 --device "$DEVICE")
fi

ratios=()
for shape in "${SHAPES[@]}"; do
    read -r batch seq <<<"$shape"
    check "pretrain_speed_${batch}x${seq}" 90 "$PYTHON" benchmarks/pretrain_speed.py "${PRETRAIN[@]}" \
        --batch-size "$batch" --seq-len "$seq" --profile-dir "$OUT"
    ratio=$(sed -n 's/^regularized (fused, pre_dropout) \/ unregularized (sdpa) step time ratio: //p' \
        "$OUT/pretrain_speed_${batch}x${seq}.txt")
    ratios+=("${batch}x${seq} ${ratio:-n/a}")
done
check blimp_speed 60 "$PYTHON" benchmarks/blimp_speed.py "${BASE_BLIMP[@]}"
check probe_speed 45 "$PYTHON" benchmarks/probe_speed.py "${BASE_PROBE[@]}"

say "gpu_check: $failed check(s) failed, $((SECONDS - start)) s in all"
say "gpu_check headline: fused + R (pre_dropout) / SDPA step time: ${ratios[0]}, ${ratios[1]}"
[ "$failed" -eq 0 ]
