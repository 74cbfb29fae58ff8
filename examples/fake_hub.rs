//! The hub imitation of the Rust tests (tests/support) as a process, for the Python tests: it
//! serves the fixture model as four repos and prints its base URL (for `HF_ENDPOINT`) on one
//! line, then serves until its standard input closes.
//!
//! ```text
//! test-org/tiny-single    model.safetensors
//! test-org/tiny-sharded   model.safetensors.index.json and 3 shards
//! test-org/tiny-pickled   pytorch_model.bin only, with the hub's safetensors conversion as PR #1
//! test-org/tiny-pickle-only  pytorch_model.bin only, no conversion
//! ```
//! Every repo's `main` is commit `support::COMMIT`; the conversion's head is printed after the URL.

#[path = "../tests/support/mod.rs"]
mod support;

use neoprobe::hub::{CONVERSION_BOT, CONVERSION_TITLE};
use support::{fixture_files, pickle_file, FakeDiscussion, FakeHub, FakeRepo, COMMIT};

/// The head commit of the conversion pull request.
const CONVERTED: &str = "c0ffee5afe7e05afe7e05afe7e05afe7e05afe7e";

fn pickled() -> Vec<support::FakeFile> {
    let mut files: Vec<_> = fixture_files(1).into_iter().filter(|f| f.name != "model.safetensors").collect();
    files.push(pickle_file("pytorch_model.bin"));
    files
}

fn main() {
    let mut converted = fixture_files(1);
    converted.push(pickle_file("pytorch_model.bin"));
    let mut with_conversion = FakeRepo::new("test-org/tiny-pickled", pickled());
    with_conversion.discussions.push(FakeDiscussion::pull_request(
        1,
        CONVERSION_TITLE,
        CONVERSION_BOT,
        CONVERTED,
        COMMIT,
        converted,
    ));
    let hub = FakeHub::start(vec![
        FakeRepo::new("test-org/tiny-single", fixture_files(1)),
        FakeRepo::new("test-org/tiny-sharded", fixture_files(3)),
        with_conversion,
        FakeRepo::new("test-org/tiny-pickle-only", pickled()),
    ]);
    println!("{}", hub.url);
    println!("{CONVERTED}");
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        line.clear();
    }
}
