#!/usr/bin/env bash
# Trains and exports the project's demo models on CPU, then runs the float-vs-fixed parity gate
# on 1000 held-out puzzles of each task, for the default fixed export (model-fixed.trm) and the
# most precise one (precise-fixed.trm: int16 weights, 4097-knot SiLU, exact products):
#
#   scripts/demo-models.sh easy      # 6-blank generated Sudoku, mlp_t D=32, 1 layer (~3 min alone)
#   scripts/demo-models.sh extreme   # Sudoku-Extreme 1k (x100 augmentations), mlp_t D=64, 2 layers
#   scripts/demo-models.sh board     # the firmware's model (issue 16): generated Sudoku with 30, 40
#                                    # and 50 blanks mixed, mlp_t D=64, 2 layers, 8 ACT steps,
#                                    # trained for BOARD_MINUTES [120] of wall time
#   scripts/demo-models.sh maze      # Maze-Hard 30x30 1k, attention D=32, 1 layer (CPU-tiny)
#   scripts/demo-models.sh arc       # ARC-AGI-1 training+evaluation (x2 augmentations), attention D=32
#
# `easy` is the model the firmware embeds by default (firmware-examples/models/, copied there by
# hand after a run: `cp out/easy/model-{f32,fixed}.trm` to `sudoku-d32-{f32,fixed}.trm`).
# `extreme` reads ../shared/data/sudoku-extreme (TRM_SHARED to move it): its 1k training
# puzzles and the first 1000 rows of test_hard.csv as held-out puzzles; it runs until
# EXTREME_STEPS optimizer steps [4000] (resumable: run it again to go on) and evaluates the
# latest checkpoint. `maze` and `arc` read ../shared/data/{maze-hard,arc} and run until
# MAZE_STEPS [1200] / ARC_STEPS [300] steps (resumable); they are far too small and short to
# solve these tasks (the paper trains them for a day on GPUs): they show the chain (export, run,
# verify with the task's metrics, golden) on the real data. Outputs go to OUT_DIR
# [out]/{easy,extreme,maze,arc}. TRM_THREADS sets libtorch's
# CPU threads (1 is fastest when other work shares the machine).
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
    $TRAIN train --config trm-train/configs/sudoku_mlp_t.yaml --device cpu "data_paths=[$D/data]" \
      "checkpoint_path=$D/run" --max-steps "${EXTREME_STEPS:-4000}" arch.hidden_size=64 \
      arch.L_layers=2 arch.H_cycles=2 arch.L_cycles=4 arch.halt_max_steps=4 arch.puzzle_emb_len=2 \
      arch.forward_dtype=float32 global_batch_size=64 lr=1e-3 puzzle_emb_lr=1e-2 \
      lr_warmup_steps=100 weight_decay=0.1 puzzle_emb_weight_decay=0.1 epochs=20000 \
      eval_interval=25 checkpoint_keep_last=3 run_name=extreme-d64
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
    timeout "$(( ${BOARD_MINUTES:-120} * 60 ))" $TRAIN train --config \
      trm-train/configs/sudoku_mlp_t.yaml --device cpu "data_paths=[$D/d30,$D/d40,$D/d50]" \
      "checkpoint_path=$D/run" arch.hidden_size=64 arch.L_layers=2 arch.H_cycles=2 \
      arch.L_cycles=4 arch.halt_max_steps=8 arch.puzzle_emb_len=2 arch.forward_dtype=float32 \
      global_batch_size=64 lr=1e-3 puzzle_emb_lr=1e-2 lr_warmup_steps=100 weight_decay=0.1 \
      puzzle_emb_weight_decay=0.1 epochs=40 eval_interval=1 checkpoint_keep_last=3 ema=True \
      run_name=board-d64 || [ $? -eq 124 ]
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

$EXPORT export "$D/run" -o "$D/" --dtype f32,fixed --calib-dataset "$calib" --calib 256
# The most precise fixed settings too (docs/EXPORT.md, "Precision options").
$EXPORT export "$D/run" -o "$D/precise" --dtype fixed --calib-dataset "$calib" --calib 256 \
  --int16-weights all --silu-knots 4097 --exact-products
status=0
for v in fixed precise; do
  fixed="$D/model-fixed.trm"; [ "$v" = precise ] && fixed="$D/precise-fixed.trm"
  echo "== verify $fixed against $D/model-f32.trm"
  # shellcheck disable=SC2086 # GATE is a list of options
  $EXPORT verify --float "$D/model-f32.trm" --fixed "$fixed" --dataset "$test" \
    --limit "${LIMIT:-1000}" --json "$D/verify-$v.json" $GATE | tee "$D/verify-$v.txt" || status=1
done
# Golden file of the fixed model on 8 held-out puzzles, checked back (as CI does for the
# firmware's model).
$EXPORT golden -m "$D/model-fixed.trm" --dataset "$test" --limit 8 -o "$D/golden-fixed.txt"
$EXPORT golden -m "$D/model-fixed.trm" --check "$D/golden-fixed.txt" || status=1
exit $status
