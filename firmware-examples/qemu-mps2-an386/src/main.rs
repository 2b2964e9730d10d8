//! TRM Sudoku demo on QEMU's mps2-an386 (Cortex-M4F).
//!
//! Console and exit status go over semihosting (QEMU needs `-semihosting-config
//! enable=on,target=native`); timing uses SysTick on the core clock (25 MHz on this machine),
//! extended to 64 bits by its wrap interrupt. A panic, a HardFault or an unexpected interrupt
//! prints what happened and exits with status 1, so a crash never hangs QEMU.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::{debug, hio};
use trm_fw_app::{Console, Counter, FmtConsole};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// f32 values of engine scratch in RAM (2 MiB of the machine's 4): enough for the paper's
/// Sudoku mlp_t D=512 (`FloatEngine::scratch_len`: 829_056 bytes) and for the fast setting of
/// D=128 models.
const SCRATCH_F32: usize = 512 * 1024;

/// SysTick reload: the full 24-bit range.
const SYST_RELOAD: u32 = 0x00FF_FFFF;

/// SysTick wraps since start (the high bits of the tick count).
static WRAPS: AtomicU32 = AtomicU32::new(0);

/// SysTick's clock: the core clock of the AN386 image (25 MHz).
const CORE_HZ: u64 = 25_000_000;

/// Semihosting stdout (none if the host refuses it).
fn semihost() -> FmtConsole<hio::HostStream> {
    FmtConsole(hio::hstdout().ok())
}

/// SysTick ticks (core clock), 64-bit.
struct SysTickCounter;

impl Counter for SysTickCounter {
    fn now(&mut self) -> u64 {
        loop {
            let hi = WRAPS.load(Ordering::Acquire);
            let cur = SYST::get_current();
            if WRAPS.load(Ordering::Acquire) == hi {
                return ((hi as u64) << 24) | (SYST_RELOAD - cur) as u64;
            }
        }
    }
    fn unit(&self) -> &'static str {
        "systick"
    }
    fn hz(&self) -> Option<u64> {
        Some(CORE_HZ)
    }
}

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::AcqRel);
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
    // cortex-m-rt turns this into a `&'static mut` taken once: no unsafe, no stack copy.
    static mut SCRATCH: [f32; SCRATCH_F32] = [0.0; SCRATCH_F32];

    let mut console = semihost();
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        console.write_str("TRM-ERROR stage=board msg=core peripherals already taken\n");
        exit(false)
    };
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(SYST_RELOAD);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();

    let report = trm_fw_app::run_firmware(
        &mut console,
        &mut SysTickCounter,
        &embedded::FIRMWARE,
        SCRATCH,
        "qemu-mps2-an386",
    );
    exit(report.success())
}

/// Writes to semihosting stdout without any state: usable from fault handlers.
fn emergency(args: core::fmt::Arguments<'_>) {
    if let Some(mut h) = semihost().0 {
        let _ = core::fmt::Write::write_fmt(&mut h, args);
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
    trm_fw_app::report_panic(&mut semihost(), info);
    exit(false)
}
