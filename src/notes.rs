//! How a library call tells its caller what it is doing. The library never prints: every call
//! that takes long takes a `&dyn Notes` and reports through it. The command line implements it on
//! the terminal (lines and progress bars on stderr, for people watching), the Python module on
//! `logging` and a callback, and [`Silent`] drops everything.
//!
//! Results are never notes: they come back as values, which the caller renders or serializes.

use std::fmt;

/// What a progress bar counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Tokens through the model (batches).
    Tokens,
    /// Bytes of a download.
    Bytes,
    /// Steps of some other kind (shuffles, checks).
    Steps,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Tokens => "tokens",
            Unit::Bytes => "bytes",
            Unit::Steps => "steps",
        })
    }
}

/// The receiver of a long call's notes, warnings and progress.
///
/// `Sync` because a call may report from the thread it runs the GPU on while its caller holds
/// the receiver elsewhere (Python releases its interpreter lock while the GPU works).
pub trait Notes: Sync {
    /// A step of the run, for someone watching it ("model X at revision Y", "running on the
    /// adapter with these kernels"). Worth nothing once the run is over.
    fn step(&self, text: &str);

    /// Something the caller should know about the result even after the run (a text cut short,
    /// a setting replaced by the model's limit).
    fn warn(&self, text: &str);

    /// A bar over `total` units (`None`: unknown), labelled `what`, starting at `start`.
    fn bar(&self, what: &str, total: Option<u64>, start: u64, unit: Unit) -> Box<dyn Bar + '_>;

    /// Whether the caller asked the work to stop (Ctrl-C in Python). Long calls ask between
    /// batches and stop with [`Interrupted`].
    fn interrupted(&self) -> bool {
        false
    }

    /// `Err(Interrupted)` when the caller asked the work to stop.
    fn check_interrupt(&self) -> Result<(), Interrupted> {
        if self.interrupted() {
            Err(Interrupted)
        } else {
            Ok(())
        }
    }
}

/// A progress bar handed out by [`Notes::bar`]. Dropping it without `finish` leaves it where
/// it stopped (a failed download).
pub trait Bar {
    /// `n` more units done.
    fn advance(&self, n: u64);
    /// `done` units done in all (a download that resumed from a later byte).
    fn set(&self, done: u64);
    /// The total became known (a download's size).
    fn set_total(&self, total: u64);
    /// The work is complete; the bar goes.
    fn finish(&self);
}

/// The error of a call stopped by [`Notes::interrupted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted between batches; nothing was written")
    }
}

impl std::error::Error for Interrupted {}

/// Notes that go nowhere: for tests, benchmarks and callers that want quiet.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

/// A bar that draws nothing.
pub struct NoBar;

impl Bar for NoBar {
    fn advance(&self, _: u64) {}
    fn set(&self, _: u64) {}
    fn set_total(&self, _: u64) {}
    fn finish(&self) {}
}

impl Notes for Silent {
    fn step(&self, _: &str) {}
    fn warn(&self, _: &str) {}
    fn bar(&self, _: &str, _: Option<u64>, _: u64, _: Unit) -> Box<dyn Bar + '_> {
        Box::new(NoBar)
    }
}

/// Notes kept in memory, in order: for tests, and for callers that show them later.
#[derive(Debug, Default)]
pub struct Recorded {
    lines: std::sync::Mutex<Vec<(Kind, String)>>,
}

/// Which method a recorded line came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Step,
    Warning,
}

impl Recorded {
    /// Every line so far, in order.
    pub fn lines(&self) -> Vec<(Kind, String)> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The warnings so far, in order.
    pub fn warnings(&self) -> Vec<String> {
        self.lines().into_iter().filter(|(k, _)| *k == Kind::Warning).map(|(_, t)| t).collect()
    }

    fn push(&self, kind: Kind, text: &str) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push((kind, text.to_string()));
        }
    }
}

impl Notes for Recorded {
    fn step(&self, text: &str) {
        self.push(Kind::Step, text);
    }
    fn warn(&self, text: &str) {
        self.push(Kind::Warning, text);
    }
    fn bar(&self, _: &str, _: Option<u64>, _: u64, _: Unit) -> Box<dyn Bar + '_> {
        Box::new(NoBar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_keeps_steps_and_warnings_apart_in_order() {
        let notes = Recorded::default();
        notes.step("one");
        notes.warn("two");
        notes.step("three");
        assert_eq!(notes.lines().len(), 3);
        assert_eq!(notes.warnings(), vec!["two".to_string()]);
        assert!(notes.check_interrupt().is_ok());
    }

    struct Stopped;
    impl Notes for Stopped {
        fn step(&self, _: &str) {}
        fn warn(&self, _: &str) {}
        fn bar(&self, _: &str, _: Option<u64>, _: u64, _: Unit) -> Box<dyn Bar + '_> {
            Box::new(NoBar)
        }
        fn interrupted(&self) -> bool {
            true
        }
    }

    #[test]
    fn an_interrupt_is_an_error_that_says_so() {
        let err = anyhow::Error::from(Stopped.check_interrupt().unwrap_err());
        assert!(err.downcast_ref::<Interrupted>().is_some());
        assert!(err.to_string().contains("interrupted"));
    }
}
