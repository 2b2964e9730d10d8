#!/usr/bin/env bash
# Training throughput of trm-train on an NVIDIA GPU (written for one H200): examples/s and peak
# memory of the full training step (forward + backward + AdamATan2 + sign-SGD + EMA) in bf16 for
# the paper's Sudoku-Extreme mlp_t and attention configs and the ARC-AGI-1 config, printed as a
# table. See trm-train/benches/train_step.rs for what is measured.
#
#   scripts/h200-bench.sh                     # on the GPU machine, from anywhere
#
# Settings (environment):
#   BENCH_DEVICE   cuda (default), cuda:N, or cpu: the CPU path skips the GPU checks (for
#                  trying the script on a machine without a GPU, with tiny sizes below)
#   BENCH_DTYPE    bf16 (default) or f32
#   SUDOKU_BATCH   Sudoku batch sizes, space-separated (default "64 768": the CPU bench's batch
#                  and the paper's global batch, which it ran on one GPU)
#   ARC_BATCH      ARC batch (default 96: the paper's global batch 768 / 8 GPUs)
#   ARC_SEQ_LEN    ARC sequence length (default 900, 30x30 grids)
#   ARC_PUZZLE_IDS puzzle embedding rows for ARC (default: the bench's 1,000,000, a stated
#                  order of magnitude of arc1concept-aug-1000)
#   BENCH_WARMUP / BENCH_STEPS   untimed / timed steps per run (default 3 / 10)
#   BENCH_OVERRIDES  extra key=value config overrides for every run (e.g.
#                  "arch.hidden_size=64 arch.num_heads=2" for a quick CPU try)
#   RUN_TIMEOUT    seconds allowed per run (default 900); a run past it is reported as timeout
#   SKIP_SETUP=1   do not run scripts/setup.sh
#   DIST_NPROC     ranks of the distributed check (default 1: the NCCL path at world size 1 through
#                  torchrun with TRM_DIST=on; N > 1 needs N GPUs)
#   DIST_BATCH     global batch of the distributed check (default 768), DIST_STEPS its steps
#                  (default 20); SKIP_DIST=1 skips the check
#
# The distributed check (see docs/DISTRIBUTED.md) trains sudoku_mlp_t on a generated Sudoku
# dataset under torchrun (the venv's) with the NCCL backend, and reports examples/s and the mean
# gradient all-reduce time per step from the run's metrics.jsonl. It needs a CUDA device and the
# NCCL half of the c10d bridge (`trm-train info` prints "nccl yes"), and fails loudly otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${BENCH_DEVICE:-cuda}
DTYPE=${BENCH_DTYPE:-bf16}
SUDOKU_BATCH=${SUDOKU_BATCH:-"64 768"}
ARC_BATCH=${ARC_BATCH:-96}
ARC_SEQ_LEN=${ARC_SEQ_LEN:-900}
export BENCH_WARMUP=${BENCH_WARMUP:-3}
export BENCH_STEPS=${BENCH_STEPS:-10}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
read -r -a OVERRIDES <<<"${BENCH_OVERRIDES:-}"
log() { printf '[h200-bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "$DEVICE" != cpu ]; then
  command -v nvidia-smi >/dev/null 2>&1 || die "nvidia-smi not found: no NVIDIA driver here (BENCH_DEVICE=cpu to try the CPU path)"
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv \
    || die "nvidia-smi failed"
else
  log "BENCH_DEVICE=cpu: GPU checks skipped"
fi

if [ "${SKIP_SETUP:-0}" != 1 ]; then
  scripts/setup.sh || die "scripts/setup.sh failed"
fi

log "building the bench and trm-train (release)"
cargo build --release -p trm-train --bin trm-train || die "build of trm-train failed"
cargo bench -p trm-train --bench train_step --no-run || die "build of the bench failed"

log "libtorch"
target/release/trm-train info --device "$DEVICE" | tee "${TMPDIR:-/tmp}/trm-info.txt" \
  || die "trm-train info --device $DEVICE failed"

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
RESULTS=()
bench() { # label, then bench arguments
  local label=$1; shift
  local file="$OUT/$(echo "$label" | tr -c 'A-Za-z0-9_\n' _).txt"
  log "run $label: $*"
  timeout "$RUN_TIMEOUT" cargo bench --quiet -p trm-train --bench train_step -- \
    --device "$DEVICE" --dtype "$DTYPE" "$@" "${OVERRIDES[@]}" 2>&1 | tee "$file"
  local rc=${PIPESTATUS[0]}
  local line
  line=$(grep '^RESULT ' "$file" | tail -n 1)
  if [ "$rc" -eq 124 ]; then
    RESULTS+=("$label|timeout after ${RUN_TIMEOUT} s")
  elif [ "$rc" -ne 0 ] || [ -z "$line" ]; then
    RESULTS+=("$label|failed (exit $rc): $(grep -v '^RESULT' "$file" | tail -n 1)")
  else
    RESULTS+=("$label|$line")
  fi
}

for b in $SUDOKU_BATCH; do
  bench "sudoku_mlp_t b$b" --config sudoku_mlp_t --batch "$b"
  bench "sudoku_att b$b" --config sudoku_att --batch "$b"
done
ARC_ARGS=(--config arc1 --batch "$ARC_BATCH" --seq-len "$ARC_SEQ_LEN")
[ -n "${ARC_PUZZLE_IDS:-}" ] && ARC_ARGS+=(--puzzle-ids "$ARC_PUZZLE_IDS")
bench "arc1 b$ARC_BATCH" "${ARC_ARGS[@]}"

# The NCCL path: torchrun --nproc-per-node DIST_NPROC, TRM_DIST=on so that even one rank runs
# through a ProcessGroupNCCL (broadcast, bucketed all-reduce, all-gather, reduce, barrier).
DIST_LINE=""
if [ "${SKIP_DIST:-0}" != 1 ] && [ "$DEVICE" != cpu ]; then
  DIST_NPROC=${DIST_NPROC:-1}
  DIST_BATCH=${DIST_BATCH:-768}
  DIST_STEPS=${DIST_STEPS:-20}
  grep -q 'nccl yes' "${TMPDIR:-/tmp}/trm-info.txt" \
    || die "this trm-train has no NCCL backend (c10d bridge: $(grep 'c10d bridge' "${TMPDIR:-/tmp}/trm-info.txt")): install the crt/cccl headers (scripts/setup.sh) and rebuild"
  .venv/bin/python -c 'import torch,sys; n=torch.cuda.device_count(); sys.exit(0 if n >= int(sys.argv[1]) else 1)' "$DIST_NPROC" \
    || die "the distributed check needs $DIST_NPROC CUDA device(s); torch sees $(.venv/bin/python -c 'import torch; print(torch.cuda.device_count())')"
  [ -x .venv/bin/torchrun ] || die ".venv/bin/torchrun not found (scripts/setup.sh installs torch)"
  log "distributed check: NCCL, world size $DIST_NPROC, batch $DIST_BATCH, $DIST_STEPS steps"
  target/release/trm-train build-dataset sudoku-generate --output-dir "$OUT/dist-data" \
    --train 2048 --test 64 --blanks 40 >/dev/null || die "dataset generation failed"
  TRM_DIST=on timeout "$RUN_TIMEOUT" .venv/bin/torchrun --no-python --nproc-per-node "$DIST_NPROC" \
    target/release/trm-train train --config trm-train/configs/sudoku_mlp_t.yaml --device cuda \
    --quiet --dist-timeout-s 120 --max-steps "$DIST_STEPS" "data_paths=[$OUT/dist-data]" \
    "checkpoint_path=$OUT/dist-run" "global_batch_size=$DIST_BATCH" epochs=100 eval_interval=100 \
    "${OVERRIDES[@]}" 2>&1 | tee "$OUT/dist.txt"
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || die "the NCCL run failed (exit $rc): see the output above"
  grep -q 'NCCL\|Nccl' "$OUT/dist.txt" || die "the run did not report the NCCL backend"
  # examples/s from the summary line; mean allreduce_ms over the steps after the first.
  EPS=$(sed -n 's/.* \([0-9.]*\) examples\/s.*/\1/p' "$OUT/dist.txt" | tail -n 1)
  AR=$(.venv/bin/python - "$OUT/dist-run/metrics.jsonl" <<'PY'
import json, sys
v = [r["metrics"].get("allreduce_ms") if "metrics" in r else r.get("allreduce_ms")
     for r in map(json.loads, open(sys.argv[1])) if r.get("kind") == "train"]
v = [x for x in v if isinstance(x, (int, float))][1:]
print(f"{sum(v) / len(v):.3f}" if v else "n/a")
PY
)
  DIST_LINE="NCCL world size $DIST_NPROC, sudoku_mlp_t batch $DIST_BATCH: $EPS examples/s, gradient all-reduce $AR ms/step"
fi

field() { # RESULT line, key
  tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"
}
echo
echo "trm-train training step, $DEVICE, $DTYPE, $BENCH_WARMUP warm-up + $BENCH_STEPS timed steps"
printf '%-20s %7s %10s %12s %14s %14s\n' run batch s/step examples/s host_peak_MiB gpu_peak_MiB
for r in "${RESULTS[@]}"; do
  label=${r%%|*}; line=${r#*|}
  if [[ "$line" == RESULT* ]]; then
    printf '%-20s %7s %10s %12s %14s %14s\n' "$label" "$(field "$line" batch)" \
      "$(field "$line" s_per_step)" "$(field "$line" examples_per_s)" \
      "$(field "$line" host_peak_mib)" "$(field "$line" gpu_peak_mib)"
  else
    printf '%-20s %s\n' "$label" "$line"
  fi
done
echo "gpu_peak_MiB: nvidia-smi memory.used over its value before the model was built (libtorch's"
echo "caching allocator reservation + CUDA context); host_peak_MiB: VmHWM of the bench process."
[ -n "$DIST_LINE" ] && echo "$DIST_LINE"
exit 0
