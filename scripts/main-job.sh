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
# 5. export: the checkpoint into .trm model files, f32, bf16 and fixed point (int8 weights, int16
#    activations, calibrated on CALIB training puzzles) (`trm-export export`): the weights the
#    trainer evaluated (the EMA when TRAIN_ARGS turns it on with ema=True, else the trained ones);
# 6. host: the no_std engines solve held-out puzzles (`trm-export run`, boards printed), and the
#    parity gate compares fixed (and bf16) with f32 on all N_TEST of them (`trm-export verify`);
# 7. device: golden files of the f32 and the fixed model on DEVICE_PUZZLES puzzles
#    (`trm-export golden`), then both models in the emulated Cortex-M4F board (QEMU mps2-an386,
#    -icount): the firmware checks every ACT step's y/z digests, q_halt bits and predictions
#    against the golden files, bit for bit, or the job fails.
#
# Knobs (environment; defaults in brackets): BLANKS [4], N_TRAIN [4000], N_TEST [256],
# EPOCHS [16], DEVICE_PUZZLES [16], CALIB [64], OUT_DIR [out/main-job], TRAIN_ARGS (extra
# key=value overrides for trm-train train, e.g. "arch.hidden_size=64 lr=1e-3"), GATE (verify's
# thresholds) ["--min-answer-agreement 0.99 --min-cell-agreement 0.999 --max-exact-drop 0.005"].
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BLANKS=${BLANKS:-4}
N_TRAIN=${N_TRAIN:-4000}
N_TEST=${N_TEST:-256}
EPOCHS=${EPOCHS:-16}
DEVICE_PUZZLES=${DEVICE_PUZZLES:-16}
CALIB=${CALIB:-64}
GATE=${GATE:---min-answer-agreement 0.99 --min-cell-agreement 0.999 --max-exact-drop 0.005}
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
BUILD_TIME=$(since "$t")
$TRAIN info

rm -rf "$OUT"
mkdir -p "$OUT"
t_job=$(date +%s)

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

say "export to .trm: f32, bf16, fixed point (calibrated on $CALIB training puzzles)"
t=$(date +%s)
$EXPORT export "$OUT/run" -o "$OUT/" --dtype f32,bf16,fixed --calib-dataset "$OUT/data/train" \
  --calib "$CALIB" | tee "$OUT/export.txt"
EXPORT_TIME=$(since "$t")
$EXPORT inspect "$OUT/model-f32.trm" | tee "$OUT/inspect-f32.txt"
$EXPORT inspect "$OUT/model-fixed.trm" > "$OUT/inspect-fixed.txt"

say "host: the fixed-point model solves two held-out puzzles (no_std engine, boards)"
$EXPORT run -m "$OUT/model-fixed.trm" --dataset "$OUT/data/test" --limit 2 \
  | grep -v '^TRM-' | tee "$OUT/sample-boards.txt"

say "host: parity gate, fixed vs f32 and bf16 vs f32, on the $N_TEST held-out puzzles"
t=$(date +%s)
# shellcheck disable=SC2086 # GATE is a list of options
$EXPORT verify --float "$OUT/model-f32.trm" --fixed "$OUT/model-fixed.trm" --dataset "$OUT/data/test" \
  --limit "$N_TEST" --json "$OUT/verify-fixed.json" $GATE | tee "$OUT/verify-fixed.txt"
$EXPORT verify --float "$OUT/model-f32.trm" --fixed "$OUT/model-bf16.trm" --dataset "$OUT/data/test" \
  --limit "$N_TEST" --json "$OUT/verify-bf16.json" > "$OUT/verify-bf16.txt"
VERIFY_TIME=$(since "$t")

say "device: golden files (host) and both models on the emulated Cortex-M4F, $DEVICE_PUZZLES puzzles"
$EXPORT puzzles --dataset "$OUT/data/test" --limit "$DEVICE_PUZZLES" -o "$OUT/device-puzzles.csv"
for m in f32 fixed; do
  $EXPORT golden -m "$OUT/model-$m.trm" --puzzles "$OUT/device-puzzles.csv" --limit "$DEVICE_PUZZLES" \
    -o "$OUT/golden-$m.txt"
done
t=$(date +%s)
TRM_MODEL="$OUT/model-f32.trm:$OUT/model-fixed.trm" TRM_GOLDEN="$OUT/golden-f32.txt:$OUT/golden-fixed.txt" \
  TRM_PUZZLES="$OUT/device-puzzles.csv" TRM_PUZZLES_N="$DEVICE_PUZZLES" QEMU_ARGS="-icount shift=0" \
  scripts/cross.sh qemu > "$OUT/device.log" || {
    echo "the device run failed or differs from the golden files:"
    grep -E '^TRM-(ERROR|GOLDEN|DONE)' "$OUT/device.log" || tail -20 "$OUT/device.log"
    exit 1
  }
DEVICE_TIME=$(since "$t")
# The device log holds one block per model (TRM-BANNER ... TRM-DONE): split it.
awk '/^TRM-BANNER/ {n++} {print > (FILENAME "." n)}' "$OUT/device.log"
mv "$OUT/device.log.1" "$OUT/device-f32.log"
mv "$OUT/device.log.2" "$OUT/device-fixed.log"

say "summary"
json() { grep -o "\"$2\": *[0-9.e+-]*" "$1" | head -1 | sed 's/.*: *//'; }
echo "trainer (libtorch), held-out: $(grep -E '^eval all/exact_accuracy' "$OUT/train.log" | tail -1 | sed 's/^eval //')"
# The same split ($OUT/data/test, all N_TEST puzzles) and the same weights (export's default: what
# the trainer evaluated): the two exact counts must be equal.
trainer_acc=$(grep -E '^eval all/exact_accuracy' "$OUT/train.log" | tail -1 | sed 's/.*= *//')
trainer_exact=$(awk -v a="$trainer_acc" -v n="$N_TEST" 'BEGIN {printf "%d", a * n + 0.5}')
float_exact=$(json "$OUT/verify-fixed.json" exact)
float_acc=$(json "$OUT/verify-fixed.json" exact_accuracy)
same=$([ "$trainer_exact" = "$float_exact" ] && echo "equal" || echo "DIFFERENT")
echo "held-out exact, the $N_TEST puzzles of data/test: trainer (libtorch) $trainer_exact/$N_TEST ($trainer_acc) | float engine (verify, model-f32.trm) $float_exact/$N_TEST ($float_acc): $same; exported $(grep -E '^source:' "$OUT/inspect-f32.txt" | sed 's/^source: //')"
sed -n '2,5p' "$OUT/verify-fixed.txt" | sed 's/^/verify fixed vs f32: /'
grep -E '^gate:' "$OUT/verify-fixed.txt" | sed 's/^/verify fixed vs f32: /'
sed -n '2,5p' "$OUT/verify-bf16.txt" | sed 's/^/verify bf16 vs f32: /'
for m in f32 fixed; do
  log="$OUT/device-$m.log"
  steps=$(grep -c '^TRM-STEP' "$log" || true)
  solved=$(grep -c 'correct=81/81' "$log" || true)
  per=$(awk '/^TRM-CYCLES/ {for (i = 2; i <= NF; i++) if ($i ~ /^per_step=/) {split($i, a, "="); t += a[2]; n++}} END {if (n) printf "%.1f", 40 * t / n / 1e6}' "$log")
  echo "Cortex-M4F $m: $(grep -E '^TRM-GOLDEN' "$log") golden lines equal to the host's ($steps ACT steps: y, z digests, q_halt, tokens, predictions); exact $solved/$DEVICE_PUZZLES; $per M instructions per ACT step (SysTick x 40 under -icount)"
done
grep -E '^(flash|float engine RAM)' "$OUT/inspect-f32.txt" | sed 's/^/f32 model: /'
grep -E '^(flash|fixed engine RAM)' "$OUT/inspect-fixed.txt" | sed 's/^/fixed model: /'
ls -l "$OUT"/model-*.trm | awk '{print "model file: " $NF " " $5 " bytes"}'
for m in f32 fixed; do
  $EXPORT run -m "$OUT/model-$m.trm" --dataset "$OUT/data/test" --limit 32 --no-boards --threads 1 \
    | awk -v m="$m" '/^TRM-CYCLES/ {for (i = 2; i <= NF; i++) if ($i ~ /^per_step=/) {split($i, a, "="); t += a[2]; n++}} END {printf "host %s engine: %.2f ms per ACT step (batch 1, one thread, mean of %d puzzles)\n", m, t / n / 1e6, n}'
done
echo "times: build $BUILD_TIME, training $TRAIN_TIME, export $EXPORT_TIME, verify $VERIFY_TIME, device $DEVICE_TIME, job without set-up and build $(since "$t_job"), total $(since "$T0")"
