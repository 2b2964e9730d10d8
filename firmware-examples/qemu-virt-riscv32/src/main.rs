//! TRM Sudoku demo on QEMU's riscv32 `virt` machine (RV32IMAFC, machine mode).
//!
//! Console and exit status go over semihosting (QEMU needs `-semihosting-config
//! enable=on,target=native`); timing reads the `mcycle` counter, which QEMU advances by one per
//! instruction under `-icount shift=0` (and by host time otherwise). A panic or an exception
//! prints what happened and exits with status 1, so a crash never hangs QEMU. Interrupts stay
//! disabled: nothing here needs them.
#![no_std]
#![no_main]

use riscv::register::{mcause, mcycle, mepc, mtval};
use riscv_semihosting::{debug, hio};
use trm_fw_app::{Counter, FmtConsole};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// f32 values of engine scratch in RAM (2 MiB of the 4 in memory.x), as on mps2-an386.
const SCRATCH_F32: usize = 512 * 1024;

/// The engine scratch. Only `main` names it, once.
static mut SCRATCH: [f32; SCRATCH_F32] = [0.0; SCRATCH_F32];

/// Semihosting stdout (none if the host refuses it).
fn semihost() -> FmtConsole<hio::HostStream> {
    FmtConsole(hio::hstdout().ok())
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
    let report = trm_fw_app::run_firmware(
        &mut semihost(),
        &mut Mcycle,
        &embedded::FIRMWARE,
        scratch,
        "qemu-virt-riscv32",
    );
    exit(report.success())
}

/// Writes to semihosting stdout without any state: usable from trap handlers.
fn emergency(args: core::fmt::Arguments<'_>) {
    if let Some(mut h) = semihost().0 {
        let _ = core::fmt::Write::write_fmt(&mut h, args);
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
    trm_fw_app::report_panic(&mut semihost(), info);
    exit(false)
}
