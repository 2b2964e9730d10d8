//! Optimized versions of the hot integer kernels, equal to the reference kernels of
//! [`kernels`] bit for bit (the reference is the specification, as in TFLM).
//!
//! Two kernels carry almost all of the engine's multiply-accumulates:
//!
//! - [`dot_w8_a16`]: int8 weights x int16 activations, one output of every matrix-vector
//!   product (SwiGLU, mlp_t, qkv / o projections, heads);
//! - [`dot_a16_a16`]: int16 x int16, the attention scores `q . k`, and through
//!   [`dot_w16_a16`] every matrix-vector product of a matrix stored with int16 weights.
//!
//! Each [`Isa`] implements both. The engine calls the functions of this module, which run the
//! [`selected`] implementation:
//!
//! - x86_64: [`Isa::Amx`] (AMX-INT8 matrix products, Linux with `std`), [`Isa::Avx512Vnni`],
//!   [`Isa::Avx512`] (AVX-512 F + BW) or [`Isa::Avx2`], chosen at compile time when the build
//!   enables the target feature (`-C target-feature=+avx2`), otherwise, with the `std` feature,
//!   at run time with `is_x86_feature_detected!` and CPUID (once; the decision is cached);
//! - Arm with the DSP extension (Cortex-M4/M7/M33, `target_feature = "dsp"`, e.g.
//!   `thumbv7em-none-eabihf`): [`Isa::ArmDsp`], dual 16-bit multiply-accumulates (`SMLAD`,
//!   `SMLALD`) through `asm!`, chosen at compile time;
//! - everything else: [`Isa::Portable`], the reference kernels themselves.
//!
//! # Why the results are identical
//!
//! Integer addition is associative and commutative, so any summation order gives the same sum
//! as long as no partial sum overflows. Each implementation documents why its partial sums stay
//! in range (the bounds are those of the reference's module documentation; every vector product
//! is exact), and the tests compare every implementation the machine supports with the
//! reference on random and extreme values and on lengths that are not multiples of the vector
//! width (`tests/fixed_kernels_simd.rs`, `tests/fixed_bounds.rs`, and on Cortex-M4F the firmware
//! `firmware-examples/qemu-kernel-check`).
//!
//! `unsafe` exists only in the per-architecture submodules (intrinsics and `asm!`); this
//! module's API is safe.

use super::kernels;
use core::sync::atomic::{AtomicU8, Ordering};

#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[allow(unsafe_code)]
mod arm_dsp;
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
#[allow(unsafe_code)]
mod arm_matmul;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86_amx;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86_matmul;

pub mod activation;
pub mod attention;
pub mod matmul;
mod mul_hi;
pub use activation::{rms_norm, swiglu_silu};
pub use matmul::{Epilogue, Matrix, Rows, matmul};

/// One implementation of the hot kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Isa {
    /// The reference kernels ([`kernels::dot_w8_a16`], [`kernels::dot_a16_a16`]).
    Portable = 1,
    /// x86_64 AVX2: `vpmovsxbw` + `vpmaddwd`, 16 products per instruction pair.
    Avx2 = 2,
    /// x86_64 AVX-512 F + BW: the AVX2 scheme on 512-bit vectors, 32 products per pair.
    Avx512 = 3,
    /// x86_64 AVX-512 F + BW + VNNI: the dot products of [`Isa::Avx512`]; the blocked matrix
    /// products ([`matmul()`]) multiply and accumulate with one `vpdpwssd`.
    Avx512Vnni = 5,
    /// x86_64 AMX-INT8 (Sapphire Rapids and later, with the operating system's permission:
    /// Linux, the `std` feature): the blocked matrix products of int8 weights on the tile
    /// unit (`tdpbssd` / `tdpbusd`, 16 x 16 x 64 products per instruction); every other
    /// kernel as [`Isa::Avx512Vnni`].
    Amx = 6,
    /// Arm DSP extension (Cortex-M4/M7/M33): `SMLAD` / `SMLALD`, two 16-bit products per
    /// instruction, through `asm!`.
    ArmDsp = 4,
}

impl Isa {
    /// Every implementation, supported here or not, fastest last.
    pub const ALL: [Isa; 6] = [
        Isa::Portable,
        Isa::ArmDsp,
        Isa::Avx2,
        Isa::Avx512,
        Isa::Avx512Vnni,
        Isa::Amx,
    ];

    /// A short lowercase name (`portable`, `avx2`, `avx512`, `avx512-vnni`, `amx`,
    /// `arm-dsp`).
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Amx => "amx",
            Isa::ArmDsp => "arm-dsp",
        }
    }

    /// Whether this build can run the implementation on this machine (compile-time target
    /// features; on x86_64 with `std`, run-time detection as well).
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            Isa::ArmDsp => cfg!(all(target_arch = "arm", target_feature = "dsp")),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::has_avx2(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::has_avx512(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => x86::has_avx512_vnni(),
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => x86::has_amx(),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 | Isa::Avx512Vnni | Isa::Amx => false,
        }
    }

    /// The fastest supported implementation.
    pub fn best() -> Isa {
        let mut best = Isa::Portable;
        for isa in Isa::ALL {
            if isa.is_supported() {
                best = isa;
            }
        }
        best
    }

    /// [`kernels::dot_w8_a16`] with this implementation; `None` when it is not supported here.
    #[inline]
    pub fn dot_w8_a16(self, w: &[u8], a: &[i16]) -> Option<i64> {
        if !self.is_supported() {
            return None;
        }
        Some(self.dot_w8_a16_unchecked(w, a))
    }

    /// [`kernels::dot_a16_a16`] with this implementation; `None` when it is not supported here.
    #[inline]
    pub fn dot_a16_a16(self, a: &[i16], b: &[i16]) -> Option<i64> {
        if !self.is_supported() {
            return None;
        }
        Some(self.dot_a16_a16_unchecked(a, b))
    }

    /// Runs the kernel; the caller has checked [`Isa::is_supported`] (an unsupported choice
    /// falls back to the reference, so this is never unsound).
    #[inline]
    pub(super) fn dot_w8_a16_unchecked(self, w: &[u8], a: &[i16]) -> i64 {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::dot_w8_a16_avx2(w, a).unwrap_or_else(|| kernels::dot_w8_a16(w, a)),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx512Vnni | Isa::Amx => {
                x86::dot_w8_a16_avx512(w, a).unwrap_or_else(|| kernels::dot_w8_a16(w, a))
            }
            #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
            Isa::ArmDsp => arm_dsp::dot_w8_a16(w, a),
            _ => kernels::dot_w8_a16(w, a),
        }
    }

    #[inline]
    fn dot_a16_a16_unchecked(self, a: &[i16], b: &[i16]) -> i64 {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::dot_a16_a16_avx2(a, b).unwrap_or_else(|| kernels::dot_a16_a16(a, b)),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx512Vnni | Isa::Amx => {
                x86::dot_a16_a16_avx512(a, b).unwrap_or_else(|| kernels::dot_a16_a16(a, b))
            }
            #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
            Isa::ArmDsp => arm_dsp::dot_a16_a16(a, b),
            _ => kernels::dot_a16_a16(a, b),
        }
    }

    fn from_u8(v: u8) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| *i as u8 == v)
    }
}

/// The implementation the engine runs: 0 until decided, then an [`Isa`] discriminant. Only
/// loads and stores (no compare-and-swap), so it exists on every target (thumbv6m and
/// riscv32imc have no atomic read-modify-write); two threads deciding at once store the same
/// value.
static SELECTED: AtomicU8 = AtomicU8::new(0);

/// The implementation [`dot_w8_a16`] and [`dot_a16_a16`] (and so the engine) run: the one given
/// to [`select`], else [`Isa::best`], decided on the first call and cached.
#[inline]
pub fn selected() -> Isa {
    match Isa::from_u8(SELECTED.load(Ordering::Relaxed)) {
        Some(isa) => isa,
        None => {
            let isa = Isa::best();
            SELECTED.store(isa as u8, Ordering::Relaxed);
            isa
        }
    }
}

/// Makes the engine run `isa` (for benchmarks and comparisons; results never change, only the
/// speed). Returns `false`, changing nothing, when `isa` is not supported here.
pub fn select(isa: Isa) -> bool {
    if !isa.is_supported() {
        return false;
    }
    SELECTED.store(isa as u8, Ordering::Relaxed);
    true
}

/// [`kernels::dot_w8_a16`] with the [`selected`] implementation (the same result).
#[inline]
pub fn dot_w8_a16(w: &[u8], a: &[i16]) -> i64 {
    selected().dot_w8_a16_unchecked(w, a)
}

/// [`kernels::dot_a16_a16`] with the [`selected`] implementation (the same result).
#[inline]
pub fn dot_a16_a16(a: &[i16], b: &[i16]) -> i64 {
    selected().dot_a16_a16_unchecked(a, b)
}

/// [`kernels::dot_w16_a16`] with the [`selected`] implementation (the same result).
#[inline]
pub fn dot_w16_a16(w: &[u8], a: &[i16]) -> i64 {
    selected().dot_w16_a16_unchecked(w, a)
}

impl Isa {
    /// [`kernels::dot_w16_a16`] with this implementation (the reference where it is not
    /// supported here). Little-endian int16 byte pairs at an even address are int16 values in
    /// memory, so they go to this implementation's [`dot_a16_a16`] as `&[i16]` (a checked,
    /// safe cast); otherwise (odd address, big-endian target) to the reference. Both give the
    /// exact sum, so the result never depends on the path.
    #[inline]
    pub fn dot_w16_a16(self, w: &[u8], a: &[i16]) -> i64 {
        if !self.is_supported() {
            return kernels::dot_w16_a16(w, a);
        }
        self.dot_w16_a16_unchecked(w, a)
    }

    /// [`Isa::dot_w16_a16`] for an implementation known to be supported (the engine's
    /// [`selected`] one): no support check per row.
    #[inline]
    pub(super) fn dot_w16_a16_unchecked(self, w: &[u8], a: &[i16]) -> i64 {
        let even = &w[..w.len() & !1];
        match bytemuck::try_cast_slice::<u8, i16>(even) {
            Ok(ws) if cfg!(target_endian = "little") => self.dot_a16_a16_unchecked(ws, a),
            _ => kernels::dot_w16_a16(w, a),
        }
    }
}
