//! What kind of failure an error is, for callers that map failures to kinds of their own (the
//! Python module raises `FileNotFoundError`, `ValueError`, `RuntimeError`, `KeyboardInterrupt`).
//!
//! Errors stay `anyhow::Error` with one message for people; the few places that know a failure
//! is of a particular kind make it with [`not_found`], [`gpu`] or [`download`], and [`kind_of`]
//! reads the kind back from anywhere in the chain. Anything untagged is bad input.

use crate::notes::Interrupted;
use std::fmt;

/// The kinds a caller can tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A file or folder that is not there (a model folder, a word list, a weight file).
    NotFound,
    /// The GPU: no adapter, a device lost, an out-of-memory, a kernel that would not compile.
    Gpu,
    /// The hub or the network (a repo, revision or file the hub does not have is `NotFound`).
    Download,
    /// The caller asked the work to stop ([`crate::notes::Notes::interrupted`]).
    Interrupted,
    /// Anything else: a bad argument, hook, pattern, layer, neuron, or a malformed file.
    BadInput,
}

/// An error message tagged with its kind.
#[derive(Debug)]
pub struct Tagged {
    pub kind: Kind,
    pub message: String,
}

impl fmt::Display for Tagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Tagged {}

fn tagged(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Tagged { kind, message: message.into() })
}

/// A missing file or folder.
pub fn not_found(message: impl Into<String>) -> anyhow::Error {
    tagged(Kind::NotFound, message)
}

/// A failure of the GPU or its driver.
pub fn gpu(message: impl Into<String>) -> anyhow::Error {
    tagged(Kind::Gpu, message)
}

/// A failure to reach the hub or to download from it.
pub fn download(message: impl Into<String>) -> anyhow::Error {
    tagged(Kind::Download, message)
}

/// `message` on one line, whatever its sources put in it: how both front-ends show an error.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The kind of `error`: the first tag found along its chain (outermost first), a missing file
/// from the operating system, an interrupt, else [`Kind::BadInput`].
pub fn kind_of(error: &anyhow::Error) -> Kind {
    for cause in error.chain() {
        if let Some(t) = cause.downcast_ref::<Tagged>() {
            return t.kind;
        }
        if let Some(fetch) = cause.downcast_ref::<crate::hub::FetchError>() {
            // A repo, revision or file the hub does not have is missing, like a local one.
            return match fetch.kind() {
                crate::hub::FetchErrorKind::NotFound | crate::hub::FetchErrorKind::FileNotFound => {
                    Kind::NotFound
                }
                _ => Kind::Download,
            };
        }
        if cause.downcast_ref::<Interrupted>().is_some() {
            return Kind::Interrupted;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::NotFound {
                return Kind::NotFound;
            }
        }
    }
    Kind::BadInput
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_kind_survives_context_and_the_message_reads_as_before() {
        let err = Err::<(), _>(not_found("no config.json in m")).context("loading the model").unwrap_err();
        assert_eq!(kind_of(&err), Kind::NotFound);
        assert_eq!(format!("{err:#}"), "loading the model: no config.json in m");
        assert_eq!(kind_of(&gpu("no adapter")), Kind::Gpu);
        assert_eq!(kind_of(&download("503")), Kind::Download);
        assert_eq!(kind_of(&anyhow::anyhow!("--layer 12 is out of range")), Kind::BadInput);
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        assert_eq!(kind_of(&anyhow::Error::from(io)), Kind::NotFound);
        assert_eq!(kind_of(&anyhow::Error::from(Interrupted)), Kind::Interrupted);
    }
}
