//! The library's notes for Python: steps, warnings and progress go to a Python object (the
//! package's `_Notes`: `logging`, `warnings.warn`, the caller's progress callback), and between
//! batches the library asks whether to stop, which runs Python's signal handlers (Ctrl-C).
//!
//! The library calls these from the thread it works on, with the interpreter lock released;
//! each call takes the lock for as long as the Python side runs. An exception raised there (the
//! KeyboardInterrupt of Ctrl-C, a callback's own error) is kept and makes the next check between
//! batches stop the work; the entry point then raises it.

use neoprobe::notes::{Bar, Notes, Unit};
use pyo3::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub struct PyNotes {
    /// Has `step(text)`, `warn(text)` and `progress(label, done, total)`.
    sink: Py<PyAny>,
    /// The first exception the Python side raised, not yet handed back.
    pending: Mutex<Option<PyErr>>,
}

impl PyNotes {
    pub fn new(sink: Py<PyAny>) -> PyNotes {
        PyNotes { sink, pending: Mutex::new(None) }
    }

    /// The exception that stopped the work, if any, now the caller's to raise.
    pub fn take_pending(&self) -> Option<PyErr> {
        self.pending.lock().ok().and_then(|mut p| p.take())
    }

    fn has_pending(&self) -> bool {
        self.pending.lock().map(|p| p.is_some()).unwrap_or(false)
    }

    fn keep(&self, error: PyErr) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.get_or_insert(error);
        }
    }

    /// Calls `sink.method(*args)` with the interpreter lock, keeping any exception.
    fn call<A>(&self, method: &str, args: A)
    where
        A: for<'py> pyo3::call::PyCallArgs<'py>,
    {
        if self.has_pending() {
            return;
        }
        let result = Python::attach(|py| self.sink.call_method1(py, method, args).map(drop));
        if let Err(error) = result {
            self.keep(error);
        }
    }
}

impl Notes for PyNotes {
    fn step(&self, text: &str) {
        self.call("step", (text,));
    }

    fn warn(&self, text: &str) {
        self.call("warn", (text,));
    }

    fn bar(&self, what: &str, total: Option<u64>, start: u64, unit: Unit) -> Box<dyn Bar + '_> {
        Box::new(PyBar {
            notes: self,
            what: what.to_string(),
            unit,
            done: AtomicU64::new(start),
            total: AtomicU64::new(total.unwrap_or(0)),
        })
    }

    fn interrupted(&self) -> bool {
        if self.has_pending() {
            return true;
        }
        // Runs the handlers of signals that arrived while the lock was released: Ctrl-C's
        // raises KeyboardInterrupt (only on the main thread, where Python runs them).
        if let Err(error) = Python::attach(|py| py.check_signals()) {
            self.keep(error);
            return true;
        }
        false
    }
}

/// A bar reported to the sink's `progress(label, done, total, unit)`; `total` 0 when unknown.
struct PyBar<'a> {
    notes: &'a PyNotes,
    what: String,
    unit: Unit,
    done: AtomicU64,
    total: AtomicU64,
}

impl PyBar<'_> {
    fn report(&self) {
        let (done, total) = (self.done.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed));
        self.notes.call("progress", (self.what.as_str(), done, total, self.unit.to_string()));
    }
}

impl Bar for PyBar<'_> {
    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        self.report();
    }
    fn set(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.report();
    }
    fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }
    fn finish(&self) {}
}
