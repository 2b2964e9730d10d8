#!/usr/bin/env bash
# Microcontroller builds with Debian's Rust (rustc-web 1.96 + rust-web-src, -Z build-std=core):
# rustup cannot add targets on this machine, so the cross builds never use the rustup toolchain.
#
#   scripts/cross.sh [lib]   trm-nostd, no default features and with `defmt`, for
#                            thumbv7em-none-eabihf, thumbv6m-none-eabi, riscv32imc-unknown-none-elf
#                            (target dir target/cross)
#   scripts/cross.sh firmware [BOARD]   a firmware (release); prints its ELF path last.
#                               BOARD: mps2 (default: qemu-mps2-an386, Cortex-M4F), riscv
#                               (qemu-virt-riscv32, RV32IMAFC), h743 (stm32h743-nucleo, Cortex-M7,
#                               real board) or pico (rp2040-pico, Cortex-M0+, real board)
#   scripts/cross.sh qemu [BOARD]   builds the firmware and runs it in QEMU (exit status of the
#                               firmware; mps2 or riscv); QEMU_ARGS adds QEMU options (e.g.
#                               `-icount shift=0`)
#   scripts/cross.sh boards     builds the real boards' firmware (h743, pico) with their default
#                               model (TRM_MODEL unset: ../models/sudoku-d64-fixed.trm)
#   scripts/cross.sh all        lib, then qemu for both QEMU boards, then boards
#   scripts/cross.sh check      host checks of the firmware workspace with the rustup toolchain:
#                               rustfmt --check of the board crates, clippy -D warnings and tests
#                               of the build helper; then `boards` (Debian's toolchain), so the
#                               test command proves the real boards build. The board-agnostic app
#                               (trm-fw-app) is a member of the host workspace: its fmt, clippy and
#                               tests run there (scripts/test.sh), its target builds here
#
# The firmware embeds what the environment says at build time (see
# firmware-examples/embed): TRM_MODEL (a .trm path, or several separated by ':', one run each),
# TRM_PUZZLES (a Sudoku CSV, or `trm-export puzzles` output for another task), TRM_PUZZLES_N,
# TRM_HALT (all|early), TRM_STEP_DIGESTS (1|0).
# QEMU_TIMEOUT (seconds, default 600) bounds the QEMU run. CROSS_TARGET_DIR overrides the target dir of `lib`.
#
# Every step is named; a failure prints the step and exits non-zero. A second run is quick:
# cargo only checks that everything is up to date.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
log() { printf '[cross] %s\n' "$*" >&2; }
fail() { log "FAILED step '$1'${2:+: $2}"; exit 1; }

DEB_CARGO=/usr/bin/cargo
DEB_RUSTC=/usr/bin/rustc
[ -x "$DEB_CARGO" ] && [ -x "$DEB_RUSTC" ] ||
  fail toolchain "Debian's cargo/rustc are missing: run scripts/setup.sh (packages rustc-web cargo-web rust-web-src lld)"
[ -d /usr/lib/rustlib/src/rust/library ] ||
  fail toolchain "Debian's Rust sources are missing (package rust-web-src): run scripts/setup.sh"
command -v ld.lld >/dev/null || fail toolchain "ld.lld is missing (package lld): run scripts/setup.sh"

# A clean environment for Debian's cargo: nothing from rustup (RUSTUP_TOOLCHAIN, ~/.cargo/bin
# first on PATH, RUSTC_WRAPPER) and nothing a calling cargo exported (CARGO_*, RUSTFLAGS,
# CARGO_TARGET_DIR, CARGO_ENCODED_RUSTFLAGS when run from a test). Kept: HOME and CARGO_HOME (the
# crate cache), proxies and certificates (downloads), terminal settings, and our TRM_* settings.
deb() {
  local keep=(HOME="$HOME" PATH=/usr/bin:/bin:/usr/sbin:/sbin RUSTC="$DEB_RUSTC" RUSTDOC=/usr/bin/rustdoc
    RUSTC_BOOTSTRAP=1 CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}")
  local v
  for v in $(compgen -e); do
    case "$v" in
      CARGO_HOME|CARGO_NET_*|CARGO_HTTP_*|CARGO_REGISTRIES_*|CARGO_REGISTRY_*|CARGO_SOURCE_*) keep+=("$v=${!v}") ;;
      http_proxy|https_proxy|no_proxy|HTTP_PROXY|HTTPS_PROXY|NO_PROXY|ALL_PROXY|all_proxy) keep+=("$v=${!v}") ;;
      SSL_CERT_FILE|SSL_CERT_DIR|TERM|TRM_*|QEMU_TIMEOUT|CROSS_TARGET_DIR) keep+=("$v=${!v}") ;;
    esac
  done
  env -i "${keep[@]}" "$@"
}

LIB_TARGETS=(thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf)
# The board: FW_DIR (its crate), FW_ELF (what it builds), QEMU_CMD (how QEMU runs it).
select_board() {
  case "${1:-mps2}" in
    mps2)
      FW_DIR=firmware-examples/qemu-mps2-an386
      FW_ELF=firmware-examples/target/thumbv7em-none-eabihf/release/trm-fw-qemu-mps2-an386
      QEMU_CMD=(qemu-system-arm -machine mps2-an386 -cpu cortex-m4) ;;
    riscv)
      FW_DIR=firmware-examples/qemu-virt-riscv32
      FW_ELF=firmware-examples/target/riscv32imafc-unknown-none-elf/release/trm-fw-qemu-virt-riscv32
      QEMU_CMD=(qemu-system-riscv32 -machine virt -bios none) ;;
    h743)
      FW_DIR=firmware-examples/stm32h743-nucleo
      FW_ELF=firmware-examples/target/thumbv7em-none-eabihf/release/trm-fw-stm32h743-nucleo
      QEMU_CMD=() ;;
    pico)
      FW_DIR=firmware-examples/rp2040-pico
      FW_ELF=firmware-examples/target/thumbv6m-none-eabi/release/trm-fw-rp2040-pico
      QEMU_CMD=() ;;
    *) echo "unknown board '$1' (mps2, riscv, h743 or pico)" >&2; exit 2 ;;
  esac
}

build_lib() {
  local t f name
  for t in "${LIB_TARGETS[@]}"; do
    for f in "" defmt; do
      name="trm-nostd/$t${f:+/+$f}"
      local t0=$SECONDS
      deb "$DEB_CARGO" build --release -q -p trm-nostd --no-default-features ${f:+--features $f} \
        -Z build-std=core --target "$t" --target-dir "${CROSS_TARGET_DIR:-$ROOT/target/cross}" ||
        fail "$name"
      log "ok $name ($((SECONDS - t0))s)"
    done
  done
}

build_firmware() {
  local t0=$SECONDS
  # Absolute paths: build.rs resolves relative ones against the board crate's folder.
  if [ -n "${TRM_MODEL:-}" ]; then
    local parts p abs=()
    IFS=: read -ra parts <<<"$TRM_MODEL"
    for p in "${parts[@]}"; do [ -n "$p" ] && abs+=("$(realpath -m "$p")"); done
    TRM_MODEL=$(IFS=:; echo "${abs[*]}") && export TRM_MODEL
  fi
  [ -n "${TRM_PUZZLES:-}" ] && TRM_PUZZLES=$(realpath -m "$TRM_PUZZLES") && export TRM_PUZZLES
  if [ -n "${TRM_GOLDEN:-}" ]; then
    local gparts g gabs=()
    IFS=: read -ra gparts <<<"$TRM_GOLDEN"
    for g in "${gparts[@]}"; do [ -n "$g" ] && gabs+=("$(realpath -m "$g")"); done
    TRM_GOLDEN=$(IFS=:; echo "${gabs[*]}") && export TRM_GOLDEN
  fi
  # Run from the board folder so that its .cargo/config.toml (target, build-std, linker) applies.
  (cd "$FW_DIR" && deb "$DEB_CARGO" build --release -q) || fail firmware "build of $FW_DIR"
  [ -f "$FW_ELF" ] || fail firmware "no ELF at $FW_ELF"
  log "ok firmware ($((SECONDS - t0))s): $FW_ELF"
  if command -v llvm-size >/dev/null; then llvm-size "$FW_ELF" >&2
  elif command -v size >/dev/null; then size "$FW_ELF" >&2; fi
}

run_qemu() {
  [ ${#QEMU_CMD[@]} -gt 0 ] || fail qemu "$FW_DIR is a real board: flash it with probe-rs (see its README section)"
  command -v "${QEMU_CMD[0]}" >/dev/null ||
    fail qemu "${QEMU_CMD[0]} is missing (packages qemu-system-arm, qemu-system-misc): run scripts/setup.sh"
  local t0=$SECONDS rc
  # shellcheck disable=SC2086 # QEMU_ARGS is a list of options
  timeout "${QEMU_TIMEOUT:-600}" "${QEMU_CMD[@]}" ${QEMU_ARGS:-} -nographic \
    -semihosting-config enable=on,target=native -kernel "$FW_ELF"
  rc=$?
  log "qemu exited with $rc after $((SECONDS - t0))s"
  [ $rc -eq 124 ] && fail qemu "timed out after ${QEMU_TIMEOUT:-600}s"
  [ $rc -eq 0 ] || fail qemu "firmware exit status $rc"
}

host_check() {
  # The host toolchain (rustup) on purpose: clippy and rustfmt are not in Debian's rustc-web.
  # `-p` on every command: `cargo fmt --all` would also rewrite the path dependencies (trm-nostd,
  # trm-fw-app), which the host workspace formats.
  local pk=(-p trm-fw-embed -p trm-fw-qemu-mps2-an386 -p trm-fw-qemu-virt-riscv32
    -p trm-fw-stm32h743-nucleo -p trm-fw-rp2040-pico)
  local host=(-p trm-fw-embed)
  (cd firmware-examples && cargo fmt "${pk[@]}" -- --check) || fail firmware-fmt
  (cd firmware-examples && cargo clippy -q "${host[@]}" --all-targets -- -D warnings) || fail firmware-clippy
  (cd firmware-examples && cargo test -q "${host[@]}") || fail firmware-host-tests
  log "ok firmware host checks"
}

# The real boards build with their defaults (whatever TRM_* the caller set is ignored here).
build_boards() {
  local b
  for b in h743 pico; do
    (unset TRM_MODEL TRM_PUZZLES TRM_PUZZLES_N TRM_HALT TRM_STEP_DIGESTS TRM_GOLDEN
      select_board $b; build_firmware) >/dev/null || fail "board-$b"
    log "ok board $b"
  done
}

case "${1:-lib}" in
  lib) build_lib ;;
  firmware) select_board "${2:-}"; build_firmware; echo "$ROOT/$FW_ELF" ;;
  qemu) select_board "${2:-}"; build_firmware; run_qemu ;;
  boards) build_boards ;;
  all) build_lib; for b in mps2 riscv; do select_board $b; build_firmware; run_qemu; done; build_boards ;;
  check) host_check; build_boards ;;
  *) echo "usage: $0 [lib|firmware [mps2|riscv|h743|pico]|qemu [mps2|riscv]|boards|all|check]" >&2; exit 2 ;;
esac
