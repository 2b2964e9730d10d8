#!/usr/bin/env bash
# The project's test command: set-up, then every check CI runs. Any failure exits non-zero and
# names the failing step.
#
#   scripts/test.sh
#
# Steps: set-up (scripts/setup.sh) -> cargo fmt --check -> clippy -D warnings (workspace and
# firmware) -> cross builds of trm-nostd for thumbv7em / thumbv6m / riscv32imc -> host test suites
# (which include the QEMU Cortex-M4F firmware test).
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

T0=$(date +%s)
SUMMARY=()
step() {
  local name=$1; shift
  local t=$(date +%s)
  echo "=== [test] step '$name': $*"
  if ! "$@"; then
    echo "=== [test] FAILED step '$name' after $(( $(date +%s) - t ))s"
    printf '  %s\n' "${SUMMARY[@]}"
    exit 1
  fi
  SUMMARY+=("$name: ok ($(( $(date +%s) - t ))s)")
  echo "=== [test] step '$name' ok ($(( $(date +%s) - t ))s)"
}

step setup scripts/setup.sh
step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step firmware-check scripts/cross.sh check
step cross scripts/cross.sh lib
step kernel-check scripts/kernel-check.sh
step tests cargo test --workspace

echo "=== [test] all steps passed in $(( $(date +%s) - T0 ))s"
printf '  %s\n' "${SUMMARY[@]}"
