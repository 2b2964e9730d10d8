#!/usr/bin/env bash
# Builds firmware-examples/qemu-kernel-check with Debian's Rust (-Z build-std=core, as
# scripts/cross.sh does) and runs it on QEMU's mps2-an386 (Cortex-M4F) with `-icount shift=0`:
# trm-nostd's Arm DSP kernels (SMLAD / SMLALD via asm!) against the portable reference kernels
# on randomized inputs, then the instructions per multiply-accumulate of the integer
# matrix-vector product (TRM-KCOST lines; one SysTick tick = 40 instructions under -icount 0).
#
#   scripts/kernel-check.sh        exit status 0 when every comparison matched, 1 otherwise
#
# QEMU_TIMEOUT (seconds, default 300) bounds the QEMU run.
set -uo pipefail
cd "$(dirname "$0")/.."
log() { printf '[kernel-check] %s\n' "$*" >&2; }
fail() { log "FAILED step '$1'${2:+: $2}"; exit 1; }

[ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] ||
  fail toolchain "Debian's cargo/rustc are missing: run scripts/setup.sh"
command -v ld.lld >/dev/null || fail toolchain "ld.lld is missing (package lld)"
command -v qemu-system-arm >/dev/null || fail toolchain "qemu-system-arm is missing"

# A clean environment for Debian's cargo (nothing from rustup or a calling cargo), as in
# scripts/cross.sh.
keep=(HOME="$HOME" PATH=/usr/bin:/bin:/usr/sbin:/sbin RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
  RUSTC_BOOTSTRAP=1 CARGO_TERM_COLOR=never)
for v in $(compgen -e); do
  case "$v" in
    CARGO_HOME|CARGO_NET_*|CARGO_HTTP_*|CARGO_REGISTRIES_*|CARGO_REGISTRY_*|CARGO_SOURCE_*) keep+=("$v=${!v}") ;;
    http_proxy|https_proxy|no_proxy|HTTP_PROXY|HTTPS_PROXY|NO_PROXY|SSL_CERT_FILE|SSL_CERT_DIR) keep+=("$v=${!v}") ;;
  esac
done

t0=$SECONDS
(cd firmware-examples/qemu-kernel-check && env -i "${keep[@]}" /usr/bin/cargo build --release -q) ||
  fail build "firmware-examples/qemu-kernel-check"
ELF=firmware-examples/target/thumbv7em-none-eabihf/release/trm-fw-qemu-kernel-check
[ -f "$ELF" ] || fail build "no ELF at $ELF"
log "ok build ($((SECONDS - t0))s): $ELF"

t0=$SECONDS
timeout "${QEMU_TIMEOUT:-300}" qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -icount shift=0 \
  -nographic -semihosting-config enable=on,target=native -kernel "$ELF"
rc=$?
log "qemu exited with $rc after $((SECONDS - t0))s"
[ $rc -eq 124 ] && fail qemu "timed out after ${QEMU_TIMEOUT:-300}s"
[ $rc -eq 0 ] || fail qemu "firmware exit status $rc (a kernel mismatch or a fault: see the TRM- lines)"
log "ok: DSP kernels equal the reference kernels"
