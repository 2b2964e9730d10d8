#!/usr/bin/env bash
# Project set-up: installs everything the workspace needs, idempotently.
#
#   scripts/setup.sh            host + microcontroller toolchains + libtorch venv
#   SKIP_TORCH=1 scripts/setup.sh   everything but the libtorch venv
#
# What it installs (and why):
#   * Debian: rustc-web cargo-web rust-web-src (Rust 1.96 with the std sources, used with
#     -Z build-std=core for the thumbv6m / thumbv7em / riscv32imc targets, since rustup cannot add
#     targets here), lld (linker for those targets), qemu-system-arm and qemu-system-misc (run the
#     firmware), libgloo-dev (Gloo headers for the c10d bridge), python3-venv; nodejs and npm
#     when `node` or `npm` is missing.
#   * firmware-examples/rp2040-pico/emu/node_modules: the rp2040js emulator (npm registry,
#     the version pinned in that folder's package-lock.json, `npm ci`), which runs the Pico
#     firmware in tests/tests/pico_rp2040js.rs.
#   * rustup components rustfmt and clippy for the host toolchain.
#   * .venv/ : a project-local Python venv with torch==2.13.0 (libtorch for tch).
# A second run only checks and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TORCH_VERSION=2.13.0
log() { printf '[setup] %s\n' "$*"; }

need_apt=()
for pkg in rustc-web cargo-web rust-web-src lld qemu-system-arm qemu-system-misc libgloo-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
else
  log "Debian packages present"
fi

# Node.js for the RP2040 emulator (any Node >= 18; Debian's, unless one is installed already).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing Debian packages: nodejs npm"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
EMU=firmware-examples/rp2040-pico/emu
# The installed rp2040js, if it is the locked version (else empty).
emu_installed() {
  (cd "$EMU" && node -e '
    const fs = require("fs");
    const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
    const want = lock.packages["node_modules/rp2040js"].version;
    const have = JSON.parse(fs.readFileSync("node_modules/rp2040js/package.json", "utf8")).version;
    if (have === want) console.log(have);' 2>/dev/null) || true
}
if [ -z "$(emu_installed)" ]; then
  log "installing the RP2040 emulator (npm ci in $EMU)"
  (cd "$EMU" && npm ci --no-audit --no-fund --loglevel=error)
  [ -n "$(emu_installed)" ] || { log "npm ci in $EMU did not install the locked rp2040js"; exit 1; }
else
  log "rp2040js $(emu_installed) present in $EMU"
fi

if command -v rustup >/dev/null 2>&1; then
  for comp in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$comp" || { log "adding rustup component $comp"; rustup component add "$comp"; }
  done
fi

# Disk: a clean clone needs about 15 GB (venv 5 GB, target/ ~8 GB, firmware 2.5 GB). Say so
# up front rather than fail half-way with ENOSPC.
free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
if [ -n "$free_kb" ] && [ "$free_kb" -lt $((15 * 1024 * 1024)) ]; then
  log "warning: only $((free_kb / 1024 / 1024)) GB free here; set-up, build and tests need about 15 GB"
fi

if [ "${SKIP_TORCH:-0}" != 1 ]; then
  PY=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    "$PY" -m venv .venv
  fi
  if ! .venv/bin/python -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null; then
    log "installing torch==$TORCH_VERSION into .venv (about 5 GB, a few minutes)"
    # No pip cache: it would hold a second copy of the ~3 GB of wheels.
    .venv/bin/python -m pip install -q --no-cache-dir --upgrade pip
    .venv/bin/python -m pip install -q --no-cache-dir "torch==$TORCH_VERSION" "cuda-toolkit[crt,cccl]" numpy safetensors
  else
    log "torch $TORCH_VERSION present in .venv"
  fi
  # A stable path to libtorch for the build (see .cargo/config.toml).
  TORCH_DIR=$(.venv/bin/python -c "import torch,os; print(os.path.dirname(torch.__file__))")
  ln -sfn "$TORCH_DIR" .venv/libtorch
fi
log "done"
