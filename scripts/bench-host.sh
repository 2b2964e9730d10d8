#!/usr/bin/env bash
# Issue 13's host comparison, side by side in one run: one ACT step (batch 1, one thread) of the
# integer engine with every x86 implementation this machine has (AMX, AVX-512 VNNI, AVX-512,
# AVX2), the float engine, then trm-train's model in libtorch (fp32, no gradient), for Sudoku
# mlp_t and attention at D=512 and mlp_t at D=128. Prints criterion's time lines; the ratios in
# docs/BENCHMARKS.md are the middle figures divided by libtorch's.
#
#   scripts/bench-host.sh        (about 7 minutes; needs scripts/setup.sh's venv for libtorch)
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== $(date -u) load: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench -p trm-nostd --bench fixed_step -- \
  '/(fixed-(avx2|avx512|avx512-vnni|amx)-fast|float-f32|float-f32-fused)$' 2>&1 | grep -E '^act_step|time:'
cargo bench -p trm-train --bench act_forward 2>&1 | grep -E '^libtorch|time:'
echo "== $(date -u) load: $(cut -d' ' -f1-3 /proc/loadavg)"
