#!/usr/bin/env bash
# Trains and exports the project's demo models on CPU, then runs the float-vs-fixed parity gate
# on 1000 held-out puzzles of each task, for the default fixed export (model-fixed.trm) and the
# most precise one (precise-fixed.trm: int16 weights, 4097-knot SiLU, exact products):
#
#   scripts/demo-models.sh easy      # 6-blank generated Sudoku, mlp_t D=32, 1 layer (~3 min alone)
#   scripts/demo-models.sh extreme   # Sudoku-Extreme 1k (x100 augmentations), mlp_t D=64, 2 layers
#   scripts/demo-models.sh board     # the firmware's model (issue 16): generated Sudoku with 30, 40
#                                    # and 50 blanks mixed, mlp_t D=64, 2 layers, 8 ACT steps,
#                                    # trained for BOARD_MINUTES [120] of wall time (0: none,
#                                    # go on from the latest checkpoint), then
#                                    # QAT-fine-tuned; ends with the blanks-vs-exact curve
#   scripts/demo-models.sh maze      # Maze-Hard 30x30 1k, attention D=32, 1 layer (CPU-tiny)
#   scripts/demo-models.sh arc       # ARC-AGI-1 training+evaluation (x2 augmentations), attention D=32
#
# `board` is the model the real boards embed by default (firmware-examples/models/, copied there
# by hand after a run: `cp out/board/model-{f32,fixed}.trm` to `sudoku-d64-{f32,fixed}.trm`);
# `easy` the small one of the golden fixtures (`sudoku-d32-{f32,fixed}.trm`).
# `extreme` reads ../shared/data/sudoku-extreme (TRM_SHARED to move it): its 1k training
# puzzles and the first 1000 rows of test_hard.csv as held-out puzzles; it runs until
# EXTREME_STEPS optimizer steps [4000] (resumable: run it again to go on) and evaluates the
# latest checkpoint. `maze` and `arc` read ../shared/data/{maze-hard,arc} and run until
# MAZE_STEPS [1200] / ARC_STEPS [300] steps (resumable); they are far too small and short to
# solve these tasks (the paper trains them for a day on GPUs): they show the chain (export, run,
# verify with the task's metrics, golden) on the real data. Outputs go to OUT_DIR
# [out]/{easy,extreme,board,maze,arc}. TRM_THREADS sets libtorch's
# CPU threads (1 is fastest when other work shares the machine).
#
# `extreme` and `board` then fine-tune the float run on the int8 export grid (QAT,
# docs/TRAINING.md): QAT_STEPS optimizer steps [extreme 300, board 800] at QAT_LR [2e-4] from
# the float run's latest EMA weights, into $D/qat (QAT_STEPS=0: no QAT), with int16
# activation fake-quantization when QAT_ACTIVATIONS is int16 [extreme int16, board none: the
# shipped board model was fine-tuned on the weight grid alone]. The float run is
# exported to $D/pre/model-f32.trm, the QAT run to $D/model-{f32,fixed}.trm, and verify compares
# the fixed model with both (`--original`: what QAT cost, and what quantization costs after it).
# PRECISE_LIMIT [LIMIT] puzzles verify the precise export (it costs as much as the default's).
# `board` finally measures the curve: CURVE_LIMIT [200] generated puzzles with 20, 25, .., 55
# blanks (seed 1000 + blanks, unseen in training), exact accuracy of the float and fixed
# models, written to $D/curve.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT_DIR:-out}
SHARED=${TRM_SHARED:-../shared}
TRAIN=./target/release/trm-train
EXPORT=./target/release/trm-export
GATE="--min-answer-agreement 0.99 --min-cell-agreement 0.999 --max-exact-drop 0.005"
cargo build --release -p trm-train -p trm-export

case "${1:-}" in
  easy)
    D="$OUT/easy"
    mkdir -p "$D"
    [ -d "$D/data" ] || $TRAIN build-dataset sudoku-generate --output-dir "$D/data" --train 4000 \
      --test 1000 --blanks 6 --seed 1 --no-progress
    $TRAIN train --config trm-train/configs/sudoku_ci.yaml --device cpu "data_paths=[$D/data]" \
      "checkpoint_path=$D/run" epochs=32 eval_interval=8 global_batch_size=64 lr=3e-3 \
      lr_warmup_steps=10 weight_decay=0 puzzle_emb_weight_decay=0 ema=False arch.L_layers=1 \
      arch.halt_max_steps=2 run_name=easy-d32
    calib="$D/data/train"
    test="$D/data/test"
    ;;
  extreme)
    D="$OUT/extreme"
    mkdir -p "$D"
    src="$SHARED/data/sudoku-extreme/sudoku-extreme-1k"
    if [ ! -d "$D/data" ]; then
      head -1001 "$src/test_hard.csv" > "$D/test1000.csv"
      $TRAIN build-dataset sudoku --train-csv "$src/train.csv" --test-csv "$D/test1000.csv" \
        --output-dir "$D/data" --num-aug 100 --compact-tokens --no-progress
    fi
    ARGS=(--config trm-train/configs/sudoku_mlp_t.yaml --device cpu "data_paths=[$D/data]"
      arch.hidden_size=64 arch.L_layers=2 arch.H_cycles=2 arch.L_cycles=4 arch.halt_max_steps=4
      arch.puzzle_emb_len=2 arch.forward_dtype=float32 global_batch_size=64 puzzle_emb_lr=1e-2
      weight_decay=0.1 puzzle_emb_weight_decay=0.1 epochs=20000 eval_interval=25
      checkpoint_keep_last=3)
    $TRAIN train "${ARGS[@]}" "checkpoint_path=$D/run" --max-steps "${EXTREME_STEPS:-4000}" \
      lr=1e-3 lr_warmup_steps=100 run_name=extreme-d64
    QAT_STEPS=${QAT_STEPS:-300}
    QAT_ACTIVATIONS=${QAT_ACTIVATIONS:-int16}
    calib="$D/data/train"
    test="$D/data/test"
    ;;
  board)
    D="$OUT/board"
    mkdir -p "$D"
    for b in 30 40 50; do
      [ -d "$D/d$b" ] || $TRAIN build-dataset sudoku-generate --output-dir "$D/d$b" --train 30000 \
        --test 1000 --blanks $b --seed $b --no-progress
    done
    # A wall-clock budget: the run checkpoints every epoch (1406 steps); it is stopped after
    # BOARD_MINUTES and the latest checkpoint is exported (run the script again to go on).
    ARGS=(--config trm-train/configs/sudoku_mlp_t.yaml --device cpu
      "data_paths=[$D/d30,$D/d40,$D/d50]" arch.hidden_size=64 arch.L_layers=2 arch.H_cycles=2
      arch.L_cycles=4 arch.halt_max_steps=8 arch.puzzle_emb_len=2 arch.forward_dtype=float32
      global_batch_size=64 puzzle_emb_lr=1e-2 weight_decay=0.1 puzzle_emb_weight_decay=0.1
      epochs=40 eval_interval=1 checkpoint_keep_last=3 ema=True)
    if [ "${BOARD_MINUTES:-120}" -gt 0 ]; then
      timeout "$(( ${BOARD_MINUTES:-120} * 60 ))" $TRAIN train "${ARGS[@]}" \
        "checkpoint_path=$D/run" lr=1e-3 lr_warmup_steps=100 run_name=board-d64 || [ $? -eq 124 ]
    fi
    QAT_STEPS=${QAT_STEPS:-800}
    QAT_ACTIVATIONS=${QAT_ACTIVATIONS:-none}
    calib="$D/d40/train"
    test="$D/d40/test"
    ;;
  maze)
    D="$OUT/maze"
    mkdir -p "$D"
    [ -d "$D/data" ] || $TRAIN build-dataset maze --input-dir "$SHARED/data/maze-hard" \
      --output-dir "$D/data" --no-progress
    $TRAIN train --config trm-train/configs/maze.yaml --device cpu "data_paths=[$D/data]" \
      "checkpoint_path=$D/run" --max-steps "${MAZE_STEPS:-1200}" arch.hidden_size=32 \
      arch.num_heads=2 arch.expansion=2 arch.L_layers=1 arch.H_cycles=2 arch.L_cycles=2 \
      arch.halt_max_steps=2 arch.puzzle_emb_len=2 arch.forward_dtype=float32 \
      global_batch_size=32 lr=1e-3 puzzle_emb_lr=1e-3 lr_warmup_steps=20 weight_decay=0.1 \
      puzzle_emb_weight_decay=0.1 epochs=1000 eval_interval=100 checkpoint_keep_last=2 \
      run_name=maze-d32
    calib="$D/data/train"
    test="$D/data/test"
    LIMIT=${LIMIT:-200}
    ;;
  arc)
    D="$OUT/arc"
    mkdir -p "$D"
    [ -d "$D/data" ] || $TRAIN build-dataset arc --input-file-prefix "$SHARED/data/arc/arc-agi" \
      --output-dir "$D/data" --subsets training evaluation --test-set-name evaluation \
      --num-aug 2 --no-progress
    $TRAIN train --config trm-train/configs/arc1.yaml --device cpu "data_paths=[$D/data]" \
      "checkpoint_path=$D/run" --max-steps "${ARC_STEPS:-300}" arch.hidden_size=32 \
      arch.num_heads=2 arch.expansion=2 arch.L_layers=1 arch.H_cycles=2 arch.L_cycles=2 \
      arch.halt_max_steps=2 arch.puzzle_emb_len=2 arch.forward_dtype=float32 \
      global_batch_size=32 lr=1e-3 puzzle_emb_lr=1e-2 lr_warmup_steps=20 weight_decay=0.1 \
      puzzle_emb_weight_decay=0.1 epochs=1000 eval_interval=1000 checkpoint_keep_last=2 \
      "evaluators=[]" run_name=arc-d32
    calib="$D/data/train"
    test="$D/data/test"
    LIMIT=${LIMIT:-300}
    ;;
  *) echo "usage: $0 easy|extreme|board|maze|arc" >&2; exit 2 ;;
esac

RUN="$D/run"
PRE="$D/model-f32.trm"
ORIGINAL=()
if [ -n "${ARGS+x}" ] && [ "${QAT_STEPS:-0}" -gt 0 ]; then
  # The float run's latest EMA weights (what it evaluates and exports), fine-tuned on the grid.
  last=$(ls -d "$RUN"/step_* | sort -t_ -k2 -n | tail -1)
  $TRAIN train "${ARGS[@]}" "checkpoint_path=$D/qat" "+load_checkpoint=$last/ema.safetensors" \
    --max-steps "$QAT_STEPS" lr="${QAT_LR:-2e-4}" lr_warmup_steps=20 quant.weights=int8 \
    quant.activations="${QAT_ACTIVATIONS:-none}" run_name="$(basename "$D")-qat"
  $EXPORT export "$RUN" -o "$D/pre/" --dtype f32
  PRE="$D/pre/model-f32.trm"
  ORIGINAL=(--original "$PRE")
  RUN="$D/qat"
fi
$EXPORT export "$RUN" -o "$D/" --dtype f32,fixed --calib-dataset "$calib" --calib 256
# The most precise fixed settings of the float run too (docs/EXPORT.md, "Precision options"):
# int16 weights, which a QAT checkpoint's int8 grid refuses, so always from the float run.
$EXPORT export "$D/run" -o "$D/precise" --dtype fixed --calib-dataset "$calib" --calib 256 \
  --int16-weights all --silu-knots 4097 --exact-products
status=0
for v in fixed precise; do
  # The default fixed export against its float twin (and, after QAT, the pre-QAT model); the
  # precise one against the float run it comes from.
  fixed="$D/model-fixed.trm" float="$D/model-f32.trm" orig=("${ORIGINAL[@]}")
  limit=${LIMIT:-1000}
  [ "$v" = precise ] && fixed="$D/precise-fixed.trm" float="$PRE" orig=() \
    limit=${PRECISE_LIMIT:-$limit}
  echo "== verify $fixed against $float"
  # shellcheck disable=SC2086 # GATE is a list of options
  $EXPORT verify --float "$float" --fixed "$fixed" --dataset "$test" \
    --limit "$limit" --json "$D/verify-$v.json" "${orig[@]}" $GATE \
    | tee "$D/verify-$v.txt" || status=1
done
# Golden file of the fixed model on 8 held-out puzzles, checked back (as CI does for the
# firmware's model).
$EXPORT golden -m "$D/model-fixed.trm" --dataset "$test" --limit 8 -o "$D/golden-fixed.txt"
$EXPORT golden -m "$D/model-fixed.trm" --check "$D/golden-fixed.txt" || status=1
if [ "${1:-}" = board ]; then
  echo "blanks puzzles float_exact fixed_exact answer_agreement" > "$D/curve.txt"
  for b in 20 25 30 35 40 45 50 55; do
    c="$D/curve/b$b"
    [ -d "$c" ] || $TRAIN build-dataset sudoku-generate --output-dir "$c" --train 1 \
      --test "${CURVE_LIMIT:-200}" --blanks "$b" --seed $((1000 + b)) --no-progress
    $EXPORT verify --float "$D/model-f32.trm" --fixed "$D/model-fixed.trm" --dataset "$c/test" \
      --limit "${CURVE_LIMIT:-200}" > "$c/verify.txt" || status=1
    awk -v b="$b" '$1 == "verify:" { n = $2 } $1 == "float" { f = $5 } $1 == "fixed" { x = $5 }
      $1 == "exact" { a = $7 } END { print b, n, f, x, a }' "$c/verify.txt" >> "$D/curve.txt"
  done
  column -t "$D/curve.txt"
fi
exit $status
