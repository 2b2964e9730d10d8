//! TRM Sudoku demo on QEMU's mps2-an386 (Cortex-M4F).
//!
//! Console and exit status go over semihosting (QEMU needs `-semihosting-config
//! enable=on,target=native`); timing uses SysTick on the core clock (25 MHz on this machine),
//! extended to 64 bits by its wrap interrupt. A panic, a HardFault or an unexpected interrupt
//! prints what happened and exits with status 1, so a crash never hangs QEMU.
#![no_std]
#![no_main]

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::{debug, hio};
use trm_fw_app::{Console, Counter, Options};

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

/// Semihosting stdout.
struct Semihost(Option<hio::HostStream>);

impl Console for Semihost {
    fn write_str(&mut self, s: &str) {
        if let Some(h) = self.0.as_mut() {
            // Nothing useful to do if the host refuses output.
            let _ = h.write_all(s.as_bytes());
        }
    }
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

    let mut console = Semihost(hio::hstdout().ok());
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        console.write_str("TRM-ERROR stage=board msg=core peripherals already taken\n");
        exit(false)
    };
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(SYST_RELOAD);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();

    let opts = Options {
        board: "qemu-mps2-an386",
        halt: embedded::HALT,
        step_digests: embedded::STEP_DIGESTS,
        boards: true,
    };
    let report = trm_fw_app::run_models(
        &mut console,
        &mut SysTickCounter,
        embedded::MODELS,
        embedded::PUZZLES,
        SCRATCH,
        &opts,
    );
    exit(report.success())
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
    // One line: location as a field, the message last (it may hold spaces).
    let (file, line) = info.location().map_or(("?", 0), |l| (l.file(), l.line()));
    emergency(format_args!(
        "\nTRM-ERROR stage=panic at={file}:{line} msg={}\n",
        info.message()
    ));
    exit(false)
}
