//! TRM Sudoku demo on QEMU's riscv32 `virt` machine (RV32IMAFC, machine mode).
//!
//! Console and exit status go over semihosting (QEMU needs `-semihosting-config
//! enable=on,target=native`); timing reads the `mcycle` counter, which QEMU advances by one per
//! instruction under `-icount shift=0` (and by host time otherwise). A panic or an exception
//! prints what happened and exits with status 1, so a crash never hangs QEMU. Interrupts stay
//! disabled: nothing here needs them.
#![no_std]
#![no_main]

use core::fmt::Write as _;
use riscv::register::{mcause, mcycle, mepc, mtval};
use riscv_semihosting::{debug, hio};
use trm_fw_app::{Console, Counter, Options};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// f32 values of engine scratch in RAM (2 MiB of the 4 in memory.x), as on mps2-an386.
const SCRATCH_F32: usize = 512 * 1024;

/// The engine scratch. Only `main` names it, once.
static mut SCRATCH: [f32; SCRATCH_F32] = [0.0; SCRATCH_F32];

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

/// The `mcycle` CSR, 64-bit.
struct Mcycle;

impl Counter for Mcycle {
    fn now(&mut self) -> u64 {
        mcycle::read64()
    }
    fn unit(&self) -> &'static str {
        "mcycle"
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
        riscv::asm::wfi();
    }
}

#[riscv_rt::entry]
fn main() -> ! {
    // SAFETY: `main` runs once, on the only hart, with interrupts disabled, and nothing else
    // names SCRATCH: this is the one reference to it.
    let scratch: &'static mut [f32] = unsafe { &mut *core::ptr::addr_of_mut!(SCRATCH) };
    let mut console = Semihost(hio::hstdout().ok());
    let opts = Options {
        board: "qemu-virt-riscv32",
        halt: embedded::HALT,
        step_digests: embedded::STEP_DIGESTS,
        boards: true,
    };
    let report = trm_fw_app::run_models(
        &mut console,
        &mut Mcycle,
        embedded::MODELS,
        embedded::PUZZLES,
        scratch,
        &opts,
    );
    exit(report.success())
}

/// Writes to semihosting stdout without any state: usable from trap handlers.
fn emergency(args: core::fmt::Arguments<'_>) {
    if let Ok(mut h) = hio::hstdout() {
        let _ = h.write_fmt(args);
    }
}

/// Every exception (riscv-rt's default handler for all of them).
#[unsafe(export_name = "ExceptionHandler")]
fn exception_handler(_frame: &riscv_rt::TrapFrame) -> ! {
    emergency(format_args!(
        "\nTRM-ERROR stage=exception msg=mcause={:#010x} mepc={:#010x} mtval={:#010x}\n",
        mcause::read().bits(),
        mepc::read(),
        mtval::read()
    ));
    exit(false)
}

/// Every interrupt (none is enabled).
#[unsafe(export_name = "DefaultHandler")]
fn default_handler() -> ! {
    emergency(format_args!(
        "\nTRM-ERROR stage=interrupt msg=unexpected interrupt mcause={:#010x}\n",
        mcause::read().bits()
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
