//! trm-nostd's Arm DSP kernels against the portable reference kernels, on QEMU's mps2-an386
//! (Cortex-M4F), plus their cost in instructions per multiply-accumulate.
//!
//! 1. Randomized comparisons (xorshift32, fixed seed): `Isa::ArmDsp` and the engine's dispatch
//!    (`optimized::dot_w8_a16`, `optimized::dot_a16_a16`) against `Isa::Portable` for random
//!    lengths (every tail length mod 4 and mod the 256-element i32 chunk), random values and
//!    the extremes (-128 / 127 weights, -32768 / 32767 activations); and the int16-weight
//!    kernel (`Isa::ArmDsp.dot_w16_a16`, `optimized::dot_w16_a16`: little-endian byte pairs
//!    read as `&[i16]` at an even address, the reference at an odd one) against the reference
//!    `kernels::dot_w16_a16`, at both address parities, odd byte lengths included, weights
//!    -32768 / 32767 among the values. Then one line:
//!
//!    `TRM-KERNELS isa=arm-dsp selected=<isa> cases=<n> elements=<n> mismatches=<n>`
//!
//! 1b. The engine's matrix products (`optimized::matmul`, raw sums: exact `i64` per output)
//!    with `Isa::ArmDsp` (the blocked path: activation rows packed four at a time into the
//!    scratch; one row alone, three weight rows per pass) against `Isa::Portable`, for random
//!    shapes (one activation row every fourth case, 1..=9 otherwise, and 129..=140
//!    past one pass of the path's sums; every column count mod 4, past the 256-column chunk), random and extreme values, scratch at both word
//!    parities and too short (the per-output fallback); the same products through the
//!    requantizing epilogues too (`Sat16`, `Residual`: a random channel table, shifts on both
//!    sides of the 32..=62 high-word path, output strides past the row length). Then one line:
//!
//!    `TRM-MATMUL cases=<n> outputs=<n> mismatches=<n>`
//!
//! 2. The integer matrix-vector product of the engine (`rows` outputs, each `dot_w8_a16` of an
//!    int8 weight row with an int16 vector, as `FixedEngine` computes every projection; or
//!    `dot_w16_a16` of an int16 row, `kernel=matvec_w16_a16`), timed with SysTick on the core
//!    clock, for each implementation and a few shapes:
//!
//!    `TRM-KCOST kernel=<name> isa=<isa> rows=<r> cols=<c> macs=<n> ticks=<t> instr_per_mac=<x.yy>`
//!
//!    then, for the int8 shapes, the engine's product with one activation row
//!    (`optimized::matmul`, raw sums, `kernel=matmul_w8_a16 ... count=1`: on Arm with DSP three
//!    weight rows per pass sharing each activation load), and the blocked product
//!    (`kernel=matmul_w8_a16`, 83 activation rows: a Sudoku sequence with 2 prefix tokens) of a
//!    256 x 64 and a 64 x 83 matrix, raw sums, for both implementations.
//!
//! How the counting works: under `qemu-system-arm -icount shift=0` QEMU advances virtual time
//! by exactly 2^0 = 1 ns per executed instruction, and the mps2-an386 SysTick runs on the 25 MHz
//! core clock, so one tick is exactly 40 instructions (and the same program gives the same
//! count on every run, whatever the host's load). `instr_per_mac = ticks * 40 / macs`, with the
//! ticks of an empty measurement subtracted. These are instructions, not Cortex-M4 cycles
//! (`SMLAD` is 1 cycle, loads 2; QEMU has no cycle model). Without `-icount` the ticks follow
//! host time and the line says so (`icount=unknown` is not detectable from inside, so the
//! numbers are only meaningful with the option, which `scripts/kernel-check.sh` passes).
//!
//! Exit status 0 when every comparison matched, 1 otherwise (semihosting).
#![no_std]
#![no_main]

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::{debug, hio};
use trm_nostd::fixed::kernels::{self, Requant};
use trm_nostd::fixed::optimized::{self, Epilogue, Isa, Matrix, Rows};
use trm_nostd::fixed::tables::Words;

/// SysTick reload: the full 24-bit range.
const SYST_RELOAD: u32 = 0x00FF_FFFF;
/// Instructions per SysTick tick under `-icount shift=0` (1 ns per instruction, 25 MHz clock).
const INSTR_PER_TICK: u64 = 40;
/// Largest vector of the randomized comparisons.
const MAX_LEN: usize = 2100;
/// The matrix of the cost measurement: up to 512 x 512 (the D=512 projections).
const MAT_MAX: usize = 512 * 512;

/// SysTick wraps since start (the high bits of the tick count).
static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::AcqRel);
}

/// SysTick ticks since start, 64-bit.
fn now() -> u64 {
    loop {
        let hi = WRAPS.load(Ordering::Acquire);
        let cur = SYST::get_current();
        if WRAPS.load(Ordering::Acquire) == hi {
            return ((hi as u64) << 24) | (SYST_RELOAD - cur) as u64;
        }
    }
}

/// Semihosting stdout, one line at a time.
struct Out(Option<hio::HostStream>);

impl core::fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if let Some(h) = self.0.as_mut() {
            // Nothing useful to do if the host refuses output.
            let _ = h.write_all(s.as_bytes());
        }
        Ok(())
    }
}

/// xorshift32 (Marsaglia): small and good enough to draw test vectors.
struct XorShift(u32);

impl XorShift {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

/// Fills the vectors with one of four value kinds: uniform, extremes, small, all minimum.
fn fill(rng: &mut XorShift, w: &mut [u8], a: &mut [i16], b: &mut [i16]) {
    let kind = rng.below(4);
    let pick16 = |rng: &mut XorShift| -> i16 {
        match kind {
            0 => rng.next() as i16,
            1 => {
                if rng.next() & 1 == 0 {
                    i16::MIN
                } else {
                    i16::MAX
                }
            }
            2 => (rng.below(7) as i16) - 3,
            _ => i16::MIN,
        }
    };
    for v in a.iter_mut() {
        *v = pick16(rng);
    }
    for v in b.iter_mut() {
        *v = pick16(rng);
    }
    for v in w.iter_mut() {
        *v = match kind {
            0 => rng.next() as u8,
            1 => {
                if rng.next() & 1 == 0 {
                    0x80
                } else {
                    0x7f
                }
            }
            2 => (rng.below(5) as i8 - 2) as u8,
            _ => 0x80,
        };
    }
}

/// int16 weights as little-endian byte pairs (a trailing odd byte gets a random value), one of
/// the value kinds of `fill`.
fn fill_w16(rng: &mut XorShift, bytes: &mut [u8]) {
    let kind = rng.below(4);
    for p in bytes.chunks_mut(2) {
        let v: i16 = match kind {
            0 => rng.next() as i16,
            1 => {
                if rng.next() & 1 == 0 {
                    i16::MIN
                } else {
                    i16::MAX
                }
            }
            2 => (rng.below(7) as i16) - 3,
            _ => i16::MIN,
        };
        let b = v.to_le_bytes();
        p.copy_from_slice(&b[..p.len()]);
    }
}

/// The engine's matrix-vector product with one implementation: `out[o] = requant(W[o] . a)`,
/// int8 weights, or int16 little-endian pairs when `wide` (the shift 8 larger).
fn matvec(isa: Isa, w: &[u8], rows: usize, cols: usize, wide: bool, a: &[i16], out: &mut [i16]) {
    let rq = Requant {
        mult: 1 << 30,
        shift: if wide { 48 } else { 40 },
    };
    let n = if wide { 2 * cols } else { cols };
    for (o, y) in out.iter_mut().enumerate().take(rows) {
        let row = w.get(o * n..(o + 1) * n).unwrap_or(&[]);
        let acc = if wide {
            isa.dot_w16_a16(row, a)
        } else {
            isa.dot_w8_a16(row, a).unwrap_or(0)
        };
        *y = kernels::sat16(rq.apply(acc));
    }
}

/// Instructions per multiply-accumulate of `ticks` SysTick ticks over `macs` MACs, shown with
/// two decimals (`x.yy`).
struct PerMac {
    ticks: u64,
    macs: u64,
}

impl core::fmt::Display for PerMac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let hundredths = self.ticks * INSTR_PER_TICK * 100 / self.macs.max(1);
        write!(f, "{}.{:02}", hundredths / 100, hundredths % 100)
    }
}

fn exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    // Only reached under a debugger that resumes after the exit request.
    loop {
        cortex_m::asm::wfi();
    }
}

#[entry]
fn main() -> ! {
    // cortex-m-rt turns these into `&'static mut` taken once: no unsafe.
    static mut W: [u8; MAT_MAX] = [0; MAT_MAX];
    static mut A: [i16; MAX_LEN] = [0; MAX_LEN];
    static mut B: [i16; MAX_LEN] = [0; MAX_LEN];
    static mut OUT_P: [i16; 512] = [0; 512];
    static mut OUT_D: [i16; 512] = [0; 512];
    static mut SUMS_P: [i64; 9 * 64] = [0; 9 * 64];
    static mut SUMS_D: [i64; 9 * 64] = [0; 9 * 64];
    static mut SUMS: [i64; 256 * 83] = [0; 256 * 83];
    static mut SEQ: [i16; 83 * 83] = [0; 83 * 83];
    static mut SCRATCH: [i16; 7000] = [0; 7000];
    static mut TABLE: [u8; 4 * (1 + 2 * 64)] = [0; 4 * (1 + 2 * 64)];
    static mut EPI_P: [i16; 1200] = [0; 1200];
    static mut EPI_D: [i16; 1200] = [0; 1200];
    static mut RES_P: [i32; 1200] = [0; 1200];
    static mut RES_D: [i32; 1200] = [0; 1200];
    static mut RES_H: [i16; 1200] = [0; 1200];

    let mut out = Out(hio::hstdout().ok());
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        let _ = writeln!(
            out,
            "TRM-ERROR stage=board msg=core peripherals already taken"
        );
        exit(false)
    };
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(SYST_RELOAD);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();

    let dsp = Isa::ArmDsp.is_supported();
    let selected = optimized::selected();
    let _ = writeln!(
        out,
        "TRM-BANNER app=qemu-kernel-check board=qemu-mps2-an386 dsp={dsp} selected={}",
        selected.name()
    );

    // 1. Randomized comparisons.
    let mut rng = XorShift(0x2545_f491);
    let (mut cases, mut elements, mut mismatches) = (0u32, 0u64, 0u32);
    for case in 0..1500u32 {
        // Mostly short (every tail), every 16th case across several i32 chunks.
        let n = if case % 16 == 0 {
            rng.below(MAX_LEN as u32 + 1) as usize
        } else {
            rng.below(80) as usize
        };
        let (w, a, b) = (&mut W[..n], &mut A[..n], &mut B[..n]);
        fill(&mut rng, w, a, b);
        // Unequal lengths too: the shorter slice decides.
        let cut = if case % 5 == 0 {
            rng.below(n as u32 + 1) as usize
        } else {
            n
        };
        // The int16 weights after the int8 ones (which use at most MAX_LEN bytes), at an even
        // address and the same bytes at an odd one; every third case an odd byte length.
        let nb = 2 * cut + usize::from(case % 3 == 1);
        let even = MAX_LEN + (W.as_ptr() as usize + MAX_LEN) % 2;
        let odd = even + 2 * MAX_LEN + 3;
        fill_w16(&mut rng, &mut W[even..even + nb]);
        W.copy_within(even..even + nb, odd);
        let (w, a, b) = (&W[..cut], &A[..n], &B[..n]);
        let (w16_even, w16_odd) = (&W[even..even + nb], &W[odd..odd + nb]);
        if w16_even.as_ptr() as usize % 2 != 0 || w16_odd.as_ptr() as usize % 2 != 1 {
            mismatches += 1;
            let _ = writeln!(out, "TRM-MISMATCH case={case} kernel=w16 address parity");
        }
        let want_w = Isa::Portable.dot_w8_a16(w, a);
        let want_a = Isa::Portable.dot_a16_a16(a, b);
        let want_w16 = Some(kernels::dot_w16_a16(w16_even, a));
        let got = [
            (
                Some(kernels::dot_w16_a16(w16_odd, a)),
                want_w16,
                "reference dot_w16_a16 odd",
            ),
            (
                Some(Isa::ArmDsp.dot_w16_a16(w16_even, a)),
                want_w16,
                "dsp dot_w16_a16 even",
            ),
            (
                Some(optimized::dot_w16_a16(w16_even, a)),
                want_w16,
                "engine dot_w16_a16 even",
            ),
            (
                Some(Isa::Portable.dot_w16_a16(w16_even, a)),
                want_w16,
                "portable dot_w16_a16 even",
            ),
            (
                Some(Isa::ArmDsp.dot_w16_a16(w16_odd, a)),
                want_w16,
                "dsp dot_w16_a16 odd",
            ),
            (
                Some(optimized::dot_w16_a16(w16_odd, a)),
                want_w16,
                "engine dot_w16_a16 odd",
            ),
            (Isa::ArmDsp.dot_w8_a16(w, a), want_w, "dsp dot_w8_a16"),
            (
                Some(optimized::dot_w8_a16(w, a)),
                want_w,
                "engine dot_w8_a16",
            ),
            (Isa::ArmDsp.dot_a16_a16(a, b), want_a, "dsp dot_a16_a16"),
            (
                Some(optimized::dot_a16_a16(a, b)),
                want_a,
                "engine dot_a16_a16",
            ),
        ];
        for (g, want, what) in got {
            if g != want {
                mismatches += 1;
                if mismatches <= 10 {
                    let _ = writeln!(
                        out,
                        "TRM-MISMATCH case={case} kernel={what} len={n} cut={cut} got={g:?} want={want:?}"
                    );
                }
            }
        }
        cases += 1;
        elements += n as u64;
    }
    let _ = writeln!(
        out,
        "TRM-KERNELS isa=arm-dsp selected={} cases={cases} elements={elements} mismatches={mismatches}",
        selected.name()
    );
    let ok = dsp && selected == Isa::ArmDsp && mismatches == 0;

    // 1b. Matrix products, blocked (DSP) against the reference, raw sums.
    let (mut mm_cases, mut mm_outputs, mut mm_bad) = (0u32, 0u64, 0u32);
    for case in 0..400u32 {
        // Every 10th case more than 128 activation rows (the blocked path's stack buffer holds
        // 128 sums per pass), few columns and weight rows.
        let many = case % 10 == 5;
        let count = if many {
            129 + rng.below(12) as usize
        } else if case % 4 == 0 {
            // One activation row (the three-weight-rows path), past the chunk every other time.
            1
        } else {
            1 + rng.below(9) as usize
        };
        // Past the 256-column chunk every 8th case (at most MAX_LEN values in all).
        let cols = if many {
            1 + rng.below(15) as usize
        } else if case % 8 == 0 {
            (256 + rng.below(780) as usize).min(MAX_LEN / count)
        } else {
            1 + rng.below(80) as usize
        };
        let rows = 1 + rng.below(if many { 4 } else { 64 }) as usize;
        let n = count * cols;
        // int16 weights every third case (little-endian pairs, the extremes among them).
        let wide = case % 3 == 2;
        let bytes = if wide { 2 * rows * cols } else { rows * cols };
        fill(&mut rng, &mut W[..rows * cols], &mut A[..n], &mut B[..0]);
        if wide {
            fill_w16(&mut rng, &mut W[..bytes]);
        }
        // The scratch at an odd or even halfword, or too short (every 7th case: the
        // per-output fallback).
        let off = (case % 2) as usize;
        let len = if case % 7 == 0 {
            3
        } else {
            SCRATCH.len() - off
        };
        let (Some(w), Some(a)) = (
            Matrix::new(&W[..bytes], rows, cols, wide, Words(&[])),
            Rows::new(&A[..n], count, cols, cols),
        ) else {
            mm_bad += 1;
            continue;
        };
        let nout = rows * count;
        let run = |isa: Isa, sums: &mut [i64], scratch: &mut [i16]| {
            let mut epi = Epilogue::Raw {
                out: &mut sums[..nout],
                second: &mut [],
            };
            optimized::matmul(isa, &w, &a, &mut epi, scratch)
        };
        let p = run(Isa::Portable, &mut SUMS_P[..], &mut []);
        let d = run(Isa::ArmDsp, &mut SUMS_D[..], &mut SCRATCH[off..off + len]);
        // The requantizing epilogues (int16 outputs; residual sums) through a random channel
        // table: mantissas in [2^30, 2^31) and now and then 0 or small, shifts 20..=70 (below,
        // inside and past the 32..=62 of the high-word path), rows of `stride` >= `rows`.
        let stride = rows + (case % 3) as usize;
        let nepi = (count - 1) * stride + rows;
        TABLE[..4].copy_from_slice(&(rows as i32).to_le_bytes());
        for o in 0..rows {
            let mult = match rng.below(8) {
                0 => 0,
                1 => rng.below(1000) as i32,
                _ => (1 << 30) + (rng.next() >> 2) as i32,
            };
            let shift = 20 + rng.below(51);
            TABLE[4 + 8 * o..8 + 8 * o].copy_from_slice(&mult.to_le_bytes());
            TABLE[8 + 8 * o..12 + 8 * o].copy_from_slice(&shift.to_le_bytes());
        }
        for v in RES_H[..nepi].iter_mut() {
            *v = rng.next() as i16;
        }
        // The same values in both sets of outputs first: the gaps of a stride past `rows` are
        // never written and compare equal.
        EPI_P[..nepi].fill(0x5a5a);
        EPI_D[..nepi].fill(0x5a5a);
        RES_P[..nepi].fill(0x5a5a);
        RES_D[..nepi].fill(0x5a5a);
        let wq = Matrix::new(&W[..bytes], rows, cols, wide, Words(&TABLE[..4 + 8 * rows]));
        let (mut p2, mut d2) = (true, true);
        if let Some(wq) = wq {
            for isa in [Isa::Portable, Isa::ArmDsp] {
                let (out, res, scratch): (&mut [i16], &mut [i32], &mut [i16]) =
                    if isa == Isa::Portable {
                        (&mut EPI_P[..], &mut RES_P[..], &mut [])
                    } else {
                        (&mut EPI_D[..], &mut RES_D[..], &mut SCRATCH[off..off + len])
                    };
                let mut epi = Epilogue::Sat16 {
                    out: &mut out[..nepi],
                    stride,
                };
                let ok1 = optimized::matmul(isa, &wq, &a, &mut epi, scratch);
                let mut epi = Epilogue::Residual {
                    h: &RES_H[..nepi],
                    res: &mut res[..nepi],
                    stride,
                    product: None,
                };
                let ok2 = optimized::matmul(isa, &wq, &a, &mut epi, scratch);
                if isa == Isa::Portable {
                    p2 = ok1 && ok2;
                } else {
                    d2 = ok1 && ok2;
                }
            }
        } else {
            p2 = false;
        }
        let epi_same = EPI_P[..nepi] == EPI_D[..nepi] && RES_P[..nepi] == RES_D[..nepi];
        if !p || !d || !p2 || !d2 || !epi_same || SUMS_P[..nout] != SUMS_D[..nout] {
            mm_bad += 1;
            if mm_bad <= 10 {
                let _ = writeln!(
                    out,
                    "TRM-MISMATCH case={case} kernel=matmul rows={rows} cols={cols} count={count} wide={wide}"
                );
            }
        }
        mm_cases += 1;
        mm_outputs += nout as u64;
    }
    let _ = writeln!(
        out,
        "TRM-MATMUL cases={mm_cases} outputs={mm_outputs} mismatches={mm_bad}"
    );
    let ok = ok && mm_bad == 0;

    // 2. Instructions per multiply-accumulate.
    let mut rng = XorShift(0x1234_5678);
    fill(&mut rng, &mut W[..], &mut A[..], &mut B[..]);
    let t0 = now();
    let t1 = now();
    let empty = t1 - t0;
    let mut same = true;
    for (rows, cols, wide) in [
        (512usize, 512usize, false),
        (1536, 97, false),
        (512, 1536, false),
        (512, 512, true),
    ] {
        // 512 x 512: a D=512 projection; 1536 x 97 (512 rows of it, the output buffer): the
        // mlp_t gate_up (L = 97 columns, not a multiple of 4); 512 x 1536 (170 rows of it, the
        // weight buffer): the D=512 SwiGLU `down`; 512 x 512 int16 (255 rows of it): a D=512
        // projection with int16 weights.
        let cols = cols.min(MAX_LEN);
        let bytes_per_row = if wide { 2 * cols } else { cols };
        // int16 rows start at an even address.
        let start_at = if wide { W.as_ptr() as usize % 2 } else { 0 };
        let rows = rows.min((MAT_MAX - start_at) / bytes_per_row);
        for isa in [Isa::Portable, Isa::ArmDsp] {
            let out_buf: &mut [i16] = if isa == Isa::Portable {
                &mut OUT_P[..]
            } else {
                &mut OUT_D[..]
            };
            let rows = rows.min(out_buf.len());
            let start = now();
            matvec(isa, &W[start_at..], rows, cols, wide, &A[..cols], out_buf);
            let ticks = (now() - start).saturating_sub(empty);
            let macs = (rows * cols) as u64;
            let _ = writeln!(
                out,
                "TRM-KCOST kernel={} isa={} rows={rows} cols={cols} macs={macs} ticks={ticks} instr_per_mac={}",
                if wide {
                    "matvec_w16_a16"
                } else {
                    "matvec_w8_a16"
                },
                isa.name(),
                PerMac { ticks, macs }
            );
        }
        same &= OUT_P == OUT_D;
        // The engine's product with one activation row (`optimized::matmul`, raw sums): on
        // Arm with DSP three weight rows per pass sharing each activation load.
        let rows = rows.min(SUMS_P.len());
        let (Some(wm), Some(av)) = (
            Matrix::new(
                &W[start_at..start_at + rows * bytes_per_row],
                rows,
                cols,
                wide,
                Words(&[]),
            ),
            Rows::new(&A[..cols], 1, cols, cols),
        ) else {
            same = false;
            continue;
        };
        for isa in [Isa::Portable, Isa::ArmDsp] {
            let sums: &mut [i64] = if isa == Isa::Portable {
                &mut SUMS_P[..rows]
            } else {
                &mut SUMS_D[..rows]
            };
            let start = now();
            let mut epi = Epilogue::Raw {
                out: sums,
                second: &mut [],
            };
            let done = optimized::matmul(isa, &wm, &av, &mut epi, &mut SCRATCH[..]);
            let ticks = (now() - start).saturating_sub(empty);
            same &= done;
            let macs = (rows * cols) as u64;
            let _ = writeln!(
                out,
                "TRM-KCOST kernel={} isa={} rows={rows} cols={cols} count=1 macs={macs} ticks={ticks} instr_per_mac={}",
                if wide {
                    "matmul_w16_a16"
                } else {
                    "matmul_w8_a16"
                },
                isa.name(),
                PerMac { ticks, macs }
            );
        }
        same &= SUMS_P[..rows] == SUMS_D[..rows];
    }
    fill(&mut rng, &mut [], &mut SEQ[..], &mut []);
    // The blocked product: 83 activation rows (a Sudoku sequence, 2 prefix tokens) through a
    // 256 x 64 matrix (a D=64 SwiGLU gate_up) and a 64 x 83 one (an mlp_t token mixer).
    for (rows, cols) in [(256usize, 64usize), (64, 83)] {
        let count = 83;
        let (Some(w), Some(a)) = (
            Matrix::new(&W[..rows * cols], rows, cols, false, Words(&[])),
            Rows::new(&SEQ[..count * cols], count, cols, cols),
        ) else {
            continue;
        };
        for isa in [Isa::Portable, Isa::ArmDsp] {
            let start = now();
            let mut epi = Epilogue::Raw {
                out: &mut SUMS[..rows * count],
                second: &mut [],
            };
            optimized::matmul(isa, &w, &a, &mut epi, &mut SCRATCH[..]);
            let ticks = (now() - start).saturating_sub(empty);
            let macs = (rows * cols * count) as u64;
            let _ = writeln!(
                out,
                "TRM-KCOST kernel=matmul_w8_a16 isa={} rows={rows} cols={cols} count={count} macs={macs} ticks={ticks} instr_per_mac={}",
                isa.name(),
                PerMac { ticks, macs }
            );
        }
    }
    // The rest of an ACT step, per value: the SwiGLU's SiLU (1025-knot table, the engine's
    // knot spacing 2^6) and product requantization, a requantizing epilogue (`sat16` of
    // `Requant::apply`), RMSNorm of 83 rows of 64 (a D=64 model's channel norm).
    {
        for (k, t) in W[..2050].chunks_exact_mut(2).enumerate() {
            t.copy_from_slice(&(((k as i32 - 512) * 31) as i16).to_le_bytes());
        }
        let table = kernels::I16Table(&W[..2050]);
        let n = 2048usize;
        let rq = Requant {
            mult: (1 << 30) + 777,
            shift: 45,
        };
        let start = now();
        let mut acc = 0i64;
        for k in 0..n {
            let g = A[k % MAX_LEN];
            let u = A[(k * 7) % MAX_LEN];
            let s = kernels::silu_spaced(table, 6, g);
            acc += kernels::sat16(rq.apply(s as i64 * u as i64)) as i64;
        }
        let ticks = (now() - start).saturating_sub(empty);
        let _ = writeln!(
            out,
            "TRM-KCOST kernel=silu_product values={n} ticks={ticks} instr_per_value={} sum={acc}",
            PerMac {
                ticks,
                macs: n as u64
            }
        );
        // The engine's pass on 32-bit cores (`optimized::swiglu_silu`, 32-bit arithmetic) on
        // the same values, then compared with the reference value by value.
        let len = 512usize;
        let reps = n / len;
        let start = now();
        for r in 0..reps {
            let gate = &mut SCRATCH[..len];
            for (k, g) in gate.iter_mut().enumerate() {
                *g = A[(r * len + k) % MAX_LEN];
            }
            let up: [i16; 512] = core::array::from_fn(|k| A[((r * len + k) * 7) % MAX_LEN]);
            optimized::swiglu_silu(Isa::ArmDsp, table, 6, gate, &up, Some(rq));
        }
        let ticks = (now() - start).saturating_sub(empty);
        let _ = writeln!(
            out,
            "TRM-KCOST kernel=silu_product_pass values={} ticks={ticks} instr_per_value={} (with copying the inputs)",
            reps * len,
            PerMac {
                ticks,
                macs: (reps * len) as u64
            }
        );
        let mut bad = 0u32;
        for case in 0..64usize {
            let shift = [32u32, 40, 45, 62, 20, 0][case % 6];
            let prq = Requant {
                mult: (rng.next() >> 1) as i32,
                shift,
            };
            let gate = &mut SCRATCH[..len];
            for g in gate.iter_mut() {
                *g = rng.next() as i16;
            }
            let up: [i16; 512] = core::array::from_fn(|_| rng.next() as i16);
            let want: [i16; 512] = core::array::from_fn(|k| {
                let s = kernels::silu_spaced(table, 6, gate[k]);
                kernels::sat16(prq.apply(s as i64 * up[k] as i64))
            });
            optimized::swiglu_silu(Isa::ArmDsp, table, 6, gate, &up, Some(prq));
            if gate[..] != want[..] {
                bad += 1;
            }
        }
        let _ = writeln!(out, "TRM-SILU cases=64 mismatches={bad}");
        same &= bad == 0;
        let start = now();
        let mut acc = 0i64;
        for k in 0..n {
            let sum = (A[k % MAX_LEN] as i64) * 4099 + k as i64;
            acc += kernels::sat16(rq.apply(sum)) as i64;
        }
        let ticks = (now() - start).saturating_sub(empty);
        let _ = writeln!(
            out,
            "TRM-KCOST kernel=requant_sat16 values={n} ticks={ticks} instr_per_value={} sum={acc}",
            PerMac {
                ticks,
                macs: n as u64
            }
        );
        let (rows, d) = (83usize, 64usize);
        let start = now();
        for r in 0..rows {
            let v: [i32; 64] = core::array::from_fn(|k| A[(r * d + k) % MAX_LEN] as i32 * 37);
            optimized::rms_norm(Isa::ArmDsp, &v, 1 << 20, &mut OUT_D[..d]);
        }
        let ticks = (now() - start).saturating_sub(empty);
        let _ = writeln!(
            out,
            "TRM-KCOST kernel=rms_norm rows={rows} cols={d} ticks={ticks} instr_per_value={}",
            PerMac {
                ticks,
                macs: (rows * d) as u64
            }
        );
        // The DSP path's RMSNorm (the division-free one) against the reference, on random
        // rows of every length up to 200 and residuals up to the clamp.
        let mut bad = 0u32;
        for case in 0..300usize {
            let n = 1 + rng.below(200) as usize;
            let amp = 1i64 << (rng.below(24) + 1);
            let v: [i32; 200] = core::array::from_fn(|_| {
                ((rng.next() as i64 % (2 * amp)) - amp).clamp(i32::MIN as i64, i32::MAX as i64)
                    as i32
            });
            let eps = if case % 3 == 0 { 0 } else { rng.next() as u64 };
            kernels::rms_norm(&v[..n], eps, &mut OUT_P[..n]);
            optimized::rms_norm(Isa::ArmDsp, &v[..n], eps, &mut OUT_D[..n]);
            if OUT_P[..n] != OUT_D[..n] {
                bad += 1;
            }
        }
        let _ = writeln!(out, "TRM-RMSNORM cases=300 mismatches={bad}");
        same &= bad == 0;
    }
    // The attention score kernel: 64-element heads (D=512, 8 heads), 97 keys.
    for isa in [Isa::Portable, Isa::ArmDsp] {
        let start = now();
        let mut acc = 0i64;
        for j in 0..97usize {
            let k = &B[j * 16..j * 16 + 64];
            acc = acc.wrapping_add(isa.dot_a16_a16(&A[..64], k).unwrap_or(0));
        }
        let ticks = (now() - start).saturating_sub(empty);
        let macs = 97 * 64u64;
        let _ = writeln!(
            out,
            "TRM-KCOST kernel=dot_a16_a16 isa={} rows=97 cols=64 macs={macs} ticks={ticks} instr_per_mac={} sum={acc}",
            isa.name(),
            PerMac { ticks, macs }
        );
    }
    let _ = writeln!(out, "TRM-RESULT ok={} matvec_equal={same}", ok && same);
    exit(ok && same)
}

/// Writes to semihosting stdout without any state: usable from fault handlers.
fn emergency(args: core::fmt::Arguments<'_>) {
    if let Ok(mut h) = hio::hstdout() {
        let _ = h.write_fmt(args);
    }
}

#[exception]
unsafe fn HardFault(ef: &ExceptionFrame) -> ! {
    emergency(format_args!(
        "\nTRM-ERROR stage=hardfault msg=pc={:#010x} lr={:#010x} xpsr={:#010x}\n",
        ef.pc(),
        ef.lr(),
        ef.xpsr()
    ));
    exit(false)
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    emergency(format_args!(
        "\nTRM-ERROR stage=interrupt msg=unexpected exception or interrupt {irqn}\n"
    ));
    exit(false)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let (file, line) = info.location().map_or(("?", 0), |l| (l.file(), l.line()));
    emergency(format_args!(
        "\nTRM-ERROR stage=panic at={file}:{line} msg={}\n",
        info.message()
    ));
    exit(false)
}
