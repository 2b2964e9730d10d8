//! TRM Sudoku demo on the STM32H743ZI Nucleo-144 (Cortex-M7 with double-precision FPU).
//!
//! Clocks: stm32h7xx-hal sets the core to 400 MHz from the 64 MHz HSI through PLL1 (voltage
//! scale 1, LDO supply; 480 MHz would need VOS0 and revision V silicon), with the flash wait
//! states that go with it; the I- and D-caches are on. Each solve is timed with the DWT cycle
//! counter (core cycles), extended to 64 bits by the SysTick interrupt. Output goes over RTT in
//! defmt's encoding: `probe-rs run` (the runner in `.cargo/config.toml`) prints it, one `TRM-`
//! line per defmt record.
//!
//! Memory (see `memory.x`): the model is read in place from flash, the engine arena is 512 KiB
//! of AXI SRAM, the stack and the RTT buffers are in DTCM.
//!
//! Untested on hardware in this project: it builds in CI, the same app runs in QEMU on the
//! Cortex-M4F and RISC-V boards and on the host.
#![no_std]
#![no_main]

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use cortex_m::peripheral::DWT;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use defmt_rtt as _;
use panic_probe as _;
use stm32h7xx_hal::{pac, prelude::*};
use trm_fw_app::{Console as _, Counter, LineConsole};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// f32 words of the engine arena: all 512 KiB of AXI SRAM.
const ARENA_F32: usize = 128 * 1024;

/// The engine arena, in its own linker section in AXI SRAM (see `memory.x`). Taken once, by
/// [`arena`].
#[unsafe(link_section = ".axisram")]
static mut ARENA: MaybeUninit<[f32; ARENA_F32]> = MaybeUninit::uninit();

/// Whether [`arena`] handed out `ARENA`.
static ARENA_TAKEN: AtomicBool = AtomicBool::new(false);

/// The arena, zeroed, the first time; `None` afterwards.
fn arena() -> Option<&'static mut [f32]> {
    if ARENA_TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let p = core::ptr::addr_of_mut!(ARENA).cast::<f32>();
    // SAFETY: `ARENA_TAKEN` lets only the first call get here, and nothing else names `ARENA`,
    // so this is the only reference to it; `p` points to `ARENA_F32` f32 values of a static
    // (valid, aligned for f32). The section is NOLOAD (nothing initialised it), so every byte
    // is written with zero first, and all-zero bytes are a valid f32 (0.0).
    unsafe {
        core::ptr::write_bytes(p, 0, ARENA_F32);
        Some(core::slice::from_raw_parts_mut(p, ARENA_F32))
    }
}

/// High 32 bits of the 64-bit cycle count.
static CYC_HI: AtomicU32 = AtomicU32::new(0);
/// CYCCNT when the SysTick interrupt last looked.
static CYC_LAST: AtomicU32 = AtomicU32::new(0);

/// Runs every 2^24 core cycles (42 ms at 400 MHz), far more often than CYCCNT wraps (10.7 s):
/// notes each wrap.
#[exception]
fn SysTick() {
    let c = DWT::cycle_count();
    if c < CYC_LAST.load(Ordering::Acquire) {
        CYC_HI.fetch_add(1, Ordering::AcqRel);
    }
    CYC_LAST.store(c, Ordering::Release);
}

/// The DWT cycle counter, 64-bit.
struct Cycles {
    hz: u64,
}

impl Counter for Cycles {
    fn now(&mut self) -> u64 {
        loop {
            let hi = CYC_HI.load(Ordering::Acquire);
            let last = CYC_LAST.load(Ordering::Acquire);
            let c = DWT::cycle_count();
            // Retry when the interrupt ran in between.
            if CYC_HI.load(Ordering::Acquire) == hi && CYC_LAST.load(Ordering::Acquire) == last {
                // A wrap since the interrupt last looked, not yet counted.
                let hi = u64::from(hi) + u64::from(c < last);
                return (hi << 32) | u64::from(c);
            }
        }
    }
    fn unit(&self) -> &'static str {
        "cycles"
    }
    fn hz(&self) -> Option<u64> {
        Some(self.hz)
    }
}

/// Idles after the run: the log stays readable, the probe session ends with Ctrl-C.
fn idle() -> ! {
    loop {
        cortex_m::asm::nop();
    }
}

#[entry]
fn main() -> ! {
    let mut console = LineConsole::new(|line: &str| defmt::println!("{=str}", line));
    let (Some(mut cp), Some(dp)) = (cortex_m::Peripherals::take(), pac::Peripherals::take()) else {
        console.write_str("TRM-ERROR stage=board msg=peripherals already taken\n");
        idle()
    };
    let pwrcfg = dp.PWR.constrain().freeze();
    let ccdr = dp
        .RCC
        .constrain()
        .sys_ck(400.MHz())
        .freeze(pwrcfg, &dp.SYSCFG);
    let hz = ccdr.clocks.sys_ck().raw();
    defmt::println!("# STM32H743 core clock {=u32} Hz", hz);

    cp.SCB.enable_icache();
    cp.SCB.enable_dcache(&mut cp.CPUID);

    // Cycle counter (the Cortex-M7 locks the DWT until unlocked), then its 64-bit extension.
    cp.DCB.enable_trace();
    DWT::unlock();
    cp.DWT.enable_cycle_counter();
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(0x00FF_FFFF);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();

    let Some(scratch) = arena() else {
        console.write_str("TRM-ERROR stage=board msg=arena already taken\n");
        idle()
    };
    let report = trm_fw_app::run_firmware(
        &mut console,
        &mut Cycles { hz: u64::from(hz) },
        &embedded::FIRMWARE,
        scratch,
        "stm32h743-nucleo",
    );
    console.flush();
    if report.success() {
        defmt::println!("# done: no errors");
    } else {
        defmt::println!("# done: {=usize} errors", report.errors);
    }
    idle()
}
