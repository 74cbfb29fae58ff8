//! The one owner of stderr: the library's notes, warnings and progress bars for people watching
//! a terminal, and the command's closing lines. A pipe gets only the warnings and closing lines.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use neoprobe::notes::{Bar, Notes, Unit};
use std::io::IsTerminal;
use std::sync::Mutex;

/// [`Notes`] on the terminal: every line as `PREFIX: text` on stderr.
pub struct Terminal {
    prefix: &'static str,
    /// Steps and bars too (an interactive stderr), not just warnings.
    watching: bool,
    /// The bar being drawn, so that a line printed meanwhile does not tear it.
    bar: Mutex<Option<ProgressBar>>,
}

impl Terminal {
    /// Steps and bars when stderr is a terminal; warnings always.
    pub fn new() -> Terminal {
        Terminal::with(std::io::stderr().is_terminal(), "neoprobe")
    }

    /// `watching`: whether steps and bars are shown; `prefix` starts each line.
    pub fn with(watching: bool, prefix: &'static str) -> Terminal {
        Terminal { prefix, watching, bar: Mutex::new(None) }
    }

    /// A closing line of the command ("wrote 7 files into DIR"), shown on a pipe too.
    pub fn done(&self, text: &str) {
        self.line(text);
    }

    fn line(&self, text: &str) {
        let line = format!("{}: {text}", self.prefix);
        let bar = self.bar.lock().ok().and_then(|b| b.clone()).filter(|b| !b.is_finished());
        match bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl Notes for Terminal {
    fn step(&self, text: &str) {
        if self.watching {
            self.line(text);
        }
    }

    fn warn(&self, text: &str) {
        self.line(text);
    }

    fn bar(&self, what: &str, total: Option<u64>, start: u64, unit: Unit) -> Box<dyn Bar + '_> {
        if !self.watching {
            return Box::new(neoprobe::notes::NoBar);
        }
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let template = match (unit, total.is_some()) {
            (Unit::Bytes, true) => {
                "{msg} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})"
            }
            (Unit::Bytes, false) => "{msg} [{elapsed_precise}] {spinner} {bytes} {bytes_per_sec}",
            (Unit::Tokens, _) => "{msg} {wide_bar} {human_pos}/{human_len} tokens, {rate}, ETA {eta}",
            (Unit::Steps, _) => "{msg} {wide_bar} {human_pos}/{human_len}, ETA {eta}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> ").with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} tokens/s", state.per_sec());
                },
            ));
        }
        bar.set_message(what.to_string());
        bar.set_position(start);
        if let Ok(mut current) = self.bar.lock() {
            *current = Some(bar.clone());
        }
        Box::new(TerminalBar(bar, unit))
    }
}

/// A bar and what it counts: a finished download stays on screen, a finished batch run goes.
struct TerminalBar(ProgressBar, Unit);

impl Bar for TerminalBar {
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn set(&self, done: u64) {
        self.0.set_position(done);
    }
    fn set_total(&self, total: u64) {
        self.0.set_length(total);
    }
    fn finish(&self) {
        match self.1 {
            Unit::Bytes => self.0.finish(),
            _ => self.0.finish_and_clear(),
        }
    }
}

impl Drop for TerminalBar {
    fn drop(&mut self) {
        // A bar dropped unfinished (a failed download) stays where it stopped.
        if !self.0.is_finished() {
            self.0.abandon();
        }
    }
}
