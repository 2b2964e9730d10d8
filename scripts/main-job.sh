#!/usr/bin/env bash
# The main job: set-up, then the whole path on CPU, from data to a solved puzzle on an emulated
# board.
#
#   scripts/main-job.sh
#
# 1. set-up (scripts/setup.sh: Debian toolchains, QEMU, the libtorch venv);
# 2. release builds of trm-train and trm-export; `trm-train info` shows the libtorch in use;
# 3. data: Sudoku puzzles with unique solutions, generated (`trm-train build-dataset sudoku-generate`);
# 4. training: a small TRM (mlp_t) on CPU with libtorch (`trm-train train`), evaluated by the trainer;
# 5. export: the checkpoint into .trm model files (f32 and bf16) (`trm-export import-reference`);
# 6. host: the no_std float engine solves the held-out puzzles (`trm-export run`);
# 7. device: the same model and puzzles in the emulated Cortex-M4F board (QEMU mps2-an386), every
#    ACT step's state digest compared with the host's: identical bit for bit, or the job fails;
# 8. fixed point: the f32 model quantized to int8 weights / int16 activations (`trm-export
#    quantize`, calibrated on CALIB training puzzles), run on the host against the f32 model on
#    the held-out puzzles (exact accuracy, answer, cell and halting-step agreement), and on the
#    emulated board, bit-exact against the host or the job fails.
#
# Knobs (environment; defaults in brackets): BLANKS [4], N_TRAIN [4000], N_TEST [256],
# EPOCHS [16], DEVICE_PUZZLES [32], CALIB [64], OUT_DIR [out/main-job], TRAIN_ARGS (extra
# key=value overrides for trm-train train, e.g. "arch.hidden_size=64 lr=1e-3").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BLANKS=${BLANKS:-4}
N_TRAIN=${N_TRAIN:-4000}
N_TEST=${N_TEST:-256}
EPOCHS=${EPOCHS:-16}
DEVICE_PUZZLES=${DEVICE_PUZZLES:-32}
CALIB=${CALIB:-64}
OUT=${OUT_DIR:-$ROOT/out/main-job}
T0=$(date +%s)
say() { printf '\n=== [main-job] %s\n' "$*"; }
since() { echo "$(( $(date +%s) - $1 ))s"; }
TRAIN=./target/release/trm-train
EXPORT=./target/release/trm-export

say "set-up"
scripts/setup.sh

say "build (release)"
t=$(date +%s)
cargo build --release -p trm-train -p trm-export
echo "build: $(since "$t")"
$TRAIN info

rm -rf "$OUT"
mkdir -p "$OUT"

say "data: $N_TRAIN train + $N_TEST held-out Sudoku puzzles with $BLANKS blanks"
$TRAIN build-dataset sudoku-generate --output-dir "$OUT/data" --train "$N_TRAIN" --test "$N_TEST" \
  --blanks "$BLANKS" --seed 0 --no-progress

say "train a small TRM on CPU (mlp_t, D=32, 1 layer, H_cycles 2, L_cycles 2, 2 ACT steps)"
t=$(date +%s)
# shellcheck disable=SC2086 # TRAIN_ARGS is a list of overrides
$TRAIN train --config trm-train/configs/sudoku_ci.yaml --device cpu \
  "data_paths=[$OUT/data]" "checkpoint_path=$OUT/run" "epochs=$EPOCHS" eval_interval=4 \
  global_batch_size=64 lr=3e-3 lr_warmup_steps=10 weight_decay=0 puzzle_emb_weight_decay=0 \
  ema=False arch.L_layers=1 arch.halt_max_steps=2 ${TRAIN_ARGS:-} 2>&1 | tee "$OUT/train.log"
TRAIN_TIME=$(since "$t")

say "export to .trm (f32, bf16)"
$EXPORT import-reference "$OUT/run" -o "$OUT/model-f32.trm" --dtype f32
$EXPORT import-reference "$OUT/run" -o "$OUT/model-bf16.trm" --dtype bf16
$EXPORT inspect "$OUT/model-f32.trm" | tee "$OUT/inspect.txt"

say "host float engine on the $N_TEST held-out puzzles"
t=$(date +%s)
for dt in f32 bf16; do
  $EXPORT run -m "$OUT/model-$dt.trm" --dataset "$OUT/data/test" --limit "$N_TEST" --no-boards \
    > "$OUT/host-$dt.log" || true
done
HOST_TIME=$(since "$t")
$EXPORT run -m "$OUT/model-f32.trm" --dataset "$OUT/data/test" --limit 2 | sed -n '/^TRM-PUZZLE puzzle=1/,/^TRM-CYCLES puzzle=1/p'

say "emulated Cortex-M4F (QEMU mps2-an386, -icount): $DEVICE_PUZZLES puzzles, f32 model"
$EXPORT puzzles --dataset "$OUT/data/test" --limit "$DEVICE_PUZZLES" -o "$OUT/device-puzzles.csv"
$EXPORT run -m "$OUT/model-f32.trm" --puzzles "$OUT/device-puzzles.csv" --limit "$DEVICE_PUZZLES" \
  --step-digests --no-boards > "$OUT/host-steps.log" || true
t=$(date +%s)
TRM_MODEL="$OUT/model-f32.trm" TRM_PUZZLES="$OUT/device-puzzles.csv" TRM_PUZZLES_N="$DEVICE_PUZZLES" \
  TRM_HALT=all TRM_STEP_DIGESTS=1 QEMU_ARGS="-icount shift=0" scripts/cross.sh qemu > "$OUT/device.log"
DEVICE_TIME=$(since "$t")

say "fixed point: int8 weights / int16 activations, calibrated on $CALIB training puzzles"
$EXPORT quantize -m "$OUT/model-f32.trm" --dataset "$OUT/data/train" --calib "$CALIB" \
  -o "$OUT/model-fixed.trm" | tee "$OUT/quantize.txt"
$EXPORT inspect "$OUT/model-fixed.trm" > "$OUT/inspect-fixed.txt"
t=$(date +%s)
for m in f32 fixed; do
  $EXPORT run -m "$OUT/model-$m.trm" --dataset "$OUT/data/test" --limit "$N_TEST" --no-boards \
    --step-digests > "$OUT/host-$m-steps-all.log" || true
done
$EXPORT run -m "$OUT/model-fixed.trm" --puzzles "$OUT/device-puzzles.csv" --limit "$DEVICE_PUZZLES" \
  --step-digests --no-boards > "$OUT/host-fixed-steps.log" || true
FIXED_HOST_TIME=$(since "$t")
t=$(date +%s)
TRM_MODEL="$OUT/model-fixed.trm" TRM_PUZZLES="$OUT/device-puzzles.csv" TRM_PUZZLES_N="$DEVICE_PUZZLES" \
  TRM_HALT=all TRM_STEP_DIGESTS=1 QEMU_ARGS="-icount shift=0" scripts/cross.sh qemu > "$OUT/device-fixed.log"
FIXED_DEVICE_TIME=$(since "$t")
# Two `run --step-digests` logs of the same puzzles (A, then B): exact accuracy of each, and how
# often B agrees with A on the answer, the cells, and the halting step (the first ACT step with
# q_halt > 0, read from the printed bits: f32 bits for float models, the i32 for fixed ones).
# shellcheck disable=SC2016 # an awk program
COMPARE='
# Compares two `trm-export run --step-digests` logs of the same puzzles (A then B).
# q_halt > 0 from its hex: the sign bit clear and not zero; for f32 bits also not NaN.
function pos(h, fixed) { return substr(h, 1, 1) < "8" && h != "00000000" && (fixed || h <= "7f800000") }
FNR == 1 { f++ }
/^TRM-MODEL/ { fx[f] = ($0 ~ / scheme=fixed/) }
/^TRM-STEP/ { split($2,p,"="); split($3,s,"="); split($4,q,"=");
  if (!((f, p[2]) in halt) && pos(q[2], fx[f])) halt[f, p[2]] = s[2]; maxs[f, p[2]] = s[2] }
/^TRM-RESULT/ { split($2,p,"="); split($4,c,"="); split($5,r,"=");
  pred[f, p[2]] = r[2]; ok[f, p[2]] = (c[2] == "81/81"); n[f]++ }
END {
  for (i = 0; i < n[1]; i++) {
    ea += ok[1, i]; eb += ok[2, i]; same += (pred[1, i] == pred[2, i])
    for (k = 1; k <= 81; k++) cells += (substr(pred[1, i], k, 1) == substr(pred[2, i], k, 1))
    ha = ((1, i) in halt) ? halt[1, i] : "never"; hb = ((2, i) in halt) ? halt[2, i] : "never"
    hs += (ha == hb)
  }
  printf "exact %d/%d vs %d/%d, answers agree %d/%d, cells agree %d/%d (%.3f%%), halting step agrees %d/%d\n", ea, n[1], eb, n[1], same, n[1], cells, 81 * n[1], 100 * cells / (81 * n[1]), hs, n[1]
}

'

say "summary"
exact() { grep -c 'correct=81/81' "$1" || true; }
cells() { grep -o 'correct=[0-9]*/81' "$1" | awk -F'[=/]' '{s+=$2; n+=81} END {printf "%.2f%%", 100*s/n}'; }
grep -E '^eval all/exact_accuracy' "$OUT/train.log" | tail -1 | sed 's/^/trainer (libtorch) held-out: /'
for dt in f32 bf16; do
  echo "host $dt engine: exact $(exact "$OUT/host-$dt.log")/$N_TEST puzzles, cells $(cells "$OUT/host-$dt.log")"
done
if cmp -s <(grep -E '^TRM-(STEP|DIGEST|RESULT)' "$OUT/host-steps.log") \
          <(grep -E '^TRM-(STEP|DIGEST|RESULT)' "$OUT/device.log"); then
  echo "host vs Cortex-M4F: bit-exact ($(grep -c '^TRM-STEP' "$OUT/device.log") ACT steps of $DEVICE_PUZZLES puzzles: y, z digests and q_halt bits identical)"
else
  echo "host vs Cortex-M4F: MISMATCH"
  diff <(grep -E '^TRM-(STEP|DIGEST|RESULT)' "$OUT/host-steps.log") \
       <(grep -E '^TRM-(STEP|DIGEST|RESULT)' "$OUT/device.log") | head -10 || true
  exit 1
fi
echo "device: exact $(exact "$OUT/device.log")/$DEVICE_PUZZLES puzzles"
echo "fixed vs f32 on the host, $N_TEST held-out puzzles (all ACT steps): $(awk "$COMPARE" \
  "$OUT/host-f32-steps-all.log" "$OUT/host-fixed-steps-all.log")"
if cmp -s <(grep -E '^TRM-(STEP|DIGEST|RESULT)' "$OUT/host-fixed-steps.log") \
          <(grep -E '^TRM-(STEP|DIGEST|RESULT)' "$OUT/device-fixed.log"); then
  echo "fixed host vs Cortex-M4F: bit-exact ($(grep -c '^TRM-STEP' "$OUT/device-fixed.log") ACT steps of $DEVICE_PUZZLES puzzles: int16 y, z digests and integer q_halt identical); device exact $(exact "$OUT/device-fixed.log")/$DEVICE_PUZZLES"
else
  echo "fixed host vs Cortex-M4F: MISMATCH"
  diff <(grep -E '^TRM-(STEP|DIGEST|RESULT)' "$OUT/host-fixed-steps.log") \
       <(grep -E '^TRM-(STEP|DIGEST|RESULT)' "$OUT/device-fixed.log") | head -10 || true
  exit 1
fi
grep -E '^(flash|fixed engine RAM)' "$OUT/inspect-fixed.txt" | sed 's/^/fixed model: /'
grep -E '^(flash|float engine RAM)' "$OUT/inspect.txt"
ls -l "$OUT"/model-*.trm | awk '{print "model file: " $NF " " $5 " bytes"}'
steps=$(grep -m1 -o 'steps=[0-9]*' "$OUT/device.log" | cut -d= -f2)
awk -v s="$steps" '/^TRM-CYCLES/ {split($3,a,"="); t+=a[2]; n++} END {printf "host: %.2f ms per ACT step (batch 1, one thread)\n", t/n/s/1e6}' "$OUT/host-f32.log"
for log in device device-fixed; do
  awk -v s="$steps" -v m="${log#device}" '/^TRM-CYCLES/ {split($3,a,"="); t+=a[2]; n++} END {printf "Cortex-M4F%s: %.1f M instructions per ACT step (SysTick x 40 under -icount)\n", m, 40*t/n/s/1e6}' "$OUT/$log.log"
done
echo "times: training $TRAIN_TIME, host runs $HOST_TIME, device run $DEVICE_TIME, fixed host runs $FIXED_HOST_TIME, fixed device run $FIXED_DEVICE_TIME, total $(since "$T0")"
