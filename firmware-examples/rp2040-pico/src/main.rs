//! TRM Sudoku demo on the Raspberry Pi Pico (RP2040: Cortex-M0+, no FPU, no DSP instructions).
//!
//! The system clock runs at 125 MHz from the 12 MHz crystal through PLL_SYS
//! (`rp2040_hal::clocks::init_clocks_and_plls`); each solve is timed with the 1 MHz TIMER
//! peripheral (microseconds, 64-bit). Output goes two ways, the same lines on both: over RTT in
//! defmt's encoding (`probe-rs run`, the runner in `.cargo/config.toml`, prints it, one `TRM-`
//! line per defmt record), and as plain text on UART0 (GP0 TX, GP1 RX; 115200 baud, 8N1, lines
//! ended by CR LF), which a USB-serial adapter, the Debug Probe's UART bridge, or the rp2040js
//! emulator (`emu/`, run by the test suite) reads. The default
//! model is the fixed-point one (`../models/sudoku-d64-fixed.trm`, 30-50-blank puzzles, 8 ACT
//! steps: minutes per puzzle on this core): integer kernels only, which is what a core without
//! an FPU wants. A float model also runs (in software floating point, far slower).
//!
//! Untested on hardware in this project: the test suite runs this ELF in the rp2040js emulator
//! (boot2, clocks, timer, UART0; see `emu/README.md`), and the same app runs in QEMU on the
//! Cortex-M4F and RISC-V boards and on the host.
#![no_std]
#![no_main]

use core::fmt::{self, Write as _};
use defmt_rtt as _;
use panic_probe as _;
use rp2040_hal::fugit::RateExtU32 as _;
use rp2040_hal::uart::{DataBits, StopBits, UartConfig, UartPeripheral};
use rp2040_hal::{self as hal, Clock as _, pac};
use trm_fw_app::{Console, Counter, LineConsole};

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

/// The console UART's baud rate (8 data bits, no parity, 1 stop bit).
const UART_BAUD: u32 = 115_200;

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

/// Writes one formatted line to the console.
fn say(console: &mut impl Console, args: fmt::Arguments<'_>) {
    /// `fmt::Write` over a [`Console`] (which cannot fail).
    struct Out<'c, C: Console>(&'c mut C);
    impl<C: Console> fmt::Write for Out<'_, C> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.write_str(s);
            Ok(())
        }
    }
    let _ = writeln!(Out(console), "{args}");
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

    // Until UART0 is up (it needs the clocks), errors go to RTT only.
    let mut early = LineConsole::new(|line: &str| defmt::println!("{=str}", line));
    let Some(mut pac) = pac::Peripherals::take() else {
        early.write_str("TRM-ERROR stage=board msg=peripherals already taken\n");
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
        early.write_str("TRM-ERROR stage=board msg=clock setup failed (crystal or PLL)\n");
        idle()
    };
    let sio = hal::Sio::new(pac.SIO);
    let pins = hal::gpio::Pins::new(
        pac.IO_BANK0,
        pac.PADS_BANK0,
        sio.gpio_bank0,
        &mut pac.RESETS,
    );
    let uart_pins = (
        pins.gpio0.into_function::<hal::gpio::FunctionUart>(),
        pins.gpio1.into_function::<hal::gpio::FunctionUart>(),
    );
    let uart_config = UartConfig::new(UART_BAUD.Hz(), DataBits::Eight, None, StopBits::One);
    // The only error is a baud rate the peripheral clock cannot make: then RTT alone.
    let uart = UartPeripheral::new(pac.UART0, uart_pins, &mut pac.RESETS)
        .enable(uart_config, clocks.peripheral_clock.freq())
        .ok();
    let mut console = LineConsole::new(|line: &str| {
        defmt::println!("{=str}", line);
        if let Some(uart) = &uart {
            uart.write_full_blocking(line.as_bytes());
            uart.write_full_blocking(b"\r\n");
        }
    });
    if uart.is_none() {
        defmt::println!(
            "TRM-ERROR stage=board msg=UART0 cannot run at {=u32} baud",
            UART_BAUD
        );
    }
    let sys_hz = clocks.system_clock.freq().to_Hz();
    say(
        &mut console,
        format_args!("# RP2040 system clock {sys_hz} Hz, timer 1 MHz"),
    );
    let mut timer = Micros(hal::Timer::new(pac.TIMER, &mut pac.RESETS, &clocks));

    let report = trm_fw_app::run_firmware(
        &mut console,
        &mut timer,
        &embedded::FIRMWARE,
        SCRATCH,
        "rp2040-pico",
    );
    // The last line (the emulator's runner stops at it).
    if report.success() {
        say(&mut console, format_args!("# done: no errors"));
    } else {
        say(
            &mut console,
            format_args!("# done: {} errors", report.errors),
        );
    }
    console.flush();
    idle()
}
