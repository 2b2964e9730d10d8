//! TRM Sudoku demo on the Raspberry Pi Pico (RP2040: Cortex-M0+, no FPU, no DSP instructions).
//!
//! The system clock runs at 125 MHz from the 12 MHz crystal through PLL_SYS
//! (`rp2040_hal::clocks::init_clocks_and_plls`); each solve is timed with the 1 MHz TIMER
//! peripheral (microseconds, 64-bit). Output goes over RTT in defmt's encoding: `probe-rs run`
//! (the runner in `.cargo/config.toml`) prints it, one `TRM-` line per defmt record. The default
//! model is the fixed-point one (`../models/sudoku-d32-fixed.trm`): integer kernels only, which
//! is what a core without an FPU wants. A float model also runs (in software floating point,
//! far slower).
//!
//! Untested on hardware in this project: it builds in CI, the same app runs in QEMU on the
//! Cortex-M4F and RISC-V boards and on the host.
#![no_std]
#![no_main]

use defmt_rtt as _;
use panic_probe as _;
use rp2040_hal::{self as hal, Clock as _, pac};
use trm_fw_app::{Console as _, Counter, LineConsole};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The second-stage bootloader for the Pico's W25Q080-compatible flash, placed at the start of
/// flash by `memory.x`.
#[unsafe(link_section = ".boot2")]
#[used]
#[unsafe(no_mangle)]
pub static BOOT2_FIRMWARE: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// The Pico's crystal.
const XTAL_FREQ_HZ: u32 = 12_000_000;

/// f32 words of engine scratch in RAM (200 KiB of the 264): the D=32 fixed model needs 22.6 KB,
/// its float version about 100 KB; the rest of RAM is the stack and the RTT buffers.
const SCRATCH_F32: usize = 50 * 1024;

/// The TIMER peripheral's 64-bit microsecond count.
struct Micros(hal::Timer);

impl Counter for Micros {
    fn now(&mut self) -> u64 {
        self.0.get_counter().ticks()
    }
    fn unit(&self) -> &'static str {
        "us"
    }
    fn hz(&self) -> Option<u64> {
        Some(1_000_000)
    }
}

/// Idles after the run: the log stays readable, the probe session ends with Ctrl-C.
fn idle() -> ! {
    loop {
        cortex_m::asm::nop();
    }
}

#[hal::entry]
fn main() -> ! {
    // cortex-m-rt turns this into a `&'static mut` taken once: no unsafe, no stack copy.
    static mut SCRATCH: [f32; SCRATCH_F32] = [0.0; SCRATCH_F32];

    let mut console = LineConsole::new(|line: &str| defmt::println!("{=str}", line));
    let Some(mut pac) = pac::Peripherals::take() else {
        console.write_str("TRM-ERROR stage=board msg=peripherals already taken\n");
        idle()
    };
    let mut watchdog = hal::Watchdog::new(pac.WATCHDOG);
    let Ok(clocks) = hal::clocks::init_clocks_and_plls(
        XTAL_FREQ_HZ,
        pac.XOSC,
        pac.CLOCKS,
        pac.PLL_SYS,
        pac.PLL_USB,
        &mut pac.RESETS,
        &mut watchdog,
    ) else {
        console.write_str("TRM-ERROR stage=board msg=clock setup failed (crystal or PLL)\n");
        idle()
    };
    let sys_hz = clocks.system_clock.freq().to_Hz();
    defmt::println!("# RP2040 system clock {=u32} Hz, timer 1 MHz", sys_hz);
    let mut timer = Micros(hal::Timer::new(pac.TIMER, &mut pac.RESETS, &clocks));

    let report = trm_fw_app::run_firmware(
        &mut console,
        &mut timer,
        &embedded::FIRMWARE,
        SCRATCH,
        "rp2040-pico",
    );
    console.flush();
    if report.success() {
        defmt::println!("# done: no errors");
    } else {
        defmt::println!("# done: {=usize} errors", report.errors);
    }
    idle()
}
