#!/usr/bin/env node
// Runs the rp2040-pico firmware (the ELF that `scripts/cross.sh firmware pico` builds, or a UF2)
// in the rp2040js emulator, core 0 only, and prints what the firmware writes to UART0.
//
//   node run.mjs <firmware.elf|firmware.uf2> [--max-cycles N] [--timeout-s S] [--quiet]
//
// Boot: rp2040js needs the RP2040's mask ROM, which no package registry ships. This runner
// stands in for it (see README.md): it checks boot2's CRC-32 as the ROM does, copies boot2 to
// SRAM 0x20041f00 and starts it there with lr = 0, as the ROM's flash boot does; boot2 (the
// firmware's own, W25Q080) then sets up the SSI for XIP and jumps through the vector table at
// 0x10000100. The ROM's function and data tables (memcpy, memset, the bit functions and the
// soft-float/soft-double tables that rp2040-hal calls) are served by a small ROM image whose
// entry points are `bkpt` traps, executed here in JavaScript: each ROM call counts as one
// emulated cycle (the call itself, its argument set-up and return are emulated as usual).
//
// Output: the firmware's UART0 lines on stdout, as it sends them (CR LF -> LF); then
// `# rp2040js ...` lines: per solve the emulated cycles per ACT step, the ROM calls, the total
// cycles, and the wall time. Exit status: 0 when the firmware's last line is
// `# done: no errors`; 1 when it reports errors (a model the reader rejects, a golden mismatch);
// 2 when the run itself fails (boot, a fault or panic, an unimplemented instruction, an access
// to unmapped memory, the cycle or time limit), with the reason on stderr.

import { readFileSync } from 'node:fs';
import { RP2040 } from 'rp2040js';

const FLASH_BASE = 0x10000000;
const SRAM_BASE = 0x20000000;
/** Where the ROM copies boot2 (the last 256 bytes of SRAM5) and runs it from. */
const BOOT2_SRAM = 0x20041f00;

// ---------------------------------------------------------------------------------------------
// Arguments

function usage(msg) {
  if (msg) process.stderr.write(`run.mjs: ${msg}\n`);
  process.stderr.write(
    'usage: node run.mjs <firmware.elf|firmware.uf2> [--max-cycles N] [--timeout-s S] [--quiet]\n',
  );
  process.exit(2);
}

const opts = { image: null, maxCycles: 200e9, timeoutS: 1800, quiet: false };
{
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--max-cycles') opts.maxCycles = Number(args[++i]);
    else if (a === '--timeout-s') opts.timeoutS = Number(args[++i]);
    else if (a === '--quiet') opts.quiet = true;
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else if (opts.image === null) opts.image = a;
    else usage('one image only');
  }
  if (opts.image === null) usage('no image');
  if (!(opts.maxCycles > 0) || !(opts.timeoutS > 0)) usage('limits must be positive numbers');
}

/** Ends the run with exit status 2 and the reason. */
class RunFailure extends Error {}

function fail(msg) {
  throw new RunFailure(msg);
}

const hex = (v, w = 8) => `0x${(v >>> 0).toString(16).padStart(w, '0')}`;

// ---------------------------------------------------------------------------------------------
// Loading the image into flash

/** The PT_LOAD segments of a 32-bit little-endian ARM ELF, at their load (physical) addresses. */
function elfSegments(buf) {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (dv.getUint32(0, false) !== 0x7f454c46) fail('not an ELF file');
  if (buf[4] !== 1 || buf[5] !== 1) fail('not a 32-bit little-endian ELF');
  if (dv.getUint16(18, true) !== 40) fail('not an ARM ELF');
  const phoff = dv.getUint32(28, true);
  const phentsize = dv.getUint16(42, true);
  const phnum = dv.getUint16(44, true);
  const segs = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    if (dv.getUint32(o, true) !== 1) continue; // PT_LOAD
    const offset = dv.getUint32(o + 4, true);
    const paddr = dv.getUint32(o + 12, true);
    const filesz = dv.getUint32(o + 16, true);
    if (filesz === 0) continue; // .bss, .uninit: nothing in flash
    if (offset + filesz > buf.length) fail(`ELF segment ${i} runs past the end of the file`);
    segs.push({ addr: paddr, data: buf.subarray(offset, offset + filesz) });
  }
  return segs;
}

/** The 256-byte payloads of a UF2 file for the RP2040 (family 0xe48bff56). */
function uf2Segments(buf) {
  if (buf.length % 512 !== 0) fail('UF2 file size is not a multiple of 512');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const segs = [];
  for (let o = 0; o < buf.length; o += 512) {
    const ok =
      dv.getUint32(o, true) === 0x0a324655 &&
      dv.getUint32(o + 4, true) === 0x9e5d5157 &&
      dv.getUint32(o + 508, true) === 0x0ab16f30;
    if (!ok) fail(`UF2 block at ${o}: bad magic`);
    const flags = dv.getUint32(o + 8, true);
    if (flags & 1) continue; // not for the main flash
    if (flags & 0x2000 && dv.getUint32(o + 28, true) !== 0xe48bff56) continue; // another family
    const addr = dv.getUint32(o + 12, true);
    const size = dv.getUint32(o + 16, true);
    if (size > 476) fail(`UF2 block at ${o}: payload of ${size} bytes`);
    segs.push({ addr, data: buf.subarray(o + 32, o + 32 + size) });
  }
  return segs;
}

function loadImage(mcu, path) {
  let buf;
  try {
    buf = readFileSync(path);
  } catch (e) {
    fail(`cannot read ${path}: ${e.message}`);
  }
  const segs = buf.length >= 4 && buf.readUInt32BE(0) === 0x7f454c46 ? elfSegments(buf) : uf2Segments(buf);
  let bytes = 0;
  for (const { addr, data } of segs) {
    const off = addr - FLASH_BASE;
    if (off < 0 || off + data.length > mcu.flash.length) {
      fail(`segment at ${hex(addr)} (${data.length} bytes) is outside the flash`);
    }
    mcu.flash.set(data, off);
    bytes += data.length;
  }
  if (bytes === 0) fail('the image has nothing to load into flash');
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// The boot ROM stand-in

/** CRC-32 as the boot ROM checks boot2: polynomial 0x04c11db7, MSB first, seed 0xffffffff, no
 * final XOR. */
function crc32Boot2(bytes) {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b << 24;
    for (let k = 0; k < 8; k++) crc = crc & 0x80000000 ? (crc << 1) ^ 0x04c11db7 : crc << 1;
  }
  return crc >>> 0;
}

const f32 = new Float32Array(1);
const f32u = new Uint32Array(f32.buffer);
const f64 = new Float64Array(1);
const f64u = new Uint32Array(f64.buffer); // [low word, high word] (little-endian host)

/** Denormal inputs count as zero (the ROM's soft float flushes them). */
function argF(bits) {
  bits >>>= 0;
  if ((bits & 0x7f800000) === 0) bits &= 0x80000000;
  f32u[0] = bits;
  return f32[0];
}
/** A float result, rounded to single precision, denormals flushed to (signed) zero. */
function retF(x) {
  f32[0] = x;
  let bits = f32u[0];
  if ((bits & 0x7f800000) === 0) bits &= 0x80000000;
  return bits >>> 0;
}
function argD(lo, hi) {
  hi >>>= 0;
  if ((hi & 0x7ff00000) === 0) {
    hi &= 0x80000000;
    lo = 0;
  }
  f64u[0] = lo >>> 0;
  f64u[1] = hi;
  return f64[0];
}
function retD(x) {
  f64[0] = x;
  let lo = f64u[0];
  let hi = f64u[1];
  if ((hi & 0x7ff00000) === 0) {
    hi &= 0x80000000;
    lo = 0;
  }
  return [lo >>> 0, hi >>> 0];
}
const toI64 = (lo, hi) => (BigInt(hi | 0) << 32n) | BigInt(lo >>> 0);
const toU64 = (lo, hi) => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
const fromI64 = (v) => [Number(BigInt.asUintN(32, v)), Number(BigInt.asUintN(32, v >> 32n))];
/** Rounds towards -infinity and clamps to [lo, hi], as the ROM's float->int functions do. */
function floorClamp(x, lo, hi) {
  if (Number.isNaN(x)) return 0;
  const v = Math.floor(x);
  return v < lo ? lo : v > hi ? hi : v;
}
function floorClampBig(x, lo, hi) {
  if (Number.isNaN(x)) return 0n;
  const v = Math.floor(x);
  if (v <= Number(lo)) return lo;
  if (v >= Number(hi)) return hi;
  return BigInt(v);
}
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const U64_MAX = (1n << 64n) - 1n;
const pow2 = (n) => 2 ** (n | 0);

/**
 * The ROM functions: name -> (regs, mcu) => void, setting r0 (and r1). Float functions take and
 * return bit patterns in the core registers (the AAPCS soft-float convention the ROM uses).
 */
function romFunctions(mcu) {
  const u8 = (a) => mcu.readUint8(a >>> 0);
  const w8 = (a, v) => mcu.writeUint8(a >>> 0, v & 0xff);
  const inSram = (a, n) => a >= SRAM_BASE && a + n <= SRAM_BASE + mcu.sram.length;
  const inFlash = (a, n) => a >= FLASH_BASE && a + n <= FLASH_BASE + mcu.flash.length;
  function copy(dst, src, n) {
    if (inSram(dst, n) && inSram(src, n)) {
      mcu.sram.copyWithin(dst - SRAM_BASE, src - SRAM_BASE, src - SRAM_BASE + n);
    } else if (inSram(dst, n) && inFlash(src, n)) {
      mcu.sram.set(mcu.flash.subarray(src - FLASH_BASE, src - FLASH_BASE + n), dst - SRAM_BASE);
    } else {
      for (let i = 0; i < n; i++) w8(dst + i, u8(src + i));
    }
  }
  function fill(dst, c, n) {
    if (inSram(dst, n)) mcu.sram.fill(c & 0xff, dst - SRAM_BASE, dst - SRAM_BASE + n);
    else for (let i = 0; i < n; i++) w8(dst + i, c);
  }
  const f1 = (op) => (r) => {
    r[0] = retF(op(argF(r[0])));
  };
  const f2 = (op) => (r) => {
    r[0] = retF(op(argF(r[0]), argF(r[1])));
  };
  const d1 = (op) => (r) => {
    [r[0], r[1]] = retD(op(argD(r[0], r[1])));
  };
  const d2 = (op) => (r) => {
    [r[0], r[1]] = retD(op(argD(r[0], r[1]), argD(r[2], r[3])));
  };
  const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  const set64 = (r, v) => {
    [r[0], r[1]] = fromI64(v);
  };
  return {
    // Function table (datasheet 2.8.3.1.2).
    P3: (r) => {
      let x = r[0] >>> 0;
      let n = 0;
      while (x) {
        n += x & 1;
        x >>>= 1;
      }
      r[0] = n;
    },
    R3: (r) => {
      let x = r[0] >>> 0;
      let y = 0;
      for (let i = 0; i < 32; i++) {
        y = (y << 1) | (x & 1);
        x >>>= 1;
      }
      r[0] = y >>> 0;
    },
    L3: (r) => {
      r[0] = Math.clz32(r[0]);
    },
    T3: (r) => {
      const x = r[0] >>> 0;
      r[0] = x === 0 ? 32 : 31 - Math.clz32(x & -x);
    },
    MS: (r) => fill(r[0], r[1], r[2] >>> 0), // memset(ptr, c, n) -> ptr
    S4: (r) => fill(r[0], r[1], r[2] >>> 0), // memset4(ptr, c, n) -> ptr
    MC: (r) => copy(r[0], r[1], r[2] >>> 0), // memcpy(dest, src, n) -> dest
    C4: (r) => copy(r[0], r[1], r[2] >>> 0), // memcpy44(dest, src, n) -> dest
    // Soft float table (2.8.3.2.1): offset -> function.
    'SF+0x00': f2((a, b) => a + b),
    'SF+0x04': f2((a, b) => a - b),
    'SF+0x08': f2((a, b) => a * b),
    'SF+0x0c': f2((a, b) => a / b),
    'SF+0x18': f1(Math.sqrt),
    'SF+0x1c': (r) => {
      r[0] = floorClamp(argF(r[0]), -0x80000000, 0x7fffffff) >>> 0;
    },
    'SF+0x20': (r) => {
      r[0] = floorClamp(argF(r[0]) * pow2(r[1]), -0x80000000, 0x7fffffff) >>> 0;
    },
    'SF+0x24': (r) => {
      r[0] = floorClamp(argF(r[0]), 0, 0xffffffff) >>> 0;
    },
    'SF+0x28': (r) => {
      r[0] = floorClamp(argF(r[0]) * pow2(r[1]), 0, 0xffffffff) >>> 0;
    },
    'SF+0x2c': (r) => {
      r[0] = retF(r[0] | 0);
    },
    'SF+0x30': (r) => {
      r[0] = retF((r[0] | 0) / pow2(r[1]));
    },
    'SF+0x34': (r) => {
      r[0] = retF(r[0] >>> 0);
    },
    'SF+0x38': (r) => {
      r[0] = retF((r[0] >>> 0) / pow2(r[1]));
    },
    'SF+0x3c': f1(Math.cos),
    'SF+0x40': f1(Math.sin),
    'SF+0x44': f1(Math.tan),
    'SF+0x4c': f1(Math.exp),
    'SF+0x50': f1(Math.log),
    'SF+0x54': (r) => {
      r[0] = cmp(argF(r[0]), argF(r[1])) >>> 0;
    },
    'SF+0x58': f2((y, x) => Math.atan2(y, x)),
    'SF+0x5c': (r) => {
      r[0] = retF(Number(toI64(r[0], r[1])));
    },
    'SF+0x64': (r) => {
      r[0] = retF(Number(toU64(r[0], r[1])));
    },
    'SF+0x6c': (r) => set64(r, floorClampBig(argF(r[0]), I64_MIN, I64_MAX)),
    'SF+0x74': (r) => set64(r, floorClampBig(argF(r[0]), 0n, U64_MAX)),
    'SF+0x7c': (r) => {
      [r[0], r[1]] = retD(argF(r[0]));
    },
    // Soft double table (2.8.3.3.1).
    'SD+0x00': d2((a, b) => a + b),
    'SD+0x04': d2((a, b) => a - b),
    'SD+0x08': d2((a, b) => a * b),
    'SD+0x0c': d2((a, b) => a / b),
    'SD+0x18': d1(Math.sqrt),
    'SD+0x1c': (r) => {
      r[0] = floorClamp(argD(r[0], r[1]), -0x80000000, 0x7fffffff) >>> 0;
    },
    'SD+0x24': (r) => {
      r[0] = floorClamp(argD(r[0], r[1]), 0, 0xffffffff) >>> 0;
    },
    'SD+0x2c': (r) => {
      [r[0], r[1]] = retD(r[0] | 0);
    },
    'SD+0x34': (r) => {
      [r[0], r[1]] = retD(r[0] >>> 0);
    },
    'SD+0x3c': d1(Math.cos),
    'SD+0x40': d1(Math.sin),
    'SD+0x44': d1(Math.tan),
    'SD+0x4c': d1(Math.exp),
    'SD+0x50': d1(Math.log),
    'SD+0x54': (r) => {
      r[0] = cmp(argD(r[0], r[1]), argD(r[2], r[3])) >>> 0;
    },
    'SD+0x5c': (r) => {
      [r[0], r[1]] = retD(Number(toI64(r[0], r[1])));
    },
    'SD+0x64': (r) => {
      [r[0], r[1]] = retD(Number(toU64(r[0], r[1])));
    },
    'SD+0x6c': (r) => set64(r, floorClampBig(argD(r[0], r[1]), I64_MIN, I64_MAX)),
    'SD+0x74': (r) => set64(r, floorClampBig(argD(r[0], r[1]), 0n, U64_MAX)),
    'SD+0x7c': (r) => {
      r[0] = retF(argD(r[0], r[1]));
    },
  };
}

/** The ROM's function-table codes; each gets an entry point (a trap) in the stand-in ROM. */
const FUNC_CODES = [
  'P3', 'R3', 'L3', 'T3', 'MS', 'S4', 'MC', 'C4', 'IF', 'EX', 'RE', 'RP', 'FC', 'CX', 'UB',
  'DT', 'DE', 'WV',
];

/**
 * Writes the stand-in ROM into rp2040js's boot ROM array (16 KiB at 0x0): the header the SDKs
 * read (magic 'Mu' 0x01, version, the function table, the data table and the lookup function,
 * as 16-bit pointers at 0x14, 0x16, 0x18), tables of (code, pointer) pairs, the soft-float and
 * soft-double tables (pointers), and one `bkpt` trap per entry point. Returns
 * trap address -> name.
 */
function buildRom(mcu) {
  const rom = new Uint8Array(16 * 1024);
  const dv = new DataView(rom.buffer);
  const traps = new Map();
  let nextTrap = 0x1000;
  const trap = (name) => {
    const at = nextTrap;
    nextTrap += 2;
    dv.setUint16(at, 0xbe00, true); // bkpt #0
    traps.set(at, name);
    return at | 1;
  };
  dv.setUint32(0x00, 0x20042000, true); // initial SP (unused: the runner sets the registers)
  dv.setUint32(0x04, trap('reset') >>> 0, true);
  rom.set([0x4d, 0x75, 0x01, 0x03], 0x10); // 'M' 'u' 0x01, ROM version 3 (RP2040-B2)
  const FUNC_TABLE = 0x100;
  const DATA_TABLE = 0x200;
  dv.setUint16(0x14, FUNC_TABLE, true);
  dv.setUint16(0x16, DATA_TABLE, true);
  dv.setUint16(0x18, trap('rom_table_lookup'), true);
  const code = (s) => s.charCodeAt(0) | (s.charCodeAt(1) << 8);
  let o = FUNC_TABLE;
  for (const c of FUNC_CODES) {
    dv.setUint16(o, code(c), true);
    dv.setUint16(o + 2, trap(c), true);
    o += 4;
  }
  dv.setUint16(o, 0, true);
  // Data: the soft-float (SF) and soft-double (SD) tables, a copyright string, a git revision.
  const SF = 0x400;
  const SD = 0x500;
  const CR = 0x600;
  const GR = 0x6f0;
  for (let i = 0; i < 32; i++) {
    const off = hex(i * 4, 2);
    dv.setUint32(SF + i * 4, trap(`SF+${off}`) >>> 0, true);
    dv.setUint32(SD + i * 4, trap(`SD+${off}`) >>> 0, true);
  }
  const text = 'trm-rs rp2040js runner: boot ROM stand-in (not the Raspberry Pi ROM)\0';
  for (let i = 0; i < text.length; i++) rom[CR + i] = text.charCodeAt(i);
  o = DATA_TABLE;
  for (const [c, p] of [['SF', SF], ['SD', SD], ['CR', CR], ['GR', GR]]) {
    dv.setUint16(o, code(c), true);
    dv.setUint16(o + 2, p, true);
    o += 4;
  }
  dv.setUint16(o, 0, true);
  if (nextTrap > rom.length) fail('stand-in ROM overflow');
  mcu.bootrom.set(new Uint32Array(rom.buffer));
  return traps;
}

// ---------------------------------------------------------------------------------------------
// The run

const t0 = Date.now();
let mcu;
const warnings = new Map(); // message -> count
const romCalls = new Map(); // name -> count
let uartText = '';
let pending = '';
let doneLine = null;
const cyclesLines = [];

try {
  mcu = new RP2040();
  // rp2040js logs to the console; here: faults stop the run, the rest is counted and reported.
  const fatal = [
    /Read from invalid memory address/,
    /Write to undefined address/,
    /not 32 bit aligned/,
    /is not implemented yet/,
    /^Opcode:/,
  ];
  const note = (level) => (component, message) => {
    const text = `[${component}] ${message}`;
    if (level === 'error' || fatal.some((re) => re.test(message))) {
      fail(`emulator: ${text} (pc ${hex(mcu.core.PC)})`);
    }
    if (level === 'warn') warnings.set(text, (warnings.get(text) ?? 0) + 1);
  };
  mcu.logger = { debug: () => {}, info: () => {}, warn: note('warn'), error: note('error') };

  const traps = buildRom(mcu);
  const rom = romFunctions(mcu);
  const loaded = loadImage(mcu, opts.image);

  // What the ROM's flash boot does before boot2 (datasheet 2.8.1): check the CRC-32 of boot2
  // (the first 252 bytes of flash against the word after them), copy the 256 bytes to the top
  // of SRAM5 and enter them in Thumb state with lr = 0 (boot2 then vectors into the flash
  // image instead of returning).
  const boot2 = mcu.flash.subarray(0, 256);
  const want = new DataView(boot2.buffer, boot2.byteOffset + 252, 4).getUint32(0, true);
  const got = crc32Boot2(boot2.subarray(0, 252));
  if (got !== want) {
    fail(`boot2: CRC-32 ${hex(got)} of flash[0..252] is not ${hex(want)}: the ROM would not boot it`);
  }
  mcu.sram.set(boot2, BOOT2_SRAM - SRAM_BASE);
  const core = mcu.core;
  core.VTOR = 0;
  core.SP = BOOT2_SRAM;
  core.LR = 0;
  core.PC = BOOT2_SRAM;

  // ROM calls: the trap is at PC - 2 after the bkpt; a bkpt or udf anywhere else is the
  // firmware's (panic-probe ends a panic with `udf`).
  mcu.onBreak = (imm) => {
    const at = (core.PC - 2) >>> 0;
    const name = traps.get(at);
    if (name === undefined) {
      fail(`firmware stopped at ${hex(at)} (bkpt/udf #${imm}): a panic or a fault; its message is in the defmt (RTT) log`);
    }
    romCalls.set(name, (romCalls.get(name) ?? 0) + 1);
    const r = core.registers;
    if (name === 'rom_table_lookup') {
      // (table: *const u16, code: u32) -> pointer or 0
      let p = r[0] >>> 0;
      let found = 0;
      for (;;) {
        const c = mcu.readUint16(p);
        if (c === 0) break;
        if (c === (r[1] & 0xffff)) {
          found = mcu.readUint16(p + 2);
          break;
        }
        p += 4;
      }
      r[0] = found;
    } else {
      const fn = rom[name];
      if (fn === undefined) fail(`ROM function ${name} called (lr ${hex(core.LR)}): not provided by the stand-in ROM`);
      fn(r, mcu);
    }
    core.PC = core.LR & ~1;
  };

  if (!opts.quiet) {
    process.stderr.write(`# rp2040js: ${opts.image}: ${loaded} bytes in flash, boot2 CRC ok\n`);
  }

  // UART0 (GP0): lines to stdout as they come; the runner stops at the firmware's `# done:`.
  mcu.uart[0].onByte = (b) => {
    const ch = String.fromCharCode(b);
    if (ch === '\r') return;
    if (ch !== '\n') {
      pending += ch;
      return;
    }
    const line = pending;
    pending = '';
    uartText += `${line}\n`;
    process.stdout.write(`${line}\n`);
    if (line.startsWith('TRM-CYCLES ')) cyclesLines.push({ line, clkSys: mcu.clkSys });
    if (line.startsWith('# done:')) doneLine = line;
  };

  // Core 0, instruction by instruction: the emulated clock advances by the instruction's cycles
  // at clk_sys (so the TIMER's microseconds are emulated time); WFI/WFE skip to the next alarm.
  const clock = mcu.clock;
  let nsPerCycle = 1e9 / mcu.clkSys;
  mcu.addClockListener((hz) => {
    nsPerCycle = 1e9 / hz;
  });
  const deadline = t0 + opts.timeoutS * 1000;
  while (doneLine === null) {
    for (let i = 0; i < 200000 && doneLine === null; i++) {
      if (core.waiting) {
        const ns = clock.nanosToNextAlarm;
        if (ns <= 0) fail(`the core waits (WFI/WFE at ${hex(core.PC)}) and nothing will wake it`);
        clock.tick(ns);
      } else {
        clock.tick(core.executeInstruction() * nsPerCycle);
      }
    }
    if (core.cycles > opts.maxCycles) fail(`no '# done:' line after ${core.cycles} cycles (--max-cycles)`);
    if (Date.now() > deadline) fail(`no '# done:' line after ${opts.timeoutS} s (--timeout-s)`);
  }
} catch (e) {
  if (pending) process.stdout.write(`${pending}\n`);
  // Anything else thrown (by rp2040js or this runner) is a failed run too, never exit 1.
  const why = e instanceof RunFailure ? e.message : `internal error: ${e?.stack ?? e}`;
  process.stderr.write(`# rp2040js: FAILED: ${why}\n`);
  report(process.stderr);
  process.exit(2);
}

report(process.stdout);
process.exit(doneLine === '# done: no errors' ? 0 : 1);

/** The figures: cycles per ACT step per solve, ROM calls, total cycles, wall time. */
function report(out) {
  if (!mcu) return;
  for (const { line, clkSys } of cyclesLines) {
    const f = Object.fromEntries(line.split(' ').slice(1).map((kv) => kv.split('=')));
    if (f.unit !== 'us') continue;
    const perStep = Math.round((Number(f.per_step) * clkSys) / 1e6);
    out.write(`# rp2040js cycles puzzle=${f.puzzle} steps=${f.steps} per_step=${perStep}\n`);
  }
  const calls = [...romCalls].map(([k, v]) => `${k}:${v}`).join(' ');
  out.write(`# rp2040js rom_calls ${calls || 'none'}\n`);
  for (const [text, n] of warnings) out.write(`# rp2040js warning x${n}: ${text}\n`);
  const s = (Date.now() - t0) / 1000;
  const c = mcu.core.cycles;
  out.write(
    `# rp2040js total cycles=${c} clk_sys=${mcu.clkSys} wall_s=${s.toFixed(1)} mcycles_per_s=${(c / s / 1e6).toFixed(1)}\n`,
  );
}
