//! A progress bar for training: position, ETA, loss, accuracy and examples per second.
//! Hidden when stderr is not a terminal (logs, CI), where [`Progress::println`] still prints.

use std::io::IsTerminal as _;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The training progress bar.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    visible: bool,
    /// Examples counted and the time of the last rate update.
    window_start: Instant,
    window_examples: u64,
    rate: f64,
}

impl Progress {
    /// A bar over `total_steps` steps, starting at `start_step` (resumed runs). `quiet` hides it
    /// even on a terminal.
    pub fn new(total_steps: u64, start_step: u64, quiet: bool) -> Self {
        let visible = !quiet && std::io::stderr().is_terminal();
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total_steps), target);
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise} < {eta_precise}] {wide_bar} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_position(start_step);
        bar.reset_eta();
        Progress {
            bar,
            visible,
            window_start: Instant::now(),
            window_examples: 0,
            rate: 0.0,
        }
    }

    /// Whether the bar is drawn.
    pub fn is_visible(&self) -> bool {
        self.visible
    }

    /// Records step `step` done with `examples` more examples, and shows loss and accuracy.
    pub fn update(&mut self, step: u64, examples: u64, loss: f64, accuracy: f64) {
        self.window_examples += examples;
        let dt = self.window_start.elapsed().as_secs_f64();
        if dt >= 1.0 {
            self.rate = self.window_examples as f64 / dt;
            self.window_examples = 0;
            self.window_start = Instant::now();
        }
        self.bar.set_position(step);
        self.bar.set_message(format!(
            "loss {loss:.4} acc {:.2}% {:.0} ex/s",
            accuracy * 100.0,
            self.rate
        ));
    }

    /// Examples per second over the last window (about a second).
    pub fn examples_per_second(&self) -> f64 {
        self.rate
    }

    /// Prints a line above the bar (or to stderr when the bar is hidden).
    pub fn println(&self, line: &str) {
        if self.visible {
            self.bar.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    /// Leaves the final state on screen.
    pub fn finish(&self) {
        self.bar.finish();
    }
}
