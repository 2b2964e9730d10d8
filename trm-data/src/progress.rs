//! A progress bar for long dataset builds, drawn on stderr only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar (hidden when stderr is not a terminal or when disabled).
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar of `len` steps labelled `label`; `enabled = false` or a non-terminal stderr
    /// makes it silent.
    pub fn new(len: u64, label: &str, enabled: bool) -> Self {
        let bar = ProgressBar::new(len);
        if enabled && std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
            ) {
                bar.set_style(style);
            }
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_message(label.to_string());
        Self { bar }
    }

    /// A silent bar.
    pub fn hidden() -> Self {
        Self::new(0, "", false)
    }

    /// Advances by `n` steps.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Steps done so far.
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Whether the bar draws anything.
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Ends the bar (leaves the final state on screen when visible).
    pub fn finish(&self) {
        self.bar.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_unless_enabled_on_a_terminal() {
        let off = Progress::new(10, "x", false);
        assert!(!off.is_visible());
        let on = Progress::new(10, "x", true);
        assert_eq!(on.is_visible(), std::io::stderr().is_terminal());
        on.inc(3);
        off.inc(4);
        assert_eq!((on.position(), off.position()), (3, 4));
        on.finish();
    }
}
